//! Turns one complete, already delimited piece of markup into owned data with quick-xml.
//!
//! The lexer has found the exact bytes of a stanza (or of the stream header's start tag), so
//! quick-xml's plain slice `Reader` runs over a finished slice and never has to suspend. quick-xml
//! does the tokenising and tag matching; this module adds what it leaves to the caller:
//! namespace resolution with our own scope stack, the `Char`/`Name` rules, reference
//! restrictions (RFC 6120 §11.1), and the depth and attribute limits.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::events::{BytesRef, BytesStart, Event};

use super::element::{Element, Node};
use super::error::{Limit, XmlError, from_attr_error, from_quick_xml, nwf};
use super::framer::Limits;
use super::names::{NsScope, XML_NS, check_raw_chars, is_ncname, is_xml_char, split_qname};

/// A start tag with its attributes read and checked, and its declarations pushed on the scope.
pub(crate) struct OpenTag {
    /// The local name.
    pub(crate) local: String,
    /// The resolved namespace.
    pub(crate) ns: String,
    /// All attributes as written (declarations included), values unescaped.
    pub(crate) raw_attrs: Vec<(String, String)>,
    /// Prefixes (other than `xml`) used by the tag's own attributes.
    needed_prefixes: Vec<String>,
}

/// Parses a complete element. Namespaces declared in `scope` (the stream header's) are
/// inherited; `scope` is left as it was on return, whether parsing succeeded or not.
pub(crate) fn build_element(slice: &[u8], scope: &mut NsScope, limits: &Limits) -> Result<Element, XmlError> {
    let depth = scope.depth();
    let result = build_inner(slice, scope, limits);
    scope.truncate(depth);
    result
}

/// Parses the start tag that opens a stream, returning its qualified name as written and the
/// parsed tag. Its declarations stay pushed on `scope`.
pub(crate) fn build_open_tag(
    slice: &[u8],
    scope: &mut NsScope,
    limits: &Limits,
) -> Result<(String, OpenTag), XmlError> {
    let mut reader = Reader::from_str(checked_str(slice)?);
    match reader.read_event() {
        Ok(Event::Start(e) | Event::Empty(e)) => {
            let tag = open_tag(&e, scope, limits)?;
            Ok((e.name().as_ref().to_owned(), tag))
        }
        Ok(_) => Err(nwf("expected a start tag")),
        Err(e) => Err(from_quick_xml(&e)),
    }
}

/// Validates UTF-8 and the `Char` production for the whole slice in one pass each, so no
/// later step has to re-check characters that came in literally.
pub(crate) fn checked_str(slice: &[u8]) -> Result<&str, XmlError> {
    let text = std::str::from_utf8(slice).map_err(|_| nwf("invalid UTF-8"))?;
    check_raw_chars(slice)?;
    Ok(text)
}

fn build_inner(slice: &[u8], scope: &mut NsScope, limits: &Limits) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(checked_str(slice)?);
    // Open elements, innermost last: an explicit stack, so nesting never recurses.
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let event = reader.read_event().map_err(|e| from_quick_xml(&e))?;
        if root.is_some() && event != Event::Eof {
            return Err(nwf("content after the root element"));
        }
        match event {
            Event::Start(e) => stack.push(open_element(&e, scope, limits, stack.len() + 1)?),
            Event::Empty(e) => {
                let element = open_element(&e, scope, limits, stack.len() + 1)?;
                close_element(element, scope, &mut stack, &mut root);
            }
            Event::End(_) => {
                let element = stack.pop().ok_or(nwf("unexpected end tag"))?;
                close_element(element, scope, &mut stack, &mut root);
            }
            Event::Text(t) => append_text(&mut stack, &t.xml10_content())?,
            Event::CData(t) => append_text(&mut stack, &t.xml10_content())?,
            Event::GeneralRef(r) => {
                let c = resolve_reference(&r)?;
                append_text(&mut stack, c.encode_utf8(&mut [0; 4]))?;
            }
            Event::Comment(_) => return Err(XmlError::RestrictedXml("comments are not allowed")),
            Event::DocType(_) => return Err(XmlError::RestrictedXml("DTDs are not allowed")),
            Event::PI(_) | Event::Decl(_) => {
                let why = "processing instructions are not allowed";
                return Err(XmlError::RestrictedXml(why));
            }
            Event::Eof => break,
        }
    }
    match root {
        Some(element) if stack.is_empty() => Ok(element),
        _ => Err(nwf("incomplete element")),
    }
}

fn open_element(e: &BytesStart<'_>, scope: &mut NsScope, limits: &Limits, depth: usize) -> Result<Element, XmlError> {
    if depth > limits.max_depth {
        return Err(XmlError::PolicyViolation(Limit::Depth));
    }
    let tag = open_tag(e, scope, limits)?;
    let attrs = kept_attrs(tag.raw_attrs, &tag.needed_prefixes, scope)?;
    Ok(Element { name: tag.local, ns: tag.ns, attrs, children: Vec::new() })
}

/// Pops the element's scope frame and attaches it to its parent (or makes it the root).
fn close_element(element: Element, scope: &mut NsScope, stack: &mut [Element], root: &mut Option<Element>) {
    scope.pop_frame();
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(element)),
        None => *root = Some(element),
    }
}

fn append_text(stack: &mut [Element], text: &str) -> Result<(), XmlError> {
    let parent = stack.last_mut().ok_or(nwf("text outside the root element"))?;
    if !text.is_empty() {
        match parent.children.last_mut() {
            Some(Node::Text(prev)) => prev.push_str(text),
            _ => parent.children.push(Node::Text(text.to_owned())),
        }
    }
    Ok(())
}

/// Reads the tag's name and attributes and pushes a scope frame with its declarations.
fn open_tag(e: &BytesStart<'_>, scope: &mut NsScope, limits: &Limits) -> Result<OpenTag, XmlError> {
    let raw_attrs = read_attrs(e, limits)?;
    let qname = e.name();
    let (prefix, local) = split_qname(qname.as_ref())?;
    scope.push_frame();
    for (name, value) in &raw_attrs {
        if name == "xmlns" {
            scope.declare("", value)?;
        } else if let Some(prefix) = name.strip_prefix("xmlns:") {
            scope.declare(prefix, value)?;
        }
    }
    let ns = scope.resolve(prefix).ok_or(nwf("unbound prefix"))?;
    if ns == XML_NS {
        // It could never be written back: the xml namespace cannot be a default namespace.
        return Err(nwf("element in the reserved xml namespace"));
    }
    let ns = ns.to_owned();
    let needed_prefixes = check_attr_prefixes(&raw_attrs, scope)?;
    let local = local.to_owned();
    Ok(OpenTag { local, ns, raw_attrs, needed_prefixes })
}

fn read_attrs(e: &BytesStart<'_>, limits: &Limits) -> Result<Vec<(String, String)>, XmlError> {
    let mut out = Vec::new();
    // The iterator is lazy, so stopping at the limit also bounds quick-xml's duplicate check.
    for attr in e.attributes() {
        let attr = attr.map_err(|err| from_attr_error(&err))?;
        if out.len() == limits.max_attrs {
            return Err(XmlError::PolicyViolation(Limit::Attributes));
        }
        let name = attr.key.as_ref();
        split_qname(name)?;
        let value = normalize_attr_value(&attr.value)?.into_owned();
        out.push((name.to_owned(), value));
    }
    Ok(out)
}

fn is_declaration(name: &str) -> bool {
    name == "xmlns" || name.starts_with("xmlns:")
}

/// Checks that prefixed attributes use bound prefixes and that no two attributes have the same
/// expanded name (Namespaces in XML §6.3); returns the prefixes that need a declaration.
fn check_attr_prefixes(raw: &[(String, String)], scope: &NsScope) -> Result<Vec<String>, XmlError> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut needed: Vec<String> = Vec::new();
    for (name, _) in raw.iter().filter(|(name, _)| !is_declaration(name)) {
        let Some((prefix, local)) = name.split_once(':') else {
            continue;
        };
        let uri = scope.resolve(prefix).ok_or(nwf("unbound attribute prefix"))?;
        if seen.contains(&(uri, local)) {
            return Err(nwf("duplicate attribute"));
        }
        seen.push((uri, local));
        if prefix != "xml" && !needed.iter().any(|p| p == prefix) {
            needed.push(prefix.to_owned());
        }
    }
    Ok(needed)
}

/// Drops namespace declarations, keeping (or copying down from an ancestor) the `xmlns:p`
/// declarations that this element's own prefixed attributes need.
fn kept_attrs(
    mut raw: Vec<(String, String)>,
    needed: &[String],
    scope: &NsScope,
) -> Result<Vec<(String, String)>, XmlError> {
    if needed.is_empty() {
        // The common case (plain attributes, maybe an `xmlns`): filter in place.
        raw.retain(|(name, _)| !is_declaration(name));
        return Ok(raw);
    }
    let mut declared: Vec<String> = Vec::new();
    let mut kept = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        if !is_declaration(&name) {
            kept.push((name, value));
        } else if let Some(prefix) = name.strip_prefix("xmlns:")
            && needed.iter().any(|p| p == prefix)
        {
            declared.push(prefix.to_owned());
            kept.push((name, value));
        }
    }
    for prefix in needed.iter().filter(|p| !declared.contains(p)) {
        let uri = scope.resolve(prefix).ok_or(nwf("unbound attribute prefix"))?;
        kept.push((format!("xmlns:{prefix}"), uri.to_owned()));
    }
    Ok(kept)
}

/// Attribute-value normalisation (XML 1.0 §3.3.3) for CDATA attributes: references are
/// expanded and literal tab, CR, LF (and CR LF) become one space each.
fn normalize_attr_value(raw: &str) -> Result<Cow<'_, str>, XmlError> {
    const SPECIAL: [char; 5] = ['&', '<', '\t', '\n', '\r'];
    if !raw.contains(SPECIAL) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(SPECIAL) {
        out.push_str(&rest[..i]);
        let special = rest.as_bytes()[i];
        rest = &rest[i + 1..];
        match special {
            b'&' => {
                let end = rest.find(';').ok_or(nwf("unterminated reference"))?;
                out.push(resolve_name(&rest[..end])?);
                rest = &rest[end + 1..];
            }
            b'<' => return Err(nwf("'<' in an attribute value")),
            b'\r' => {
                out.push(' ');
                rest = rest.strip_prefix('\n').unwrap_or(rest);
            }
            _ => out.push(' '),
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

fn resolve_reference(r: &BytesRef<'_>) -> Result<char, XmlError> {
    resolve_name(r)
}

/// Resolves the text between `&` and `;`: a character reference or one of the five predefined
/// entities. Any other well-formed entity name is a restricted-XML violation.
fn resolve_name(name: &str) -> Result<char, XmlError> {
    if let Some(number) = name.strip_prefix('#') {
        return resolve_char_ref(number);
    }
    match name {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ if name.split(':').all(is_ncname) => Err(XmlError::RestrictedXml("only predefined entities are allowed")),
        _ => Err(nwf("malformed reference")),
    }
}

fn resolve_char_ref(number: &str) -> Result<char, XmlError> {
    let (digits, radix) = match number.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    // from_str_radix alone would accept a leading '+'.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(nwf("malformed character reference"));
    }
    u32::from_str_radix(digits, radix)
        .ok()
        .and_then(char::from_u32)
        .filter(|&c| is_xml_char(c))
        .ok_or(nwf("character reference to an invalid character"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_value_normalisation() {
        let table: &[(&str, Result<&str, &str>)] = &[
            ("plain", Ok("plain")),
            ("a\tb\nc\r\nd\re", Ok("a b c d e")),
            ("&#9;&#10;&#13;&#x41;", Ok("\t\n\rA")),
            ("&lt;&gt;&amp;&apos;&quot;", Ok("<>&'\"")),
            ("&foo;", Err("restricted-xml")),
            ("&#0;", Err("not-well-formed")),
            ("&#x1;", Err("not-well-formed")),
            ("&#xD800;", Err("not-well-formed")),
            ("&#+65;", Err("not-well-formed")),
            ("&#X41;", Err("not-well-formed")),
            ("&#99999999999;", Err("not-well-formed")),
            ("a & b", Err("not-well-formed")),
            ("&;", Err("not-well-formed")),
            ("<", Err("not-well-formed")),
        ];
        for (raw, want) in table {
            let got = normalize_attr_value(raw);
            match (got, want) {
                (Ok(v), Ok(w)) => assert_eq!(v, *w),
                (Err(e), Err(cond)) => assert_eq!(e.condition(), *cond, "{raw:?}"),
                (got, _) => panic!("{raw:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn scope_is_restored_after_errors() {
        let mut scope = NsScope::default();
        let limits = Limits::default();
        let err = build_element(b"<a xmlns='urn:a'><b>&foo;</b></a>", &mut scope, &limits);
        assert_eq!(err.unwrap_err().condition(), "restricted-xml");
        assert_eq!(scope.depth(), 0);
        assert_eq!(scope.resolve(""), Some(""));
    }
}
