//! Serialisation of [`Element`] trees.
//!
//! The output is what RFC 6120 peers expect on the wire: single-quoted attributes, the
//! namespace given as a default `xmlns` declaration only where it changes (so stanzas written
//! onto a `jabber:client` stream carry no `xmlns` at all), and escaping such that re-parsing the
//! bytes yields the same tree. That last property needs more than the three mandatory escapes:
//! XML parsers normalise literal CR, LF and tab inside attribute values to spaces and literal CR
//! in text to LF (XML 1.0 §2.11, §3.3.3), so those are written as character references.

use super::element::{Element, Node};

impl Element {
    /// Appends the serialised element to `out`.
    ///
    /// `parent_ns` is the default namespace in scope where the element is written (the stream's
    /// `jabber:client` / `jabber:server` for a stanza); an `xmlns` declaration is emitted only
    /// when `self.ns` differs from it. An attribute literally named `xmlns` is skipped, since
    /// `ns` is authoritative.
    pub fn write_to(&self, out: &mut Vec<u8>, parent_ns: &str) {
        out.push(b'<');
        out.extend_from_slice(self.name.as_bytes());
        if self.ns != parent_ns {
            write_attr(out, "xmlns", &self.ns);
        }
        for (name, value) in &self.attrs {
            if name != "xmlns" {
                write_attr(out, name, value);
            }
        }
        if self.children.is_empty() {
            out.extend_from_slice(b"/>");
            return;
        }
        out.push(b'>');
        for child in &self.children {
            match child {
                Node::Element(e) => e.write_to(out, &self.ns),
                Node::Text(t) => escape_text(out, t),
            }
        }
        out.extend_from_slice(b"</");
        out.extend_from_slice(self.name.as_bytes());
        out.push(b'>');
    }
}

/// Appends ` name='value'` with the value escaped.
pub fn write_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escape_attr(out, value);
    out.push(b'\'');
}

/// Escapes character data.
pub(crate) fn escape_text(out: &mut Vec<u8>, text: &str) {
    escape_with(out, text, |b| match b {
        b'&' => Some(b"&amp;"),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'\r' => Some(b"&#13;"),
        _ => None,
    });
}

/// Escapes an attribute value for either quote style.
pub(crate) fn escape_attr(out: &mut Vec<u8>, value: &str) {
    escape_with(out, value, |b| match b {
        b'&' => Some(b"&amp;"),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'\'' => Some(b"&apos;"),
        b'"' => Some(b"&quot;"),
        b'\t' => Some(b"&#9;"),
        b'\n' => Some(b"&#10;"),
        b'\r' => Some(b"&#13;"),
        _ => None,
    });
}

/// Copies `s`, replacing the bytes `escape` maps; unescaped runs are copied in one piece.
/// Most values (addresses, ids, plain bodies) need no escape at all: they are found so by a
/// first scan that only compares bytes against the markup range, and copied whole.
fn escape_with(out: &mut Vec<u8>, s: &str, escape: impl Fn(u8) -> Option<&'static [u8]>) {
    let bytes = s.as_bytes();
    // Every byte either closure replaces is one of these: `&`, `'`, `"`, `<`, `>` or a
    // control character. A fold without an early exit lets the compiler test many bytes at
    // once.
    let plain = bytes.iter().fold(true, |plain, &b| {
        plain & (b >= b' ') & (b != b'&') & (b != b'\'') & (b != b'"') & (b != b'<') & (b != b'>')
    });
    if plain {
        out.extend_from_slice(bytes);
        return;
    }
    let mut last = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(replacement) = escape(b) {
            out.extend_from_slice(&bytes[last..i]);
            out.extend_from_slice(replacement);
            last = i + 1;
        }
    }
    out.extend_from_slice(&bytes[last..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(s: &str) -> String {
        let mut out = Vec::new();
        escape_text(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    fn attr_of(s: &str) -> String {
        let mut out = Vec::new();
        escape_attr(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escaping_table() {
        let table: &[(&str, &str, &str)] = &[
            ("plain é", "plain é", "plain é"),
            ("a&b", "a&amp;b", "a&amp;b"),
            ("<x>", "&lt;x&gt;", "&lt;x&gt;"),
            ("'\"", "'\"", "&apos;&quot;"),
            ("\t\n\r", "\t\n&#13;", "&#9;&#10;&#13;"),
            ("]]>", "]]&gt;", "]]&gt;"),
        ];
        for (input, text, attr) in table {
            assert_eq!(text_of(input), *text, "text {input:?}");
            assert_eq!(attr_of(input), *attr, "attr {input:?}");
        }
    }

    #[test]
    fn namespaces_only_where_they_change() {
        let msg = Element::new("message", "jabber:client")
            .with_attr("to", "juliet@example.com")
            .with_child(Element::new("body", "jabber:client").with_text("hi & bye"))
            .with_child(Element::new("request", "urn:xmpp:receipts"))
            .with_child(Element::new("x", ""));
        let on_stream = msg.to_bytes("jabber:client");
        assert_eq!(
            String::from_utf8(on_stream).unwrap(),
            "<message to='juliet@example.com'><body>hi &amp; bye</body>\
             <request xmlns='urn:xmpp:receipts'/><x xmlns=''/></message>"
        );
        let s2s = String::from_utf8(msg.to_bytes("jabber:server")).unwrap();
        assert!(s2s.starts_with("<message xmlns='jabber:client' to="));
    }

    #[test]
    fn explicit_xmlns_attribute_is_not_duplicated() {
        let e = Element::new("a", "urn:a").with_attr("xmlns", "urn:other");
        assert_eq!(e.to_string(), "<a xmlns='urn:a'/>");
    }
}
