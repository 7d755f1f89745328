//! The stanza the router works on (RFC 6120 §8): an envelope (kind, `from`, `to`) beside a
//! shared body (the element without its addressing) and the body's wire bytes.
//!
//! Routing reads and rewrites only the envelope. The body sits behind an `Arc`, so handing a
//! stanza to 1024 sessions copies two JIDs and bumps a counter; the element tree is never
//! cloned for fan-out. The body is serialised at most once (on its first write, or up front by
//! [`Stanza::prepare_wire`] before a fan-out) with the `from`/`to` attributes left out, and
//! every write splices the current addressing in after the element name:
//!
//! ```text
//! wire bytes:   <message type='chat' id='x1'><body>hi</body></message>
//!                        ^ splice point
//! written:      <message from='a@x/1' to='b@x' type='chat' id='x1'><body>hi</body></message>
//! ```
//!
//! A module that changes the payload ([`Stanza::el_mut`]) gets its own copy of the body if it is
//! shared, and the cached bytes are dropped, so what is written always matches the tree.
//! Payloads are never interpreted here; modules parse what they own.

use crate::xml::Element;
use jid::Jid;
use std::sync::{Arc, OnceLock};

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

impl StanzaKind {
    fn of(el: &Element) -> Option<StanzaKind> {
        match el.name.as_str() {
            "message" => Some(StanzaKind::Message),
            "presence" => Some(StanzaKind::Presence),
            "iq" => Some(StanzaKind::Iq),
            _ => None,
        }
    }
}

/// A stanza: envelope plus shared body.
#[derive(Clone, Debug)]
pub struct Stanza {
    /// Which kind it is.
    pub kind: StanzaKind,
    from: Option<Jid>,
    to: Option<Jid>,
    body: Arc<Body>,
}

/// The element without `from`/`to`, and its serialisation once made.
#[derive(Debug)]
struct Body {
    el: Element,
    wire: OnceLock<Wire>,
}

impl Clone for Body {
    /// A body is cloned only to be changed, so the copy starts without cached bytes.
    fn clone(&self) -> Self {
        Body { el: self.el.clone(), wire: OnceLock::new() }
    }
}

/// Serialised body bytes and where the addressing goes.
#[derive(Debug)]
struct Wire {
    bytes: Box<[u8]>,
    /// Just after `<name`.
    splice_at: usize,
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
    /// Classifies an element received from a peer; `Err(NotAStanza)` for nonzas.
    pub fn from_element(el: Element) -> Result<Stanza, (EnvelopeError, Element)> {
        if el.ns != NS_CLIENT {
            return Err((EnvelopeError::NotAStanza, el));
        }
        let Some(kind) = StanzaKind::of(&el) else {
            return Err((EnvelopeError::NotAStanza, el));
        };
        for attr in ["to", "from"] {
            if let Some(value) = el.attr(attr)
                && Jid::new(value).is_err()
            {
                return Err((EnvelopeError::BadJid(attr), el));
            }
        }
        Ok(Stanza::new(kind, el))
    }

    /// A stanza built by the server. `from`/`to` attributes move into the envelope; one that
    /// is not a valid JID is dropped (the server only builds valid ones).
    pub fn new(kind: StanzaKind, mut el: Element) -> Stanza {
        let from = el.remove_attr("from").and_then(|f| Jid::new(&f).ok());
        let to = el.remove_attr("to").and_then(|t| Jid::new(&t).ok());
        Stanza { kind, from, to, body: Arc::new(Body { el, wire: OnceLock::new() }) }
    }

    /// A stanza built by the server whose kind follows from its element name; `None` for
    /// anything that is not message, presence or iq.
    pub fn built(el: Element) -> Option<Stanza> {
        StanzaKind::of(&el).map(|kind| Stanza::new(kind, el))
    }

    /// The element without `from`/`to` (read those with [`from`](Self::from)/[`to`](Self::to)).
    pub fn el(&self) -> &Element {
        &self.body.el
    }

    /// The element for changing the payload: copied first if other stanzas share it, and the
    /// cached wire bytes are dropped.
    pub fn el_mut(&mut self) -> &mut Element {
        let body = Arc::make_mut(&mut self.body);
        body.wire = OnceLock::new();
        &mut body.el
    }

    /// The whole element, addressing included (for storage, forwarding inside another
    /// element, and tests).
    pub fn to_element(&self) -> Element {
        let mut el = self.body.el.clone();
        self.put_addressing(&mut el);
        el
    }

    /// Like [`to_element`](Self::to_element), without copying the tree when it is not shared.
    pub fn into_element(self) -> Element {
        let Stanza { from, to, body, .. } = self;
        let mut el = Arc::try_unwrap(body).map(|b| b.el).unwrap_or_else(|shared| shared.el.clone());
        Stanza::put_addressing_of(&mut el, from.as_ref(), to.as_ref());
        el
    }

    fn put_addressing(&self, el: &mut Element) {
        Stanza::put_addressing_of(el, self.from.as_ref(), self.to.as_ref());
    }

    fn put_addressing_of(el: &mut Element, from: Option<&Jid>, to: Option<&Jid>) {
        // Addressing first, as the server writes it on the wire.
        let mut attrs = Vec::with_capacity(el.attrs.len() + 2);
        if let Some(from) = from {
            attrs.push(("from".to_owned(), from.to_string()));
        }
        if let Some(to) = to {
            attrs.push(("to".to_owned(), to.to_string()));
        }
        attrs.append(&mut el.attrs);
        el.attrs = attrs;
    }

    /// The `to` address.
    pub fn to(&self) -> Option<Jid> {
        self.to.clone()
    }

    /// The `from` address.
    pub fn from(&self) -> Option<Jid> {
        self.from.clone()
    }

    /// The `to` address, borrowed.
    pub fn to_ref(&self) -> Option<&Jid> {
        self.to.as_ref()
    }

    /// The `from` address, borrowed.
    pub fn from_ref(&self) -> Option<&Jid> {
        self.from.as_ref()
    }

    /// The `type` attribute; the RFC defaults (`normal`, `available`) are left to callers.
    pub fn type_attr(&self) -> Option<&str> {
        self.body.el.attr("type")
    }

    /// The `id` attribute.
    pub fn id(&self) -> Option<&str> {
        self.body.el.attr("id")
    }

    /// Whether this is an error stanza (never answered with another error).
    pub fn is_error(&self) -> bool {
        self.type_attr() == Some("error")
    }

    /// Sets `from`.
    pub fn set_from(&mut self, from: &Jid) {
        self.from = Some(from.clone());
    }

    /// Sets `to` (taking the address, since fan-outs make one per copy).
    pub fn set_to(&mut self, to: Jid) {
        self.to = Some(to);
    }

    /// Addresses a reply to `request`: to its sender, from its recipient (RFC 6120 §8.2.3,
    /// §8.3.1).
    pub fn swap_addressing_of(&mut self, request: &Stanza) {
        self.to = request.from.clone();
        self.from = request.to.clone();
    }

    /// Removes `to`.
    pub fn clear_to(&mut self) {
        self.to = None;
    }

    /// Serialises the body now, so that copies made afterwards share the bytes (call before
    /// fanning out one stanza to many sessions).
    pub fn prepare_wire(&self) {
        self.wire();
    }

    fn wire(&self) -> &Wire {
        self.body.wire.get_or_init(|| {
            let mut bytes = Vec::new();
            self.body.el.write_to(&mut bytes, NS_CLIENT);
            Wire { bytes: bytes.into_boxed_slice(), splice_at: 1 + self.body.el.name.len() }
        })
    }

    /// Appends the stanza as written on a `jabber:client` stream.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.write_spliced(out, false);
    }

    /// The stanza as a document of its own, its namespace declared on the root: what stores
    /// keep and later read back with [`Element::parse`]. Made from the cached wire bytes,
    /// which the delivery of the same stanza then reuses, rather than from a copy of the tree
    /// serialised apart.
    pub fn to_document(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_spliced(&mut out, self.body.el.ns == NS_CLIENT);
        out
    }

    /// The wire bytes with the addressing (and, if asked, the `jabber:client` declaration that
    /// the wire form leaves to the stream) spliced in after the element's name.
    fn write_spliced(&self, out: &mut Vec<u8>, declare_ns: bool) {
        let wire = self.wire();
        // One growth for the whole stanza (escaped addresses may still need a little more).
        let addresses =
            [&self.from, &self.to].iter().map(|jid| jid.as_ref().map_or(0, |j| j.as_str().len() + 8)).sum::<usize>();
        out.reserve(wire.bytes.len() + addresses + if declare_ns { " xmlns=''".len() + NS_CLIENT.len() } else { 0 });
        out.extend_from_slice(&wire.bytes[..wire.splice_at]);
        if declare_ns {
            crate::xml::write_attr(out, "xmlns", NS_CLIENT);
        }
        for (name, jid) in [("from", &self.from), ("to", &self.to)] {
            if let Some(jid) = jid {
                crate::xml::write_attr(out, name, jid.as_str());
            }
        }
        out.extend_from_slice(&wire.bytes[wire.splice_at..]);
    }

    /// The stanza as written on a `jabber:client` stream.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

impl std::fmt::Display for Stanza {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(xml: &str) -> Stanza {
        Stanza::from_element(Element::parse(xml.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn writes_the_current_addressing_into_the_shared_bytes() {
        let mut stanza = parsed("<message xmlns='jabber:client' to='b@x' type='chat'><body>a&amp;b</body></message>");
        stanza.set_from(&Jid::new("a@x/1").unwrap());
        stanza.prepare_wire();
        let mut copy = stanza.clone();
        copy.set_to(Jid::new("c@x/2").unwrap());
        assert_eq!(
            String::from_utf8(stanza.to_bytes()).unwrap(),
            "<message from='a@x/1' to='b@x' type='chat'><body>a&amp;b</body></message>"
        );
        assert_eq!(
            String::from_utf8(copy.to_bytes()).unwrap(),
            "<message from='a@x/1' to='c@x/2' type='chat'><body>a&amp;b</body></message>"
        );
        assert!(Arc::ptr_eq(&stanza.body, &copy.body), "fan-out copies share one body");
    }

    #[test]
    fn changing_a_shared_payload_copies_it_and_drops_the_cached_bytes() {
        let stanza = parsed("<message xmlns='jabber:client' from='a@x/1'><body>hi</body></message>");
        stanza.prepare_wire();
        let mut changed = stanza.clone();
        changed.el_mut().push_child(Element::new("x", "urn:example"));
        assert_eq!(stanza.to_string(), "<message from='a@x/1'><body>hi</body></message>");
        assert_eq!(changed.to_string(), "<message from='a@x/1'><body>hi</body><x xmlns='urn:example'/></message>");
    }

    #[test]
    fn the_whole_element_round_trips() {
        let stanza = parsed("<iq xmlns='jabber:client' type='get' id='1' to='x'><q xmlns='urn:q'/></iq>");
        assert!(stanza.el().attr("to").is_none(), "addressing lives in the envelope");
        let el = stanza.clone().into_element();
        assert_eq!(el.attr("to"), Some("x"));
        assert_eq!(el, stanza.to_element());
        assert_eq!(Stanza::from_element(el).unwrap().to_string(), stanza.to_string());
    }

    #[test]
    fn the_stored_document_is_the_whole_element_from_the_cached_bytes() {
        let mut stanza = parsed(
            "<message xmlns='jabber:client' type='chat' from='a@x/1' to='b@x'>\
             <body>a&amp;b</body><x xmlns='urn:example'><y/></x></message>",
        );
        stanza.set_to(Jid::new("b@x/2").unwrap());
        let document = stanza.to_document();
        assert_eq!(document, stanza.to_element().to_bytes(""), "the bytes stores kept before");
        assert_eq!(Element::parse(&document).unwrap(), stanza.to_element());
        assert!(stanza.body.wire.get().is_some(), "the delivery reuses the bytes made for storage");
    }

    #[test]
    fn rejects_nonzas_and_bad_addresses() {
        let nonza = Element::parse(b"<r xmlns='urn:xmpp:sm:3'/>").unwrap();
        assert_eq!(Stanza::from_element(nonza).unwrap_err().0, EnvelopeError::NotAStanza);
        let bad = Element::parse(b"<message xmlns='jabber:client' to='@@'/>").unwrap();
        assert_eq!(Stanza::from_element(bad).unwrap_err().0, EnvelopeError::BadJid("to"));
    }
}
