//! Stanza errors (RFC 6120 §8.3): the reply a sender gets when one stanza cannot be handled.
//! Distinct from stream errors, which end the whole stream.

use super::stanza::{NS_CLIENT, Stanza, StanzaKind};
use crate::xml::Element;

/// `urn:ietf:params:xml:ns:xmpp-stanzas`
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The error type attribute (RFC 6120 §8.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// Retry after providing credentials.
    Auth,
    /// Do not retry.
    Cancel,
    /// Proceed; the condition was only a warning.
    Continue,
    /// Retry after changing the data sent.
    Modify,
    /// Retry after waiting.
    Wait,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// A stanza error: type, defined condition (RFC 6120 §8.3.3), optional text and
/// application-specific element.
#[derive(Clone, Debug, PartialEq)]
pub struct StanzaError {
    /// The error type.
    pub kind: ErrorType,
    /// The defined condition's element name, such as `service-unavailable`.
    pub condition: &'static str,
    /// Human-readable text.
    pub text: Option<String>,
    /// An application-specific condition element.
    pub app: Option<Box<Element>>,
}

macro_rules! conditions {
    ($($fn_name:ident => ($kind:ident, $cond:literal)),* $(,)?) => {
        impl StanzaError {
            $(
                #[doc = concat!("`", $cond, "` (type ", stringify!($kind), ").")]
                pub fn $fn_name() -> StanzaError {
                    StanzaError::new(ErrorType::$kind, $cond)
                }
            )*
        }
    };
}

conditions! {
    bad_request => (Modify, "bad-request"),
    conflict => (Cancel, "conflict"),
    feature_not_implemented => (Cancel, "feature-not-implemented"),
    forbidden => (Auth, "forbidden"),
    internal_server_error => (Cancel, "internal-server-error"),
    item_not_found => (Cancel, "item-not-found"),
    jid_malformed => (Modify, "jid-malformed"),
    not_acceptable => (Modify, "not-acceptable"),
    not_allowed => (Cancel, "not-allowed"),
    not_authorized => (Auth, "not-authorized"),
    policy_violation => (Modify, "policy-violation"),
    recipient_unavailable => (Wait, "recipient-unavailable"),
    remote_server_not_found => (Cancel, "remote-server-not-found"),
    resource_constraint => (Wait, "resource-constraint"),
    service_unavailable => (Cancel, "service-unavailable"),
    undefined_condition => (Cancel, "undefined-condition"),
}

impl StanzaError {
    /// An error with a type and defined condition.
    pub fn new(kind: ErrorType, condition: &'static str) -> StanzaError {
        StanzaError { kind, condition, text: None, app: None }
    }

    /// Adds human-readable text.
    pub fn with_text(mut self, text: impl Into<String>) -> StanzaError {
        self.text = Some(text.into());
        self
    }

    /// Adds an application-specific condition element.
    pub fn with_app(mut self, app: Element) -> StanzaError {
        self.app = Some(Box::new(app));
        self
    }

    /// The `<error/>` element.
    pub fn to_element(&self) -> Element {
        let mut error = Element::new("error", NS_CLIENT).with_attr("type", self.kind.as_str());
        error.push_child(Element::new(self.condition, NS_STANZAS));
        if let Some(text) = &self.text {
            error.push_child(Element::new("text", NS_STANZAS).with_attr("xml:lang", "en").with_text(text));
        }
        if let Some(app) = &self.app {
            error.push_child(app.as_ref().clone());
        }
        error
    }

    /// The error reply to `stanza`: addresses swapped, `type='error'`, original children kept
    /// for messages and presences (RFC 6120 §8.3.1). `None` for an error stanza, which must
    /// never be answered with another error.
    pub fn reply_to(&self, stanza: &Stanza) -> Option<Stanza> {
        if stanza.is_error() {
            return None;
        }
        let mut reply = Element::new(&stanza.el().name, NS_CLIENT).with_attr("type", "error");
        if let Some(id) = stanza.id() {
            reply.set_attr("id", id);
        }
        if stanza.kind != StanzaKind::Iq {
            reply.children = stanza.el().children.clone();
        }
        reply.push_child(self.to_element());
        let mut reply = Stanza::new(stanza.kind, reply);
        reply.swap_addressing_of(stanza);
        Some(reply)
    }
}

/// A stanza error reply for an element that failed to parse as a stanza payload.
impl From<crate::xml::XmlError> for StanzaError {
    fn from(_: crate::xml::XmlError) -> StanzaError {
        StanzaError::bad_request()
    }
}
