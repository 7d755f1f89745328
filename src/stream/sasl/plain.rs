//! The PLAIN mechanism (RFC 4616), server side.
//!
//! The client sends one message, `[authzid] NUL authcid NUL passwd` (RFC 4616 §2), in the
//! `<auth/>` element; there is no challenge. The server checks the password against the stored
//! SCRAM verifier ([`super::StoredCredentials::verify_plain`]) and answers `<success/>` or
//! `<failure/>`. Because the password crosses the wire, PLAIN is only offered inside TLS
//! ([`super::offered`]).

use std::fmt;

use super::SaslError;

/// A parsed PLAIN message.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The requested authorization identity, `None` when the client left it empty (the usual
    /// case: act as the authenticated user). The caller decides whether it is allowed and
    /// answers `invalid-authzid` otherwise.
    pub authzid: Option<String>,
    /// The authentication identity (username), after SASLprep so that it is looked up the same
    /// way as a SCRAM username.
    pub authcid: String,
    /// The password exactly as sent; [`super::ScramCredential::verify_plain`] applies SASLprep.
    pub password: String,
}

impl fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses a PLAIN initial response (already base64-decoded).
///
/// Exactly two NUL separators must be present, so a NUL inside any field is rejected;
/// authcid and password must be non-empty UTF-8 (RFC 4616 §2 grammar: `1*SAFE`).
pub fn parse_plain(message: &[u8]) -> Result<PlainCredentials, SaslError> {
    let text = std::str::from_utf8(message).map_err(|_| SaslError::Malformed("not UTF-8"))?;
    let mut fields = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslError::Malformed("PLAIN needs exactly three NUL-separated fields"));
    };
    if authcid.is_empty() {
        return Err(SaslError::Malformed("empty authentication identity"));
    }
    if password.is_empty() {
        return Err(SaslError::Malformed("empty password"));
    }
    let authcid = stringprep::saslprep(authcid)
        .map_err(|_| SaslError::Malformed("authentication identity rejected by SASLprep"))?;
    if authcid.is_empty() {
        return Err(SaslError::Malformed("empty authentication identity"));
    }
    Ok(PlainCredentials {
        authzid: (!authzid.is_empty()).then(|| authzid.to_owned()),
        authcid: authcid.into_owned(),
        password: password.to_owned(),
    })
}
