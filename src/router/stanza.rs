//! The stanza envelope the router works on (RFC 6120 §8): kind, type, id, from and to over
//! the parsed element. Payloads are never interpreted here; modules parse what they own.

use crate::xml::Element;
use jid::Jid;

/// `jabber:client`, the namespace stanzas carry inside the server.
pub const NS_CLIENT: &str = "jabber:client";

/// The three stanza kinds of RFC 6120 §8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanzaKind {
    /// `<message/>`
    Message,
    /// `<presence/>`
    Presence,
    /// `<iq/>`
    Iq,
}

/// A stanza: its element plus the addressing read from it.
#[derive(Clone, Debug)]
pub struct Stanza {
    /// Which kind it is.
    pub kind: StanzaKind,
    /// The whole element, in `jabber:client`.
    pub el: Element,
}

/// Why an element is not a usable stanza.
#[derive(Debug, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Not message, presence or iq in the content namespace.
    NotAStanza,
    /// `to` or `from` is not a valid JID (RFC 6120 §8.3.3.8 `jid-malformed`).
    BadJid(&'static str),
}

impl Stanza {
    /// Classifies an element; `Err(NotAStanza)` for nonzas.
    pub fn from_element(el: Element) -> Result<Stanza, (EnvelopeError, Element)> {
        if el.ns != NS_CLIENT {
            return Err((EnvelopeError::NotAStanza, el));
        }
        let kind = match el.name.as_str() {
            "message" => StanzaKind::Message,
            "presence" => StanzaKind::Presence,
            "iq" => StanzaKind::Iq,
            _ => return Err((EnvelopeError::NotAStanza, el)),
        };
        for attr in ["to", "from"] {
            if let Some(value) = el.attr(attr)
                && Jid::new(value).is_err()
            {
                return Err((EnvelopeError::BadJid(attr), el));
            }
        }
        Ok(Stanza { kind, el })
    }

    /// A stanza built by the server.
    pub fn new(kind: StanzaKind, el: Element) -> Stanza {
        Stanza { kind, el }
    }

    /// The `to` address, if present and valid.
    pub fn to(&self) -> Option<Jid> {
        self.el.attr("to").and_then(|t| Jid::new(t).ok())
    }

    /// The `from` address, if present and valid.
    pub fn from(&self) -> Option<Jid> {
        self.el.attr("from").and_then(|t| Jid::new(t).ok())
    }

    /// The `type` attribute; the RFC defaults (`normal`, `available`) are left to callers.
    pub fn type_attr(&self) -> Option<&str> {
        self.el.attr("type")
    }

    /// The `id` attribute.
    pub fn id(&self) -> Option<&str> {
        self.el.attr("id")
    }

    /// Whether this is an error stanza (never answered with another error).
    pub fn is_error(&self) -> bool {
        self.type_attr() == Some("error")
    }

    /// Sets `from`.
    pub fn set_from(&mut self, from: &Jid) {
        self.el.set_attr("from", from.as_str());
    }

    /// Sets `to`.
    pub fn set_to(&mut self, to: &Jid) {
        self.el.set_attr("to", to.as_str());
    }
}
