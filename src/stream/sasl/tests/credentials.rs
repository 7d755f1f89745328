use crate::stream::sasl::{SaslError, ScramCredential, ScramHash, StoredCredentials};

const ITERATIONS: u32 = 4096;

#[test]
fn derive_makes_distinct_salts_and_right_lengths() {
    let a = StoredCredentials::derive("pencil", ITERATIONS).unwrap();
    let b = StoredCredentials::derive("pencil", ITERATIONS).unwrap();
    assert_eq!(a.sha1.hash, ScramHash::Sha1);
    assert_eq!(a.sha256.hash, ScramHash::Sha256);
    assert_eq!(a.sha1.stored_key.len(), 20);
    assert_eq!(a.sha1.server_key.len(), 20);
    assert_eq!(a.sha256.stored_key.len(), 32);
    assert_eq!(a.sha256.server_key.len(), 32);
    assert_eq!(a.sha1.salt.len(), 16);
    assert_ne!(a.sha1.salt, a.sha256.salt);
    assert_ne!(a.sha256.salt, b.sha256.salt);
    assert_ne!(a.sha256.stored_key, b.sha256.stored_key);
    assert_eq!(a.get(ScramHash::Sha1).iterations, ITERATIONS);
}

#[test]
fn verify_plain_checks_the_password() {
    let stored = StoredCredentials::derive("pencil", ITERATIONS).unwrap();
    assert!(stored.verify_plain("pencil"));
    assert!(stored.sha1.verify_plain("pencil"));
    for wrong in ["Pencil", "pencil ", "", "penci", "\u{7}"] {
        assert!(!stored.verify_plain(wrong), "{wrong:?}");
        assert!(!stored.sha1.verify_plain(wrong), "{wrong:?}");
    }
}

#[test]
fn saslprep_makes_equivalent_passwords_match() {
    // RFC 4013 §2.1: non-ASCII spaces map to U+0020, soft hyphen maps to nothing;
    // §2.2: NFKC folds the "fi" ligature and the ideographic space.
    let stored = StoredCredentials::derive("correct horse", ITERATIONS).unwrap();
    for same in [
        "correct\u{a0}horse",
        "correct\u{2003}horse",
        "correct\u{3000}horse",
        "cor\u{ad}rect horse",
        "correct horse\u{2060}",
    ] {
        assert!(stored.verify_plain(same), "{same:?}");
    }
    let ligature = StoredCredentials::derive("\u{fb01}le", ITERATIONS).unwrap();
    assert!(ligature.verify_plain("file"));
    let nbsp = StoredCredentials::derive("a\u{a0}b", ITERATIONS).unwrap();
    assert!(nbsp.verify_plain("a b"));
    assert!(!nbsp.verify_plain("ab"));
}

#[test]
fn derive_rejects_bad_input() {
    let table = ["", "\u{ad}", "bell\u{7}", "private\u{e000}", "\u{5d0}abc"];
    for password in table {
        let result = StoredCredentials::derive(password, ITERATIONS);
        assert!(matches!(result, Err(SaslError::Saslprep(_))), "{password:?}: {result:?}");
    }
    assert!(matches!(StoredCredentials::derive("pencil", 0), Err(SaslError::Temporary(_))));
    assert!(ScramCredential::derive_with_salt("pencil", ScramHash::Sha1, b"", 1).is_err());
}

#[test]
fn rfc_5802_keys() {
    // RFC 5802 §5: password "pencil", salt QSXCR+Q6sek8bf92, 4096 iterations.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b64.decode("QSXCR+Q6sek8bf92").unwrap();
    let c = ScramCredential::derive_with_salt("pencil", ScramHash::Sha1, &salt, 4096).unwrap();
    let hex = |v: &[u8]| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(hex(&c.stored_key), "e9d94660c39d65c38fbad91c358f14da0eef2bd6");
    assert_eq!(hex(&c.server_key), "0fe09258b3ac852ba502cc62ba903eaacdbf7d31");
}

#[test]
fn fake_credentials_are_stable_and_per_user() {
    let secret = b"deployment secret";
    let a1 = ScramCredential::fake_for("alice", ScramHash::Sha256, secret, ITERATIONS);
    let a2 = ScramCredential::fake_for("alice", ScramHash::Sha256, secret, ITERATIONS);
    let b = ScramCredential::fake_for("bob", ScramHash::Sha256, secret, ITERATIONS);
    let other = ScramCredential::fake_for("alice", ScramHash::Sha256, b"other", ITERATIONS);
    let sha1 = ScramCredential::fake_for("alice", ScramHash::Sha1, secret, ITERATIONS);
    assert_eq!(a1.salt, a2.salt);
    assert_eq!(a1.stored_key, a2.stored_key);
    assert_ne!(a1.salt, b.salt);
    assert_ne!(a1.salt, other.salt);
    assert_ne!(a1.salt, sha1.salt);
    assert_eq!(a1.salt.len(), 16);
    assert_eq!(a1.iterations, ITERATIONS);
    assert_eq!(sha1.stored_key.len(), 20);
    assert_eq!(a1.server_key.len(), 32);
    assert!(!a1.verify_plain("alice"));
}

#[test]
fn debug_redacts_keys() {
    let stored = StoredCredentials::derive("pencil", ITERATIONS).unwrap();
    let text = format!("{stored:?}");
    assert!(text.contains("<redacted>"), "{text}");
    for key in [&stored.sha1.stored_key, &stored.sha256.server_key] {
        assert!(!text.contains(&format!("{key:?}")), "{text}");
    }
}
