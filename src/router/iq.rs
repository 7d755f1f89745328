//! IQ dispatch (RFC 6120 §8.2.3): a map from (type, target, namespace, element) to one
//! handler, as Prosody's `iq-get/host/ns:name` events but typed. An IQ get or set that no
//! handler claims gets `service-unavailable` (RFC 6120 §8.4).

use super::error::StanzaError;
use super::stanza::Stanza;
use crate::events::BoxFuture;
use crate::session::SessionRef;
use crate::xml::Element;
use jid::Jid;

/// `get` or `set`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqKind {
    /// Read.
    Get,
    /// Write.
    Set,
}

/// Whom an IQ is addressed to, relative to the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqTarget {
    /// The domain itself (`to='example.org'`).
    Host,
    /// The sender's own account (no `to`, or `to` its own bare JID), RFC 6120 §10.3.3.
    Account,
    /// Another account's bare JID on this domain.
    Bare,
    /// Before authentication (in-band registration, XEP-0077); `from` is then the domain.
    PreAuth,
}

/// The key of the handler map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IqKey {
    /// get or set.
    pub kind: IqKind,
    /// Target class.
    pub target: IqTarget,
    /// Payload namespace.
    pub ns: &'static str,
    /// Payload element name.
    pub name: &'static str,
}

/// A get or set IQ to be answered by a module.
pub struct IqRequest {
    /// get or set.
    pub kind: IqKind,
    /// The sender (full JID for local clients).
    pub from: Jid,
    /// The addressee: the domain or a bare JID (the sender's own for `Account`).
    pub to: Jid,
    /// The payload (first child element).
    pub payload: Element,
    /// The sending session, when the IQ came from a local client.
    pub session: Option<SessionRef>,
    /// The whole stanza.
    pub stanza: Stanza,
}

/// A handler's answer: the result payload (if any) or an error.
pub type IqResult = Result<Option<Element>, StanzaError>;

/// Answers IQs of one key.
pub trait IqHandler: Send + Sync + 'static {
    /// Handles a request.
    fn handle<'a>(&'a self, iq: &'a IqRequest) -> BoxFuture<'a, IqResult>;
}

impl IqKind {
    /// From the `type` attribute; `None` for result and error.
    pub fn from_type(t: Option<&str>) -> Option<IqKind> {
        match t {
            Some("get") => Some(IqKind::Get),
            Some("set") => Some(IqKind::Set),
            _ => None,
        }
    }
}

/// The result or error reply to an IQ request (RFC 6120 §8.2.3).
pub fn reply(request: &Stanza, outcome: IqResult) -> Option<Stanza> {
    match outcome {
        Ok(payload) => {
            let mut el = Element::new("iq", super::stanza::NS_CLIENT).with_attr("type", "result");
            if let Some(id) = request.id() {
                el.set_attr("id", id);
            }
            if let Some(payload) = payload {
                el.push_child(payload);
            }
            let mut reply = Stanza::new(super::stanza::StanzaKind::Iq, el);
            reply.swap_addressing_of(request);
            Some(reply)
        }
        Err(error) => error.reply_to(request),
    }
}

/// An IQ handler that answers synchronously from the request alone.
pub struct SyncIq<F>(pub F);

impl<F> IqHandler for SyncIq<F>
where
    F: Fn(&IqRequest) -> IqResult + Send + Sync + 'static,
{
    fn handle<'a>(&'a self, iq: &'a IqRequest) -> BoxFuture<'a, IqResult> {
        let outcome = (self.0)(iq);
        Box::pin(async move { outcome })
    }
}
