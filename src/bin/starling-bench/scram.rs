//! The client side of SCRAM (RFC 5802, RFC 7677) and PLAIN (RFC 4616), enough to log in to
//! any XMPP server. No channel binding (gs2 header `n,,`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Which hash a SCRAM mechanism uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hash {
    Sha1,
    Sha256,
}

/// A SASL mechanism the load generator can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mech {
    Scram(Hash),
    Plain,
}

impl Mech {
    pub fn parse(name: &str) -> Option<Mech> {
        match name {
            "SCRAM-SHA-1" => Some(Mech::Scram(Hash::Sha1)),
            "SCRAM-SHA-256" => Some(Mech::Scram(Hash::Sha256)),
            "PLAIN" => Some(Mech::Plain),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mech::Scram(Hash::Sha1) => "SCRAM-SHA-1",
            Mech::Scram(Hash::Sha256) => "SCRAM-SHA-256",
            Mech::Plain => "PLAIN",
        }
    }
}

fn hmac(hash: Hash, key: &[u8], data: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha1 => {
            let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Hash::Sha256 => {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn digest(hash: Hash, data: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha1 => Sha1::digest(data).to_vec(),
        Hash::Sha256 => Sha256::digest(data).to_vec(),
    }
}

fn salted_password(hash: Hash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    match hash {
        Hash::Sha1 => {
            let mut out = [0u8; 20];
            pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
            out.to_vec()
        }
        Hash::Sha256 => {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
            out.to_vec()
        }
    }
}

/// The PLAIN initial response.
pub fn plain(user: &str, password: &str) -> String {
    STANDARD.encode(format!("\0{user}\0{password}"))
}

/// ClientKey and ServerKey by what they are derived from (hash, password, salt, iteration
/// count). RFC 5802 §3 lets a client keep them for later authentications to the same
/// server, which is likely to send the same salt again; clients that do skip PBKDF2 when they
/// reconnect.
#[derive(Default)]
pub struct KeyCache {
    keys: Mutex<HashMap<KeyInputs, DerivedKeys>>,
}

/// ClientKey and ServerKey.
type DerivedKeys = (Vec<u8>, Vec<u8>);

/// What SCRAM keys are derived from: hash, password, salt, iteration count.
type KeyInputs = (Hash, String, Vec<u8>, u32);

impl KeyCache {
    /// The ClientKey and ServerKey for these inputs, derived once.
    fn keys(&self, hash: Hash, password: &str, salt: &[u8], iterations: u32) -> DerivedKeys {
        let id = (hash, password.to_owned(), salt.to_vec(), iterations);
        if let Some(keys) = self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return keys.clone();
        }
        let keys = derive_keys(hash, password, salt, iterations);
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).insert(id, keys.clone());
        keys
    }
}

/// ClientKey and ServerKey (RFC 5802 §3) from the password.
fn derive_keys(hash: Hash, password: &str, salt: &[u8], iterations: u32) -> DerivedKeys {
    let salted = salted_password(hash, password.as_bytes(), salt, iterations);
    (hmac(hash, &salted, b"Client Key"), hmac(hash, &salted, b"Server Key"))
}

/// A SCRAM exchange in progress.
pub struct Scram {
    hash: Hash,
    client_first_bare: String,
    nonce: String,
    password: String,
    server_signature: Vec<u8>,
}

impl Scram {
    /// Starts an exchange; returns the state and the base64 client-first message.
    pub fn start(hash: Hash, user: &str, password: &str, nonce: String) -> (Scram, String) {
        let client_first_bare = format!("n={},r={nonce}", user.replace('=', "=3D").replace(',', "=2C"));
        let message = STANDARD.encode(format!("n,,{client_first_bare}"));
        let scram = Scram { hash, client_first_bare, nonce, password: password.to_owned(), server_signature: vec![] };
        (scram, message)
    }

    /// Answers the server-first challenge (base64); returns the base64 client-final message.
    /// With a cache, keys derived before for the same salt are reused.
    pub fn respond(&mut self, challenge_b64: &str, cache: Option<&KeyCache>) -> Result<String, String> {
        let server_first = STANDARD.decode(challenge_b64.trim()).map_err(|e| e.to_string())?;
        let server_first = String::from_utf8(server_first).map_err(|e| e.to_string())?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v.to_owned()),
                Some(("s=", v)) => salt = Some(STANDARD.decode(v).map_err(|e| e.to_string())?),
                Some(("i=", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(format!("bad server-first {server_first:?}"));
        };
        if !nonce.starts_with(&self.nonce) {
            return Err("server nonce does not extend ours".into());
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let (client_key, server_key) = match cache {
            Some(cache) => cache.keys(self.hash, &self.password, &salt, iterations),
            None => derive_keys(self.hash, &self.password, &salt, iterations),
        };
        let stored_key = digest(self.hash, &client_key);
        let signature = hmac(self.hash, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        self.server_signature = hmac(self.hash, &server_key, auth_message.as_bytes());
        Ok(STANDARD.encode(format!("{without_proof},p={}", STANDARD.encode(proof))))
    }

    /// Checks the server-final message (base64) from `<success/>`.
    pub fn verify(&self, success_b64: &str) -> Result<(), String> {
        let data = STANDARD.decode(success_b64.trim()).map_err(|e| e.to_string())?;
        let text = String::from_utf8(data).map_err(|e| e.to_string())?;
        let expected = format!("v={}", STANDARD.encode(&self.server_signature));
        if text == expected { Ok(()) } else { Err("server signature mismatch".into()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3 example.
    #[test]
    fn rfc7677_example() {
        let (_, first) = Scram::start(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO".into());
        assert_eq!(STANDARD.decode(first).unwrap(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let cache = KeyCache::default();
        // Without a cache, then twice with one: derived keys and cached keys must agree.
        for cache in [None, Some(&cache), Some(&cache)] {
            let (mut scram, _) = Scram::start(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO".into());
            let last = scram.respond(&STANDARD.encode(server_first), cache).unwrap();
            assert_eq!(
                String::from_utf8(STANDARD.decode(last).unwrap()).unwrap(),
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
            );
            scram.verify(&STANDARD.encode("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")).unwrap();
        }
        assert_eq!(cache.keys.lock().unwrap().len(), 1);
    }
}
