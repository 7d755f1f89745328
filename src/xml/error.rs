//! Errors of the XML layer, each mapped to one RFC 6120 §4.9.3 stream error condition.
//!
//! Every failure the framer can detect is fatal for the stream (RFC 6120 §4.9.1.1: a stream
//! error closes the stream), so the error only has to tell the caller which defined condition to
//! send and a short human text for the `<text/>` child. The texts are static on purpose: they
//! never echo peer-controlled bytes back onto the wire or into logs.

use std::fmt;

/// The hard limit that an incoming stanza broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The element being buffered grew past `Limits::max_stanza_bytes`.
    StanzaSize,
    /// Elements nested deeper than `Limits::max_depth`.
    Depth,
    /// An element carried more than `Limits::max_attrs` attributes.
    Attributes,
}

impl Limit {
    fn text(self) -> &'static str {
        match self {
            Limit::StanzaSize => "stanza exceeds the maximum size",
            Limit::Depth => "elements nested too deeply",
            Limit::Attributes => "too many attributes on an element",
        }
    }
}

/// A fatal error in an incoming XML stream or fragment.
///
/// The `&'static str` carried by some variants is the human-readable reason, suitable for the
/// `<text/>` element of the stream error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// `<not-well-formed/>` (RFC 6120 §4.9.3.13): the bytes are not namespace-well-formed XML
    /// (syntax errors, mismatched tags, unbound prefixes, bad UTF-8, duplicate attributes,
    /// characters outside the XML `Char` production).
    #[error("{0}")]
    NotWellFormed(&'static str),
    /// `<restricted-xml/>` (RFC 6120 §4.9.3.18 and §11.1): a DTD, comment, processing
    /// instruction or reference to a non-predefined entity.
    #[error("{0}")]
    RestrictedXml(&'static str),
    /// `<policy-violation/>` (RFC 6120 §4.9.3.14): one of the local hard limits was exceeded.
    #[error("{}", .0.text())]
    PolicyViolation(Limit),
    /// `<invalid-namespace/>` (RFC 6120 §4.9.3.10): the stream root is not `stream` in
    /// `http://etherx.jabber.org/streams`.
    #[error("stream root must be <stream/> in http://etherx.jabber.org/streams")]
    InvalidNamespace,
    /// `<bad-format/>` (RFC 6120 §4.9.3.1): non-whitespace character data directly inside the
    /// stream element.
    #[error("text is not allowed between top-level elements")]
    BadFormat,
    /// `<unsupported-encoding/>` (RFC 6120 §4.9.3.22): the XML declaration names an encoding
    /// other than UTF-8 (RFC 6120 §11.6).
    #[error("only UTF-8 is supported")]
    UnsupportedEncoding,
}

impl XmlError {
    /// The RFC 6120 §4.9.3 defined-condition element name for this error.
    pub fn condition(&self) -> &'static str {
        match self {
            XmlError::NotWellFormed(_) => "not-well-formed",
            XmlError::RestrictedXml(_) => "restricted-xml",
            XmlError::PolicyViolation(_) => "policy-violation",
            XmlError::InvalidNamespace => "invalid-namespace",
            XmlError::BadFormat => "bad-format",
            XmlError::UnsupportedEncoding => "unsupported-encoding",
        }
    }

    /// A short human-readable description, for the stream error's `<text/>` element.
    pub fn text(&self) -> &'static str {
        match self {
            XmlError::NotWellFormed(t) | XmlError::RestrictedXml(t) => t,
            XmlError::PolicyViolation(limit) => limit.text(),
            XmlError::InvalidNamespace => "stream root must be <stream/> in http://etherx.jabber.org/streams",
            XmlError::BadFormat => "text is not allowed between top-level elements",
            XmlError::UnsupportedEncoding => "only UTF-8 is supported",
        }
    }
}

/// Shorthand used throughout the module.
pub(crate) fn nwf(reason: &'static str) -> XmlError {
    XmlError::NotWellFormed(reason)
}

/// Maps a quick-xml error to a condition. quick-xml only sees slices the lexer already
/// delimited, so anything it rejects is a plain syntax problem.
pub(crate) fn from_quick_xml(err: &quick_xml::Error) -> XmlError {
    use quick_xml::errors::IllFormedError;
    match err {
        quick_xml::Error::IllFormed(IllFormedError::MismatchedEndTag { .. })
        | quick_xml::Error::IllFormed(IllFormedError::UnmatchedEndTag(_))
        | quick_xml::Error::IllFormed(IllFormedError::MissingEndTag(_)) => nwf("mismatched end tag"),
        quick_xml::Error::IllFormed(IllFormedError::UnclosedReference) => nwf("unterminated reference"),
        quick_xml::Error::InvalidAttr(_) => nwf("malformed attribute"),
        _ => nwf("malformed XML"),
    }
}

/// Maps an attribute iteration error; duplicates are the common case worth naming.
pub(crate) fn from_attr_error(err: &quick_xml::events::attributes::AttrError) -> XmlError {
    use quick_xml::events::attributes::AttrError;
    match err {
        AttrError::Duplicated(_, _) => nwf("duplicate attribute"),
        _ => nwf("malformed attribute"),
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_texts() {
        let table: &[(XmlError, &str)] = &[
            (nwf("x"), "not-well-formed"),
            (XmlError::RestrictedXml("y"), "restricted-xml"),
            (XmlError::PolicyViolation(Limit::StanzaSize), "policy-violation"),
            (XmlError::InvalidNamespace, "invalid-namespace"),
            (XmlError::BadFormat, "bad-format"),
            (XmlError::UnsupportedEncoding, "unsupported-encoding"),
        ];
        for (err, cond) in table {
            assert_eq!(err.condition(), *cond);
            assert!(!err.text().is_empty());
            assert_eq!(err.to_string(), err.text());
        }
    }
}
