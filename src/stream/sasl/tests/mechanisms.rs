use crate::stream::sasl::{
    ChannelBindingType, ChannelBindings, Mechanism, SaslError, channel_binding_types, decode_payload, encode_payload,
    offered, select,
};

fn bindings(exporter: bool, end_point: bool) -> ChannelBindings {
    ChannelBindings {
        tls_exporter: exporter.then(|| vec![1; 32]),
        tls_server_end_point: end_point.then(|| vec![2; 32]),
    }
}

#[test]
fn names_round_trip() {
    for m in Mechanism::ALL {
        assert_eq!(Mechanism::from_name(m.name()), Some(m));
    }
    assert_eq!(Mechanism::from_name("scram-sha-1"), None);
    assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
    assert_eq!(Mechanism::from_name(""), None);
}

#[test]
fn offered_depends_on_tls_and_bindings() {
    use Mechanism::*;
    assert_eq!(offered(false, &bindings(false, false)), [ScramSha256, ScramSha1]);
    assert_eq!(offered(true, &bindings(false, false)), [ScramSha256, ScramSha1, Plain]);
    let all = [ScramSha256Plus, ScramSha1Plus, ScramSha256, ScramSha1, Plain];
    assert_eq!(offered(true, &bindings(true, true)), all);
    assert_eq!(offered(true, &bindings(false, true)), all);
    // Bindings without TLS cannot happen in practice; never advertise -PLUS then.
    assert_eq!(offered(false, &bindings(true, true)), [ScramSha256, ScramSha1]);
}

#[test]
fn select_reports_the_right_condition() {
    let none = bindings(false, false);
    assert_eq!(select("PLAIN", false, &none), Err(SaslError::EncryptionRequired));
    assert_eq!(select("PLAIN", true, &none), Ok(Mechanism::Plain));
    assert_eq!(select("SCRAM-SHA-1-PLUS", true, &none), Err(SaslError::InvalidMechanism));
    assert_eq!(select("X-OAUTH2", true, &none), Err(SaslError::InvalidMechanism));
    assert_eq!(select("SCRAM-SHA-256-PLUS", true, &bindings(false, true)), Ok(Mechanism::ScramSha256Plus));
    assert_eq!(select("SCRAM-SHA-1", false, &none), Ok(Mechanism::ScramSha1));
}

#[test]
fn xep_0440_types() {
    use ChannelBindingType::*;
    assert!(channel_binding_types(&bindings(false, false)).is_empty());
    assert_eq!(channel_binding_types(&bindings(false, true)), [TlsServerEndPoint]);
    assert_eq!(channel_binding_types(&bindings(true, true)), [TlsExporter, TlsServerEndPoint]);
    for t in [TlsExporter, TlsServerEndPoint] {
        assert_eq!(ChannelBindingType::from_name(t.name()), Some(t));
    }
    assert_eq!(ChannelBindingType::from_name("tls-unique"), None);
}

#[test]
fn payload_base64_layer() {
    assert_eq!(decode_payload("="), Ok(Vec::new()));
    assert_eq!(decode_payload(" AGEAYg==\n"), Ok(b"\0a\0b".to_vec()));
    assert_eq!(decode_payload("AGEAYg"), Err(SaslError::IncorrectEncoding));
    assert_eq!(decode_payload("AG EAYg=="), Err(SaslError::IncorrectEncoding));
    assert_eq!(decode_payload("!!!!"), Err(SaslError::IncorrectEncoding));
    assert_eq!(encode_payload(b""), "=");
    assert_eq!(encode_payload(b"v=abc"), "dj1hYmM=");
}

#[test]
fn conditions_are_rfc_6120_names() {
    let table = [
        (SaslError::Malformed("x"), "malformed-request"),
        (SaslError::Saslprep("x".into()), "malformed-request"),
        (SaslError::IncorrectEncoding, "incorrect-encoding"),
        (SaslError::NotAuthorized, "not-authorized"),
        (SaslError::ChannelBinding("x"), "not-authorized"),
        (SaslError::InvalidAuthzid, "invalid-authzid"),
        (SaslError::InvalidMechanism, "invalid-mechanism"),
        (SaslError::EncryptionRequired, "encryption-required"),
        (SaslError::Temporary("x".into()), "temporary-auth-failure"),
        (SaslError::Aborted, "aborted"),
    ];
    for (error, condition) in table {
        assert_eq!(error.condition(), condition, "{error:?}");
    }
}

#[test]
fn bindings_debug_hides_data() {
    let text = format!("{:?}", bindings(true, true));
    assert!(!text.contains("[1,"), "{text}");
    assert!(text.contains("tls_exporter: true"), "{text}");
}
