//! The owned element tree that framed stanzas are delivered as.
//!
//! Names are stored already resolved: `name` is the local name and `ns` the namespace URI, so
//! code never has to think about prefixes. Attributes keep their qualified names as written,
//! because the only prefixed attributes in XMPP (`xml:lang`, and rare extension attributes)
//! are looked up by that spelling.

use std::fmt;

use super::error::XmlError;
use super::framer::{FrameEvent, Framer, Limits};

/// One XML element with its attributes and children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name (no prefix).
    pub name: String,
    /// Resolved namespace URI ("" for no namespace).
    pub ns: String,
    /// Attributes as (qualified name, unescaped value), in document order. Namespace
    /// declarations are not kept, except `xmlns:prefix` ones that a prefixed attribute of this
    /// same element needs (copied here if they were declared on an ancestor), so that every
    /// element serialises on its own.
    pub attrs: Vec<(String, String)>,
    /// Child elements and text, in document order. Adjacent text is merged into one node.
    pub children: Vec<Node>,
}

/// A child of an [`Element`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A nested element.
    Element(Element),
    /// Unescaped character data (never empty when produced by the parser).
    Text(String),
}

impl Element {
    /// A new element without attributes or children.
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Element { name: name.into(), ns: ns.into(), attrs: Vec::new(), children: Vec::new() }
    }

    /// Builder form of [`set_attr`](Self::set_attr).
    pub fn with_attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder form of [`push_child`](Self::push_child).
    pub fn with_child(mut self, child: Element) -> Self {
        self.push_child(child);
        self
    }

    /// Builder form of [`push_text`](Self::push_text).
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.push_text(text);
        self
    }

    /// Whether this element has the given local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// The value of the attribute with this qualified name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Sets an attribute, replacing an existing one of the same name in place.
    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name, value)),
        }
    }

    /// Removes an attribute, returning its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let index = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(index).1)
    }

    /// The first child element with this local name and namespace.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.child_elements().find(|e| e.is(name, ns))
    }

    /// Mutable form of [`get_child`](Self::get_child).
    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|node| match node {
            Node::Element(e) if e.is(name, ns) => Some(e),
            _ => None,
        })
    }

    /// Whether a child element with this name and namespace exists.
    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.get_child(name, ns).is_some()
    }

    /// The child elements, skipping text.
    pub fn child_elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|node| match node {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element, if any (the payload of an IQ, for example).
    pub fn first_child_element(&self) -> Option<&Element> {
        self.child_elements().next()
    }

    /// The concatenation of the direct text children (not of descendants).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for node in &self.children {
            if let Node::Text(t) = node {
                out.push_str(t);
            }
        }
        out
    }

    /// Removes and returns the first child element with this name and namespace.
    pub fn remove_child(&mut self, name: &str, ns: &str) -> Option<Element> {
        let index = self.children.iter().position(|node| matches!(node, Node::Element(e) if e.is(name, ns)))?;
        match self.children.remove(index) {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        }
    }

    /// Appends a child element.
    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// Appends text, merging it with a preceding text node so the tree stays in the form the
    /// parser produces. Empty text is ignored.
    pub fn push_text(&mut self, text: impl Into<String>) {
        let text = text.into();
        if text.is_empty() {
            return;
        }
        match self.children.last_mut() {
            Some(Node::Text(prev)) => prev.push_str(&text),
            _ => self.children.push(Node::Text(text)),
        }
    }

    /// Serialises to a new buffer; see [`write_to`](Self::write_to).
    pub fn to_bytes(&self, parent_ns: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_to(&mut out, parent_ns);
        out
    }

    /// Parses one standalone element (optionally surrounded by whitespace) with the default
    /// [`Limits`] and the same restrictions as the stream framer. No namespace is in scope
    /// beforehand, so the element must declare what it uses.
    pub fn parse(bytes: &[u8]) -> Result<Element, XmlError> {
        Element::parse_with_limits(bytes, Limits::default())
    }

    /// [`parse`](Self::parse) with explicit limits.
    pub fn parse_with_limits(bytes: &[u8], limits: Limits) -> Result<Element, XmlError> {
        let mut framer = Framer::fragment(limits);
        framer.feed(bytes);
        let mut found = None;
        while let Some(event) = framer.next_event()? {
            match event {
                FrameEvent::Element(e) if found.is_none() => found = Some(e),
                _ => return Err(XmlError::NotWellFormed("more than one root element")),
            }
        }
        if framer.buffered_len() > 0 {
            return Err(XmlError::NotWellFormed("incomplete element"));
        }
        found.ok_or(XmlError::NotWellFormed("no element"))
    }
}

/// Serialises with no namespace in scope, for logs and tests.
impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "jabber:client";

    fn sample() -> Element {
        Element::new("iq", CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "1")
            .with_text(" ")
            .with_child(Element::new("query", "jabber:iq:roster").with_attr("ver", "v1"))
            .with_child(Element::new("ping", "urn:xmpp:ping"))
            .with_text("a")
            .with_text("b")
    }

    #[test]
    fn attribute_accessors() {
        let mut e = sample();
        assert_eq!(e.attr("type"), Some("get"));
        e.set_attr("type", "set");
        assert_eq!(e.attrs[0], ("type".to_owned(), "set".to_owned()));
        assert_eq!(e.remove_attr("id"), Some("1".to_owned()));
        assert_eq!(e.remove_attr("id"), None);
        assert_eq!(e.attr("id"), None);
    }

    #[test]
    fn child_accessors() {
        let mut e = sample();
        assert!(e.is("iq", CLIENT));
        assert!(e.has_child("ping", "urn:xmpp:ping"));
        assert!(!e.has_child("ping", CLIENT));
        assert_eq!(e.first_child_element().map(|c| c.name.as_str()), Some("query"));
        assert_eq!(e.child_elements().count(), 2);
        assert_eq!(e.text(), " ab");
        assert_eq!(e.children.len(), 4, "adjacent text merged");
        e.get_child_mut("query", "jabber:iq:roster").unwrap().set_attr("ver", "v2");
        let q = e.get_child("query", "jabber:iq:roster").unwrap();
        assert_eq!(q.attr("ver"), Some("v2"));
        let removed = e.remove_child("query", "jabber:iq:roster").unwrap();
        assert_eq!(removed.attr("ver"), Some("v2"));
        assert!(e.remove_child("query", "jabber:iq:roster").is_none());
        assert_eq!(e.child_elements().count(), 1);
        e.push_text("");
        assert_eq!(e.children.len(), 3);
    }

    #[test]
    fn display_uses_empty_parent_namespace() {
        let e = Element::new("a", "urn:a").with_child(Element::new("b", "urn:a"));
        assert_eq!(e.to_string(), "<a xmlns='urn:a'><b/></a>");
    }

    #[test]
    fn parse_rejects_trailing_and_missing_content() {
        let table: &[(&[u8], &str)] = &[
            (b"", "not-well-formed"),
            (b"  ", "not-well-formed"),
            (b"<a/><b/>", "not-well-formed"),
            (b"<a>", "not-well-formed"),
            (b"<a/>x", "bad-format"),
            (b"</a>", "not-well-formed"),
            (b"<a/><!-- c -->", "restricted-xml"),
        ];
        for (input, cond) in table {
            let err = Element::parse(input).unwrap_err();
            assert_eq!(err.condition(), *cond, "{:?}", String::from_utf8_lossy(input));
        }
        assert!(Element::parse(b" \n<a/>\t").is_ok());
    }
}
