//! Server dialback (XEP-0220) keys and elements.
//!
//! The originating server O sends, on its stream to the receiving server R,
//! `<db:result from='O' to='R'>KEY</db:result>`, where KEY is derived from a secret only O's
//! authoritative servers know, the two domains and the stream id R gave (XEP-0185:
//! `HEX(HMAC-SHA256(HEX(SHA256(secret)), R ' ' O ' ' id))`). R asks O's authoritative server, on a
//! connection of its own, `<db:verify from='R' to='O' id='id'>KEY</db:verify>`; the answer
//! `<db:verify type='valid'/>` proves that O sent the key, and R answers O's `db:result` with
//! `type='valid'`. The key proves nothing to anyone who does not hold the secret.

use sha2::{Digest, Sha256};

/// `jabber:server:dialback`, bound to the `db:` prefix on our stream headers.
pub const NS_DIALBACK: &str = "jabber:server:dialback";
/// `urn:xmpp:features:dialback`, the stream feature (XEP-0220 §2.4).
pub const NS_DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";

/// The dialback key of XEP-0185 §3.
pub fn key(secret: &[u8], receiving: &str, originating: &str, stream_id: &str) -> String {
    use hmac::{KeyInit, Mac};
    // The HMAC key is the hex form of SHA256(secret), as in the XEP's worked example.
    let hashed = hex(&Sha256::digest(secret));
    let Ok(mut mac) = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(hashed.as_bytes()) else {
        return String::new(); // HMAC takes keys of any length
    };
    mac.update(receiving.as_bytes());
    mac.update(b" ");
    mac.update(originating.as_bytes());
    mac.update(b" ");
    mac.update(stream_id.as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares keys in constant time.
pub fn same_key(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `<db:NAME from to [id] [type]>text</db:NAME>`, written with the `db:` prefix our headers
/// and every peer's headers declare.
pub fn element(name: &str, from: &str, to: &str, id: Option<&str>, kind: Option<&str>, key: Option<&str>) -> Vec<u8> {
    let mut out = format!("<db:{name} from='{}' to='{}'", escape(from), escape(to));
    if let Some(id) = id {
        out.push_str(&format!(" id='{}'", escape(id)));
    }
    if let Some(kind) = kind {
        out.push_str(&format!(" type='{kind}'"));
    }
    match key {
        Some(key) => out.push_str(&format!(">{}</db:{name}>", escape(key))),
        None => out.push_str("/>"),
    }
    out.into_bytes()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('\'', "&apos;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_xep_0185_example_key() {
        // XEP-0185 §3 example: receiving server xmpp.example.com, originating server
        // example.org, stream id D60000229F.
        let key = key(b"s3cr3tf0rd14lb4ck", "xmpp.example.com", "example.org", "D60000229F");
        assert_eq!(key, "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643");
        assert!(same_key(&key, &key.clone()) && !same_key(&key, "00"));
    }

    #[test]
    fn elements_are_escaped() {
        let el = element("result", "a'b", "c", None, Some("valid"), None);
        assert_eq!(String::from_utf8(el).unwrap(), "<db:result from='a&apos;b' to='c' type='valid'/>");
    }
}
