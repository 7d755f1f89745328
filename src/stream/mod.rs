//! Stream negotiation pieces shared by client (and later server) streams, RFC 6120 §4–§7:
//! namespaces, the stream header we send, stream errors, STARTTLS and SASL.

pub mod sasl;
pub mod tls;

use crate::xml::{Element, XmlError};
use std::fmt::Write as _;

/// `http://etherx.jabber.org/streams`
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// `urn:ietf:params:xml:ns:xmpp-streams`, stream error conditions (RFC 6120 §4.9.3).
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// `urn:ietf:params:xml:ns:xmpp-tls` (RFC 6120 §5).
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// `urn:ietf:params:xml:ns:xmpp-sasl` (RFC 6120 §6).
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// `urn:ietf:params:xml:ns:xmpp-bind` (RFC 6120 §7).
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// `urn:ietf:params:xml:ns:xmpp-session` (RFC 3921 §3, kept as optional for old clients).
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// `urn:xmpp:sasl-cb:0` (XEP-0440 channel-binding types).
pub const NS_SASL_CB: &str = "urn:xmpp:sasl-cb:0";

/// A stream-level error: sent as `<stream:error/>`, then the stream is closed (RFC 6120 §4.9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamError {
    /// Defined condition, such as `not-well-formed`.
    pub condition: &'static str,
    /// Optional human-readable text.
    pub text: Option<String>,
}

impl StreamError {
    /// An error without text.
    pub fn new(condition: &'static str) -> StreamError {
        StreamError { condition, text: None }
    }

    /// An error with text.
    pub fn with_text(condition: &'static str, text: impl Into<String>) -> StreamError {
        StreamError { condition, text: Some(text.into()) }
    }

    /// The `<stream:error/>` element followed by the closing tag of the stream.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut error = Element::new("error", NS_STREAMS);
        error.push_child(Element::new(self.condition, NS_STREAM_ERRORS));
        if let Some(text) = &self.text {
            error.push_child(Element::new("text", NS_STREAM_ERRORS).with_text(text));
        }
        // Written with the `stream:` prefix the header declared.
        let mut out = b"<stream:error>".to_vec();
        for child in error.child_elements() {
            child.write_to(&mut out, NS_STREAMS);
        }
        out.extend_from_slice(b"</stream:error></stream:stream>");
        out
    }
}

impl From<XmlError> for StreamError {
    fn from(e: XmlError) -> StreamError {
        StreamError::with_text(e.condition(), e.to_string())
    }
}

/// Our stream header (RFC 6120 §4.7), with the XML declaration.
pub fn header(content_ns: &str, from: &str, id: &str) -> Vec<u8> {
    let mut out = String::with_capacity(200);
    let _ = write!(
        out,
        "<?xml version='1.0'?><stream:stream xmlns='{content_ns}' xmlns:stream='{NS_STREAMS}' \
         id='{id}' from='{}' version='1.0' xml:lang='en'>",
        escape_attr(from)
    );
    out.into_bytes()
}

/// Appends `<stream:features>` with the given children to `out` (our stream header, so that
/// both leave in one write).
pub fn write_features(out: &mut Vec<u8>, children: &[Element], content_ns: &str) {
    out.extend_from_slice(b"<stream:features>");
    for child in children {
        child.write_to(out, content_ns);
    }
    out.extend_from_slice(b"</stream:features>");
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('\'', "&apos;").replace('<', "&lt;")
}
