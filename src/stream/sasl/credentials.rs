//! Stored SCRAM credentials (RFC 5802 §3, RFC 7677) and the hash primitives behind them.
//!
//! When a password is set we run SASLprep (RFC 4013) on it, pick a fresh random salt per hash
//! and compute
//!
//! ```text
//! SaltedPassword = PBKDF2-HMAC-H(password, salt, iterations)        (RFC 5802 "Hi")
//! StoredKey      = H(HMAC(SaltedPassword, "Client Key"))
//! ServerKey      = HMAC(SaltedPassword, "Server Key")
//! ```
//!
//! Only salt, iteration count, StoredKey and ServerKey are kept. StoredKey lets the server check
//! a client proof without being able to forge one, which is the point of SCRAM; SaltedPassword
//! (what some libraries store) would let anyone holding the database log in. Both SHA-1 and
//! SHA-256 are derived at the same time because the password is only seen then, and SCRAM-SHA-1
//! clients are still in use.
//!
//! PLAIN (RFC 4616) is checked against the same record: re-derive SaltedPassword from the
//! stored salt and iterations and compare the resulting StoredKey in constant time.

use std::fmt;

use hmac::{EagerHash, Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use super::{SaslError, random_bytes};

/// Salt length for newly derived credentials: 128 bits, as RFC 5802 examples and common
/// deployments use.
const SALT_LEN: usize = 16;

/// The hash function of a SCRAM mechanism family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    /// Output length of the hash in bytes, which is also the length of every SCRAM key.
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    /// `H(data)`.
    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => sha2::Sha256::digest(data).to_vec(),
        }
    }

    /// `HMAC(key, parts[0] || parts[1] || …)`.
    pub(crate) fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, SaslError> {
        match self {
            ScramHash::Sha1 => hmac_with::<sha1::Sha1>(key, parts),
            ScramHash::Sha256 => hmac_with::<sha2::Sha256>(key, parts),
        }
    }

    /// RFC 5802 `Hi(password, salt, i)`, which is PBKDF2 with HMAC-H and one output block.
    pub(crate) fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Result<Vec<u8>, SaslError> {
        let mut out = vec![0; self.output_len()];
        let result = match self {
            ScramHash::Sha1 => pbkdf2::pbkdf2::<Hmac<sha1::Sha1>>(password, salt, iterations, &mut out),
            ScramHash::Sha256 => pbkdf2::pbkdf2::<Hmac<sha2::Sha256>>(password, salt, iterations, &mut out),
        };
        result.map_err(|_| SaslError::Temporary("PBKDF2 rejected its key".into()))?;
        Ok(out)
    }
}

fn hmac_with<D: EagerHash>(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, SaslError> {
    // HMAC accepts keys of any length, so this error path is unreachable in practice; it is
    // still mapped rather than unwrapped to keep authentication free of panics.
    let mut mac =
        <Hmac<D> as KeyInit>::new_from_slice(key).map_err(|_| SaslError::Temporary("HMAC rejected its key".into()))?;
    for part in parts {
        mac.update(part);
    }
    Ok(mac.finalize().into_bytes().to_vec())
}

/// Prepares a password with SASLprep (RFC 4013, stored-string rules), as RFC 5802 §5.1 and
/// RFC 4616 §2 require, so that visually equal passwords (e.g. with a no-break space) match.
pub(crate) fn prepare_password(password: &str) -> Result<String, SaslError> {
    let prepared = stringprep::saslprep(password).map_err(|e| SaslError::Saslprep(e.to_string()))?;
    if prepared.is_empty() {
        return Err(SaslError::Saslprep("empty password".into()));
    }
    Ok(prepared.into_owned())
}

/// One SCRAM verifier: what the server keeps for one hash function.
#[derive(Clone, Serialize, Deserialize)]
pub struct ScramCredential {
    pub hash: ScramHash,
    #[serde(with = "base64_bytes")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "base64_bytes")]
    pub stored_key: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// Derives a credential with a fresh random salt.
    pub fn derive(password: &str, hash: ScramHash, iterations: u32) -> Result<Self, SaslError> {
        let mut salt = vec![0; SALT_LEN];
        random_bytes(&mut salt)?;
        Self::derive_with_salt(password, hash, &salt, iterations)
    }

    /// Derives a credential with a given salt (imports, and reproducing RFC test vectors).
    pub fn derive_with_salt(password: &str, hash: ScramHash, salt: &[u8], iterations: u32) -> Result<Self, SaslError> {
        if iterations == 0 {
            return Err(SaslError::Temporary("iteration count must be positive".into()));
        }
        if salt.is_empty() {
            return Err(SaslError::Temporary("salt must not be empty".into()));
        }
        let prepared = prepare_password(password)?;
        let salted = hash.salted_password(prepared.as_bytes(), salt, iterations)?;
        let client_key = hash.hmac(&salted, &[b"Client Key"])?;
        Ok(ScramCredential {
            hash,
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, &[b"Server Key"])?,
        })
    }

    /// A stand-in credential for a user that does not exist.
    ///
    /// SCRAM reveals the salt and iteration count in server-first, before any proof. Answering
    /// "no such user" there, or with a random salt that changes per attempt, would let anyone
    /// enumerate accounts. Instead the salt is derived from the username and a per-deployment
    /// `secret`, so repeated probes see a stable, plausible salt; `iterations` must be the
    /// count used for real users. The keys are derived the same way and match no password
    /// (finding one would need a SHA-256 preimage), so the exchange ends in `not-authorized`
    /// exactly like a wrong password. `secret` must be random and private: anyone who knows it
    /// can tell fake salts from real ones.
    pub fn fake_for(username: &str, hash: ScramHash, secret: &[u8], iterations: u32) -> Self {
        let derive = |label: &str, len: usize| {
            let mut h = sha2::Sha256::new();
            // Length prefixes keep (secret, username) pairs from colliding by concatenation.
            for field in [label.as_bytes(), secret, username.as_bytes()] {
                h.update((field.len() as u64).to_be_bytes());
                h.update(field);
            }
            let mut out = h.finalize().to_vec();
            out.truncate(len);
            out
        };
        let len = hash.output_len();
        let tag = match hash {
            ScramHash::Sha1 => "sha-1",
            ScramHash::Sha256 => "sha-256",
        };
        ScramCredential {
            hash,
            salt: derive(&format!("starling fake salt {tag}"), SALT_LEN),
            iterations,
            stored_key: derive(&format!("starling fake stored key {tag}"), len),
            server_key: derive(&format!("starling fake server key {tag}"), len),
        }
    }

    /// Checks a PLAIN password against this verifier, in constant time over the key bytes.
    pub fn verify_plain(&self, password: &str) -> bool {
        let Ok(candidate) = Self::derive_with_salt(password, self.hash, &self.salt, self.iterations) else {
            return false;
        };
        candidate.stored_key.ct_eq(&self.stored_key).into()
    }
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are password-equivalent for an offline guessing attack: never print them.
        f.debug_struct("ScramCredential")
            .field("hash", &self.hash)
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

/// Everything stored for one account's password: one verifier per SCRAM hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredCredentials {
    pub sha1: ScramCredential,
    pub sha256: ScramCredential,
}

impl StoredCredentials {
    /// Derives both verifiers, each with its own random salt.
    pub fn derive(password: &str, iterations: u32) -> Result<Self, SaslError> {
        Ok(StoredCredentials {
            sha1: ScramCredential::derive(password, ScramHash::Sha1, iterations)?,
            sha256: ScramCredential::derive(password, ScramHash::Sha256, iterations)?,
        })
    }

    /// The verifier for a SCRAM hash.
    pub fn get(&self, hash: ScramHash) -> &ScramCredential {
        match hash {
            ScramHash::Sha1 => &self.sha1,
            ScramHash::Sha256 => &self.sha256,
        }
    }

    /// Checks a PLAIN password (against the SHA-256 verifier).
    pub fn verify_plain(&self, password: &str) -> bool {
        self.sha256.verify_plain(password)
    }
}

/// Serde adapter: byte fields as standard base64 strings, readable in JSON/TOML dumps.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        BASE64.decode(text).map_err(D::Error::custom)
    }
}
