//! Tests for the SASL mechanisms, table-driven from the RFC examples where they exist.

mod credentials;
mod mechanisms;
mod plain;
mod scram;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::ScramHash;

/// The client half of a SCRAM exchange, enough to drive the server in tests.
pub(super) struct TestClient {
    pub hash: ScramHash,
    pub password: &'static str,
    pub bare: String,
    pub cbind_input: Vec<u8>,
}

/// What the client sends as client-final, and the server signature it expects back.
pub(super) struct ClientFinal {
    pub message: Vec<u8>,
    pub expected_server_final: Vec<u8>,
}

impl TestClient {
    /// Computes client-final for a server-first, following RFC 5802 §3.
    pub fn respond(&self, server_first: &[u8]) -> ClientFinal {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for attr in server_first.split(',') {
            let (key, value) = attr.split_once('=').unwrap();
            match key {
                "r" => nonce = value,
                "s" => salt = BASE64.decode(value).unwrap(),
                "i" => iterations = value.parse().unwrap(),
                other => panic!("unexpected attribute {other}"),
            }
        }
        let h = self.hash;
        let salted = h.salted_password(self.password.as_bytes(), &salt, iterations).unwrap();
        let client_key = h.hmac(&salted, &[b"Client Key"]).unwrap();
        let stored_key = h.digest(&client_key);
        let server_key = h.hmac(&salted, &[b"Server Key"]).unwrap();
        let without_proof = format!("c={},r={nonce}", BASE64.encode(&self.cbind_input));
        let auth = format!("{},{server_first},{without_proof}", self.bare);
        let signature = h.hmac(&stored_key, &[auth.as_bytes()]).unwrap();
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_signature = h.hmac(&server_key, &[auth.as_bytes()]).unwrap();
        ClientFinal {
            message: format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes(),
            expected_server_final: format!("v={}", BASE64.encode(server_signature)).into_bytes(),
        }
    }
}
