//! Server side of SASL authentication (RFC 4422) as profiled for XMPP by RFC 6120 §6.
//!
//! # Flow
//!
//! 1. After TLS (or on a plain stream, where only SCRAM is allowed), the receiving entity lists
//!    [`offered`] mechanisms in `<mechanisms/>` (RFC 6120 §6.4.1) and, when channel binding is
//!    possible, the XEP-0440 `<sasl-channel-binding/>` list from [`channel_binding_types`].
//! 2. The client picks one in `<auth mechanism='…'>`; [`select`] checks the choice against what
//!    this connection offers (RFC 6120 §6.4.2, §6.5.4 / §6.5.7).
//! 3. Payloads travel base64-encoded in element text; [`decode_payload`] / [`encode_payload`]
//!    handle that layer, including the `=` that stands for an empty response (RFC 6120 §6.4.2).
//! 4. `PLAIN` (RFC 4616) is a single message: [`plain::parse_plain`], then
//!    [`StoredCredentials::verify_plain`].
//! 5. `SCRAM-*` (RFC 5802, RFC 7677) takes two round trips: [`scram::parse_client_first`], an
//!    async credential lookup by the caller, [`ScramServer::start`] (server-first in a
//!    `<challenge/>`), then [`ScramServer::finish`] (server-final in `<success/>`).
//! 6. Any error maps to one RFC 6120 §6.5 `<failure/>` condition via [`SaslError::condition`].
//!
//! Credentials are stored as SCRAM `StoredKey`/`ServerKey` pairs for both SHA-1 and SHA-256
//! ([`credentials`]); neither the password nor the `SaltedPassword` is ever kept, since either
//! would let a database reader authenticate as the user.

pub mod credentials;
pub mod plain;
pub mod scram;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

pub use credentials::{ScramCredential, ScramHash, StoredCredentials};
pub use plain::{PlainCredentials, parse_plain};
pub use scram::{ChannelBindings, ClientFirst, ScramServer, parse_client_first};

/// Namespace of the XEP-0440 `<sasl-channel-binding/>` stream feature.
pub const SASL_CB_NS: &str = "urn:xmpp:sasl-cb:0";

/// A SASL mechanism this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha1,
    ScramSha1Plus,
    ScramSha256,
    ScramSha256Plus,
    Plain,
}

impl Mechanism {
    /// Every mechanism, strongest first: the order used in `<mechanisms/>`.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA-registered mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// Parses a mechanism name. Names are matched exactly: RFC 4422 §3.1 names are uppercase.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether this is a channel-binding (`-PLUS`) variant.
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus)
    }

    /// The SCRAM hash of this mechanism, `None` for PLAIN.
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(ScramHash::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(ScramHash::Sha256),
            Mechanism::Plain => None,
        }
    }
}

/// Mechanisms to advertise on a stream, strongest first.
///
/// PLAIN sends the password itself, so it is only offered inside TLS (RFC 6120 §6.4.1 leaves it
/// to policy; we never expose it on a clear stream). `-PLUS` variants are offered only when the
/// connection can produce at least one channel binding; the SCRAM downgrade check in
/// [`scram::parse_client_first`] relies on this function being the single source of truth.
pub fn offered(tls: bool, bindings: &ChannelBindings) -> Vec<Mechanism> {
    let plus = tls && bindings.any();
    Mechanism::ALL
        .into_iter()
        .filter(|m| match m {
            Mechanism::Plain => tls,
            m if m.is_plus() => plus,
            _ => true,
        })
        .collect()
}

/// Validates the mechanism a client asked for in `<auth/>` against what was offered.
///
/// PLAIN on a clear stream gives `encryption-required` (RFC 6120 §6.5.4) so that the client
/// learns why; anything else not offered gives `invalid-mechanism` (RFC 6120 §6.5.7).
pub fn select(name: &str, tls: bool, bindings: &ChannelBindings) -> Result<Mechanism, SaslError> {
    let mechanism = Mechanism::from_name(name).ok_or(SaslError::InvalidMechanism)?;
    if offered(tls, bindings).contains(&mechanism) {
        Ok(mechanism)
    } else if mechanism == Mechanism::Plain {
        Err(SaslError::EncryptionRequired)
    } else {
        Err(SaslError::InvalidMechanism)
    }
}

/// A channel-binding type (RFC 5056) that a connection may support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelBindingType {
    /// RFC 9266; only sound on TLS 1.3, so it is only populated there.
    TlsExporter,
    /// RFC 5929 §4: hash of the server's leaf certificate, available on any TLS version.
    TlsServerEndPoint,
}

impl ChannelBindingType {
    /// The registered name, as used in the gs2 header `p=` and in XEP-0440.
    pub fn name(self) -> &'static str {
        match self {
            ChannelBindingType::TlsExporter => "tls-exporter",
            ChannelBindingType::TlsServerEndPoint => "tls-server-end-point",
        }
    }

    /// Parses a registered name; `tls-unique` is deliberately unknown (rustls cannot produce it).
    pub fn from_name(name: &str) -> Option<ChannelBindingType> {
        match name {
            "tls-exporter" => Some(ChannelBindingType::TlsExporter),
            "tls-server-end-point" => Some(ChannelBindingType::TlsServerEndPoint),
            _ => None,
        }
    }
}

/// The XEP-0440 list of channel-binding types for a connection, preferred first.
///
/// `tls-exporter` appears only when the binding data was produced, which the TLS layer does
/// only for TLS 1.3; `tls-server-end-point` appears on every TLS connection.
pub fn channel_binding_types(bindings: &ChannelBindings) -> Vec<ChannelBindingType> {
    let mut types = Vec::with_capacity(2);
    if bindings.tls_exporter.is_some() {
        types.push(ChannelBindingType::TlsExporter);
    }
    if bindings.tls_server_end_point.is_some() {
        types.push(ChannelBindingType::TlsServerEndPoint);
    }
    types
}

/// Decodes the base64 text of `<auth/>` or `<response/>` (RFC 6120 §6.4.2).
///
/// A lone `=` is an explicitly empty response; surrounding whitespace from pretty-printed XML is
/// tolerated, anything else that is not strict base64 is `incorrect-encoding`.
pub fn decode_payload(text: &str) -> Result<Vec<u8>, SaslError> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if text == "=" {
        return Ok(Vec::new());
    }
    BASE64.decode(text).map_err(|_| SaslError::IncorrectEncoding)
}

/// Encodes a challenge or success payload; an empty payload becomes `=` (RFC 6120 §6.4.2).
pub fn encode_payload(data: &[u8]) -> String {
    if data.is_empty() { "=".to_owned() } else { BASE64.encode(data) }
}

/// Why a SASL exchange failed. Messages are for logs; only [`SaslError::condition`] goes on the
/// wire, so that a peer learns nothing beyond the RFC 6120 §6.5 condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The message does not follow the mechanism's grammar.
    #[error("malformed SASL message: {0}")]
    Malformed(&'static str),
    /// The element text is not valid base64.
    #[error("SASL payload is not valid base64")]
    IncorrectEncoding,
    /// Wrong password or proof, or an unknown user (deliberately not told apart).
    #[error("authentication failed")]
    NotAuthorized,
    /// Channel-binding failure: downgrade, unsupported type, or mismatching data.
    #[error("channel binding failed: {0}")]
    ChannelBinding(&'static str),
    /// The authorization identity is not acceptable for this user.
    #[error("invalid authorization identity")]
    InvalidAuthzid,
    /// The mechanism is unknown or not offered on this connection.
    #[error("mechanism not supported")]
    InvalidMechanism,
    /// The mechanism needs a TLS-protected stream.
    #[error("mechanism requires TLS")]
    EncryptionRequired,
    /// A password could not be prepared with SASLprep (RFC 4013).
    #[error("password rejected by SASLprep: {0}")]
    Saslprep(String),
    /// A server-side problem (randomness, storage, a mismatching credential).
    #[error("temporary authentication failure: {0}")]
    Temporary(String),
    /// The client sent `<abort/>`.
    #[error("authentication aborted by the client")]
    Aborted,
}

impl SaslError {
    /// The RFC 6120 §6.5 defined condition to put in `<failure/>`.
    pub fn condition(&self) -> &'static str {
        match self {
            SaslError::Malformed(_) | SaslError::Saslprep(_) => "malformed-request",
            SaslError::IncorrectEncoding => "incorrect-encoding",
            SaslError::NotAuthorized | SaslError::ChannelBinding(_) => "not-authorized",
            SaslError::InvalidAuthzid => "invalid-authzid",
            SaslError::InvalidMechanism => "invalid-mechanism",
            SaslError::EncryptionRequired => "encryption-required",
            SaslError::Temporary(_) => "temporary-auth-failure",
            SaslError::Aborted => "aborted",
        }
    }
}

/// Fills a buffer from the operating system's CSPRNG.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), SaslError> {
    getrandom::fill(buf).map_err(|e| SaslError::Temporary(format!("random source failed: {e}")))
}

#[cfg(test)]
mod tests;
