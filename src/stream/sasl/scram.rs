//! Server side of SCRAM (RFC 5802) for SHA-1 and SHA-256 (RFC 7677), with and without
//! channel binding (`-PLUS`, RFC 5802 §6, RFC 5056).
//!
//! # Conversation (RFC 5802 §3, §5)
//!
//! ```text
//! C: client-first  = gs2-header client-first-bare
//!                    gs2-header        = ("n" / "y" / "p=" cb-name) "," ["a=" authzid] ","
//!                    client-first-bare = "n=" username ",r=" c-nonce
//! S: server-first  = "r=" c-nonce s-nonce ",s=" base64(salt) ",i=" iterations
//! C: client-final  = "c=" base64(gs2-header cb-data) ",r=" c-nonce s-nonce ",p=" base64(proof)
//! S: server-final  = "v=" base64(ServerSignature)
//! ```
//!
//! The API splits at the point where the server needs the user's credential, so the caller
//! can fetch it asynchronously: [`parse_client_first`] → (lookup) → [`ScramServer::start`] →
//! [`ScramServer::finish`]. For unknown users the caller passes
//! [`ScramCredential::fake_for`], which makes the exchange indistinguishable up to the final
//! `not-authorized`.
//!
//! # Channel binding and downgrades
//!
//! The gs2 header is covered by the proof (it is echoed in `c=`), so a client's statement
//! about channel binding cannot be altered by an attacker. `y` means "I support channel
//! binding but the server did not offer it"; if this connection did offer `-PLUS`, someone
//! removed it on the way, and we fail (RFC 5802 §6). `-PLUS` requires `p=`, and `p=` is only
//! valid with `-PLUS`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use subtle::ConstantTimeEq;

use super::credentials::ScramHash;
use super::{ChannelBindingType, Mechanism, SaslError, ScramCredential, random_bytes};

/// Random bytes in the server nonce; 18 bytes give 24 base64 characters without padding.
const SERVER_NONCE_BYTES: usize = 18;

/// The channel-binding data this connection can offer. An empty value means no TLS, or a TLS
/// connection where the binding could not be computed.
#[derive(Clone, Default)]
pub struct ChannelBindings {
    /// RFC 9266 `tls-exporter`; set only on TLS 1.3 connections.
    pub tls_exporter: Option<Vec<u8>>,
    /// RFC 5929 `tls-server-end-point`: hash of the certificate this connection presented.
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBindings {
    /// Whether any binding is available, i.e. whether `-PLUS` is offered.
    pub fn any(&self) -> bool {
        self.tls_exporter.is_some() || self.tls_server_end_point.is_some()
    }

    /// The binding data for a type, if this connection has it.
    pub fn get(&self, kind: ChannelBindingType) -> Option<&[u8]> {
        match kind {
            ChannelBindingType::TlsExporter => self.tls_exporter.as_deref(),
            ChannelBindingType::TlsServerEndPoint => self.tls_server_end_point.as_deref(),
        }
    }
}

impl fmt::Debug for ChannelBindings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Exporter output is derived from session secrets; log only which bindings exist.
        f.debug_struct("ChannelBindings")
            .field("tls_exporter", &self.tls_exporter.is_some())
            .field("tls_server_end_point", &self.tls_server_end_point.is_some())
            .finish()
    }
}

/// A validated client-first message.
#[derive(Debug, Clone)]
pub struct ClientFirst {
    /// The username after `=2C`/`=3D` decoding and SASLprep.
    pub username: String,
    /// The authorization identity from `a=`, if any; the caller checks whether it is allowed.
    pub authzid: Option<String>,
    mechanism: Mechanism,
    hash: ScramHash,
    channel_binding: Option<ChannelBindingType>,
    /// What `c=` must decode to: the gs2 header followed by the binding data (if `p=`).
    expected_cbind_input: Vec<u8>,
    client_nonce: String,
    bare: String,
}

impl ClientFirst {
    /// The mechanism this message was parsed for.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Which stored verifier the caller must look up.
    pub fn hash(&self) -> ScramHash {
        self.hash
    }

    /// The channel-binding type the client chose with `p=`, if any.
    pub fn channel_binding(&self) -> Option<ChannelBindingType> {
        self.channel_binding
    }
}

/// Parses and validates a client-first message for a SCRAM mechanism.
///
/// `bindings` must be what this connection offers (the same value given to
/// [`super::offered`]), since the downgrade check compares the client's gs2 flag with it.
pub fn parse_client_first(
    mechanism: Mechanism,
    msg: &[u8],
    bindings: &ChannelBindings,
) -> Result<ClientFirst, SaslError> {
    let hash = mechanism.scram_hash().ok_or(SaslError::InvalidMechanism)?;
    let text = std::str::from_utf8(msg).map_err(|_| SaslError::Malformed("not UTF-8"))?;
    let mut parts = text.splitn(3, ',');
    let (Some(flag), Some(authz), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SaslError::Malformed("missing gs2 header"));
    };
    let (channel_binding, cb_data) = check_cbind_flag(mechanism, flag, bindings)?;
    let authzid = match authz {
        "" => None,
        _ => {
            let name = authz.strip_prefix("a=").ok_or(SaslError::Malformed("bad authzid in gs2 header"))?;
            Some(decode_saslname(name)?)
        }
    };
    let (username, client_nonce) = parse_first_bare(bare)?;
    let username = stringprep::saslprep(&username)
        .map_err(|_| SaslError::Malformed("username rejected by SASLprep"))?
        .into_owned();
    if username.is_empty() {
        return Err(SaslError::Malformed("empty username"));
    }
    // The gs2 header is everything before the bare message, including its trailing comma.
    let gs2_header = text.get(..flag.len() + authz.len() + 2).ok_or(SaslError::Malformed("missing gs2 header"))?;
    let mut expected_cbind_input = gs2_header.as_bytes().to_vec();
    expected_cbind_input.extend_from_slice(&cb_data);
    Ok(ClientFirst {
        username,
        authzid,
        mechanism,
        hash,
        channel_binding,
        expected_cbind_input,
        client_nonce: client_nonce.to_owned(),
        bare: bare.to_owned(),
    })
}

/// Applies the gs2 channel-binding flag rules; returns the chosen type and its data.
fn check_cbind_flag(
    mechanism: Mechanism,
    flag: &str,
    bindings: &ChannelBindings,
) -> Result<(Option<ChannelBindingType>, Vec<u8>), SaslError> {
    if let Some(name) = flag.strip_prefix("p=") {
        if !mechanism.is_plus() {
            return Err(SaslError::ChannelBinding("p= used without a -PLUS mechanism"));
        }
        let kind =
            ChannelBindingType::from_name(name).ok_or(SaslError::ChannelBinding("unsupported channel-binding type"))?;
        let data =
            bindings.get(kind).ok_or(SaslError::ChannelBinding("binding type unavailable on this connection"))?;
        return Ok((Some(kind), data.to_vec()));
    }
    match flag {
        "n" | "y" if mechanism.is_plus() => Err(SaslError::ChannelBinding("-PLUS mechanism without p= flag")),
        "y" if bindings.any() => {
            Err(SaslError::ChannelBinding("client saw no channel binding although it was offered (downgrade)"))
        }
        "n" | "y" => Ok((None, Vec::new())),
        _ => Err(SaslError::Malformed("bad gs2 channel-binding flag")),
    }
}

/// Splits `n=<user>,r=<nonce>`; a leading `m=` (mandatory extension) or any other attribute
/// is rejected, since we implement no extensions (RFC 5802 §5.1).
fn parse_first_bare(bare: &str) -> Result<(String, &str), SaslError> {
    let mut attrs = bare.split(',');
    let (Some(user), Some(nonce), None) = (attrs.next(), attrs.next(), attrs.next()) else {
        return Err(SaslError::Malformed("client-first needs exactly n= and r="));
    };
    if user.starts_with("m=") {
        return Err(SaslError::Malformed("mandatory extensions are not supported"));
    }
    let user = user.strip_prefix("n=").ok_or(SaslError::Malformed("expected n= attribute"))?;
    let nonce = nonce.strip_prefix("r=").ok_or(SaslError::Malformed("expected r= attribute"))?;
    if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
        return Err(SaslError::Malformed("client nonce is empty or not printable"));
    }
    Ok((decode_saslname(user)?, nonce))
}

/// Decodes an RFC 5802 `saslname`: `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
fn decode_saslname(name: &str) -> Result<String, SaslError> {
    if name.is_empty() {
        return Err(SaslError::Malformed("empty name"));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(pos) = rest.find('=') {
        out.push_str(&rest[..pos]);
        let escape = rest.get(pos..pos + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(SaslError::Malformed("bad = escape in name")),
        }
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A SCRAM exchange waiting for the client-final message.
pub struct ScramServer {
    username: String,
    authzid: Option<String>,
    hash: ScramHash,
    expected_cbind_input: Vec<u8>,
    nonce: String,
    /// `client-first-bare "," server-first ","`: AuthMessage minus the client-final part.
    auth_prefix: String,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServer")
            .field("username", &self.username)
            .field("hash", &self.hash)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// The username from client-first, for binding the session after [`ScramServer::finish`].
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The authorization identity from client-first, if any.
    pub fn authzid(&self) -> Option<&str> {
        self.authzid.as_deref()
    }

    /// Answers a client-first with server-first, using the user's (or a fake) credential.
    ///
    /// Fails only on server-side problems: a credential for the wrong hash, or no randomness.
    pub fn start(client_first: ClientFirst, credential: &ScramCredential) -> Result<(ScramServer, Vec<u8>), SaslError> {
        let mut raw = [0u8; SERVER_NONCE_BYTES];
        random_bytes(&mut raw)?;
        // Base64 of random bytes is printable and comma-free, as the nonce grammar requires.
        Self::start_with_server_nonce(client_first, credential, &BASE64.encode(raw))
    }

    /// [`ScramServer::start`] with a fixed server nonce, to replay RFC examples.
    #[cfg(test)]
    pub(crate) fn start_with_nonce(
        client_first: ClientFirst,
        credential: &ScramCredential,
        server_nonce: &str,
    ) -> Result<(ScramServer, Vec<u8>), SaslError> {
        Self::start_with_server_nonce(client_first, credential, server_nonce)
    }

    fn start_with_server_nonce(
        client_first: ClientFirst,
        credential: &ScramCredential,
        server_nonce: &str,
    ) -> Result<(ScramServer, Vec<u8>), SaslError> {
        if credential.hash != client_first.hash {
            return Err(SaslError::Temporary("credential hash does not match mechanism".into()));
        }
        let nonce = format!("{}{}", client_first.client_nonce, server_nonce);
        let server_first = format!("r={nonce},s={},i={}", BASE64.encode(&credential.salt), credential.iterations);
        let server = ScramServer {
            username: client_first.username,
            authzid: client_first.authzid,
            hash: client_first.hash,
            expected_cbind_input: client_first.expected_cbind_input,
            nonce,
            auth_prefix: format!("{},{server_first},", client_first.bare),
            stored_key: credential.stored_key.clone(),
            server_key: credential.server_key.clone(),
        };
        Ok((server, server_first.into_bytes()))
    }

    /// Checks client-final and returns server-final (`v=…`) for `<success/>`.
    ///
    /// RFC 5802 §3: `ClientKey = proof XOR HMAC(StoredKey, AuthMessage)` must hash to
    /// StoredKey. Only the final comparison touches secret-dependent data and it is constant
    /// time; the earlier checks concern values the client already knows.
    pub fn finish(self, client_final: &[u8]) -> Result<Vec<u8>, SaslError> {
        let text = std::str::from_utf8(client_final).map_err(|_| SaslError::Malformed("not UTF-8"))?;
        let (without_proof, proof) =
            text.rsplit_once(",p=").ok_or(SaslError::Malformed("client-final without proof"))?;
        let mut attrs = without_proof.split(',');
        let (Some(cbind), Some(nonce), None) = (attrs.next(), attrs.next(), attrs.next()) else {
            return Err(SaslError::Malformed("client-final needs exactly c=, r= and p="));
        };
        let cbind = cbind
            .strip_prefix("c=")
            .and_then(|b| BASE64.decode(b).ok())
            .ok_or(SaslError::Malformed("bad c= attribute"))?;
        let nonce = nonce.strip_prefix("r=").ok_or(SaslError::Malformed("expected r= attribute"))?;
        let proof = BASE64.decode(proof).map_err(|_| SaslError::Malformed("proof is not base64"))?;
        if proof.len() != self.hash.output_len() {
            return Err(SaslError::Malformed("proof has the wrong length"));
        }
        if !bool::from(cbind.ct_eq(&self.expected_cbind_input)) {
            return Err(SaslError::ChannelBinding("channel-binding data mismatch"));
        }
        if nonce != self.nonce {
            return Err(SaslError::NotAuthorized);
        }
        let auth_message = format!("{}{without_proof}", self.auth_prefix);
        let client_signature = self.hash.hmac(&self.stored_key, &[auth_message.as_bytes()])?;
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
        if !bool::from(self.hash.digest(&client_key).ct_eq(&self.stored_key)) {
            return Err(SaslError::NotAuthorized);
        }
        let server_signature = self.hash.hmac(&self.server_key, &[auth_message.as_bytes()])?;
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }
}
