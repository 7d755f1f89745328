//! The stream header (RFC 6120 §4.7) and the XML declaration that may precede it.

use super::build::checked_str;
use super::error::{XmlError, nwf};

/// The namespace of the stream root element (RFC 6120 §4.8.1).
pub const STREAMS_NS: &str = "http://etherx.jabber.org/streams";

/// The attributes of a received `<stream:stream>` start tag (RFC 6120 §4.7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// Local name of the root element (always `stream` once accepted).
    pub name: String,
    /// Resolved namespace of the root element (always [`STREAMS_NS`] once accepted).
    pub ns: String,
    /// The default namespace declared on the header (`jabber:client`, `jabber:server`, ...).
    /// Checking that it is the expected one is left to the caller.
    pub default_ns: Option<String>,
    /// The `to` attribute.
    pub to: Option<String>,
    /// The `from` attribute.
    pub from: Option<String>,
    /// The `id` attribute.
    pub id: Option<String>,
    /// The `version` attribute.
    pub version: Option<String>,
    /// The `xml:lang` attribute.
    pub lang: Option<String>,
    /// Every attribute as written, declarations such as `xmlns:db` included.
    pub attrs: Vec<(String, String)>,
}

impl StreamHeader {
    /// The value of the attribute with this qualified name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn from_attrs(name: String, ns: String, attrs: Vec<(String, String)>) -> Self {
        let mut header = StreamHeader { name, ns, ..StreamHeader::default() };
        for (key, value) in &attrs {
            let slot = match key.as_str() {
                "xmlns" => &mut header.default_ns,
                "to" => &mut header.to,
                "from" => &mut header.from,
                "id" => &mut header.id,
                "version" => &mut header.version,
                "xml:lang" => &mut header.lang,
                _ => continue,
            };
            *slot = Some(value.clone());
        }
        header.attrs = attrs;
        header
    }
}

/// Checks the XML declaration: version 1.0 and, if named, the UTF-8 encoding (RFC 6120 §11.6).
pub(crate) fn check_declaration(slice: &[u8]) -> Result<(), XmlError> {
    let mut reader = quick_xml::Reader::from_str(checked_str(slice)?);
    let decl = match reader.read_event() {
        Ok(quick_xml::events::Event::Decl(decl)) => decl,
        Ok(_) => {
            return Err(XmlError::RestrictedXml("processing instructions are not allowed"));
        }
        Err(_) => return Err(nwf("malformed XML declaration")),
    };
    match decl.version() {
        Ok(version) if version == "1.0" => {}
        _ => return Err(nwf("unsupported XML version")),
    }
    match decl.encoding() {
        None => Ok(()),
        Some(Ok(enc)) if enc.eq_ignore_ascii_case("UTF-8") => Ok(()),
        Some(Ok(_)) => Err(XmlError::UnsupportedEncoding),
        Some(Err(_)) => Err(nwf("malformed XML declaration")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations() {
        let table: &[(&str, Option<&str>)] = &[
            ("<?xml version='1.0'?>", None),
            ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", None),
            ("<?xml version='1.0' encoding='utf-8' standalone='yes'?>", None),
            ("<?xml version='1.0' encoding='ISO-8859-1'?>", Some("unsupported-encoding")),
            ("<?xml version='1.0' encoding='UTF-16'?>", Some("unsupported-encoding")),
            ("<?xml version='1.1'?>", Some("not-well-formed")),
            ("<?xml encoding='UTF-8'?>", Some("not-well-formed")),
            ("<?xml-stylesheet href='a'?>", Some("restricted-xml")),
            ("<?php echo 1 ?>", Some("restricted-xml")),
        ];
        for (input, want) in table {
            let got = check_declaration(input.as_bytes()).err();
            assert_eq!(got.map(|e| e.condition()), *want, "{input}");
        }
    }

    #[test]
    fn header_fields_from_attributes() {
        let attrs = vec![
            ("xmlns".to_owned(), "jabber:server".to_owned()),
            ("xmlns:db".to_owned(), "jabber:server:dialback".to_owned()),
            ("xml:lang".to_owned(), "de".to_owned()),
            ("id".to_owned(), "abc".to_owned()),
        ];
        let h = StreamHeader::from_attrs("stream".into(), STREAMS_NS.into(), attrs);
        assert_eq!(h.default_ns.as_deref(), Some("jabber:server"));
        assert_eq!(h.lang.as_deref(), Some("de"));
        assert_eq!(h.id.as_deref(), Some("abc"));
        assert_eq!((&h.to, &h.from, &h.version), (&None, &None, &None));
        assert_eq!(h.attr("xmlns:db"), Some("jabber:server:dialback"));
    }
}
