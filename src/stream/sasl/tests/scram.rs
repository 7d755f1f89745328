use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::TestClient;
use crate::stream::sasl::{
    ChannelBindingType, ChannelBindings, Mechanism, SaslError, ScramCredential, ScramHash, ScramServer,
    parse_client_first,
};

const EXPORTER: [u8; 32] = [7; 32];
const END_POINT: [u8; 32] = [9; 32];

fn tls13() -> ChannelBindings {
    ChannelBindings { tls_exporter: Some(EXPORTER.to_vec()), tls_server_end_point: Some(END_POINT.to_vec()) }
}

fn credential(hash: ScramHash, password: &str) -> ScramCredential {
    ScramCredential::derive(password, hash, 4096).unwrap()
}

/// Replays an RFC example conversation byte for byte.
fn rfc_conversation(mechanism: Mechanism, salt: &str, lines: [&str; 4], server_nonce: &str) {
    let hash = mechanism.scram_hash().unwrap();
    let salt = BASE64.decode(salt).unwrap();
    let cred = ScramCredential::derive_with_salt("pencil", hash, &salt, 4096).unwrap();
    let first = parse_client_first(mechanism, lines[0].as_bytes(), &ChannelBindings::default()).unwrap();
    assert_eq!(first.username, "user");
    assert_eq!(first.authzid, None);
    assert_eq!(first.hash(), hash);
    let (server, server_first) = ScramServer::start_with_nonce(first, &cred, server_nonce).unwrap();
    assert_eq!(server.username(), "user");
    assert_eq!(server.authzid(), None);
    assert_eq!(String::from_utf8(server_first).unwrap(), lines[1]);
    let server_final = server.finish(lines[2].as_bytes()).unwrap();
    assert_eq!(String::from_utf8(server_final).unwrap(), lines[3]);
}

#[test]
fn rfc_5802_scram_sha_1_example() {
    rfc_conversation(
        Mechanism::ScramSha1,
        "QSXCR+Q6sek8bf92",
        [
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        ],
        "3rfcNHYJY1ZVvWVs7j",
    );
}

#[test]
fn rfc_7677_scram_sha_256_example() {
    rfc_conversation(
        Mechanism::ScramSha256,
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        [
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ],
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    );
}

/// Runs a whole exchange with a random server nonce; returns the server's verdict.
fn exchange(
    mechanism: Mechanism,
    gs2: &str,
    cb_data: &[u8],
    bindings: &ChannelBindings,
    stored_password: &str,
    client_password: &'static str,
) -> Result<(), SaslError> {
    let hash = mechanism.scram_hash().unwrap();
    let bare = "n=juliet,r=cl13ntN0nc3".to_owned();
    let first = parse_client_first(mechanism, format!("{gs2}{bare}").as_bytes(), bindings)?;
    let (server, server_first) = ScramServer::start(first, &credential(hash, stored_password))?;
    let mut cbind_input = gs2.as_bytes().to_vec();
    cbind_input.extend_from_slice(cb_data);
    let client = TestClient { hash, password: client_password, bare, cbind_input };
    let reply = client.respond(&server_first);
    let server_final = server.finish(&reply.message)?;
    assert_eq!(server_final, reply.expected_server_final);
    Ok(())
}

#[test]
fn plus_with_tls_exporter_accepted() {
    for m in [Mechanism::ScramSha1Plus, Mechanism::ScramSha256Plus] {
        let gs2 = "p=tls-exporter,,";
        assert_eq!(exchange(m, gs2, &EXPORTER, &tls13(), "pw", "pw"), Ok(()));
    }
}

#[test]
fn plus_with_tls_server_end_point_accepted() {
    let gs2 = "p=tls-server-end-point,a=juliet@example.com,";
    let m = Mechanism::ScramSha256Plus;
    assert_eq!(exchange(m, gs2, &END_POINT, &tls13(), "pw", "pw"), Ok(()));
    // TLS 1.2: only tls-server-end-point exists.
    let tls12 = ChannelBindings { tls_exporter: None, ..tls13() };
    assert_eq!(exchange(m, gs2, &END_POINT, &tls12, "pw", "pw"), Ok(()));
}

#[test]
fn forged_channel_binding_rejected() {
    let forged = [0u8; 32];
    let m = Mechanism::ScramSha256Plus;
    let result = exchange(m, "p=tls-exporter,,", &forged, &tls13(), "pw", "pw");
    assert!(matches!(result, Err(SaslError::ChannelBinding(_))), "{result:?}");
    // The end-point hash sent where the exporter was announced.
    let result = exchange(m, "p=tls-exporter,,", &END_POINT, &tls13(), "pw", "pw");
    assert!(matches!(result, Err(SaslError::ChannelBinding(_))), "{result:?}");
}

#[test]
fn gs2_header_in_c_must_match_client_first() {
    // Client announced p=tls-exporter but proves over a "n,," header (a stripped binding).
    let first = parse_client_first(Mechanism::ScramSha256Plus, b"p=tls-exporter,,n=juliet,r=abc", &tls13()).unwrap();
    let (server, server_first) = ScramServer::start(first, &credential(ScramHash::Sha256, "pw")).unwrap();
    let client = TestClient {
        hash: ScramHash::Sha256,
        password: "pw",
        bare: "n=juliet,r=abc".into(),
        cbind_input: b"n,,".to_vec(),
    };
    let result = server.finish(&client.respond(&server_first).message);
    assert!(matches!(result, Err(SaslError::ChannelBinding(_))), "{result:?}");
}

#[test]
fn channel_binding_flag_rules() {
    use Mechanism::*;
    let none = ChannelBindings::default();
    let only_end_point = ChannelBindings { tls_exporter: None, ..tls13() };
    let table: [(Mechanism, &str, &ChannelBindings, bool); 12] = [
        (ScramSha256, "y", &tls13(), false), // downgrade: -PLUS was offered
        (ScramSha1, "y", &only_end_point, false),
        (ScramSha256, "y", &none, true), // honest: nothing was offered
        (ScramSha256, "n", &tls13(), true),
        (ScramSha256Plus, "n", &tls13(), false),
        (ScramSha256Plus, "y", &tls13(), false),
        (ScramSha256, "p=tls-exporter", &tls13(), false),
        (ScramSha256Plus, "p=tls-unique", &tls13(), false),
        (ScramSha256Plus, "p=tls-exporter", &only_end_point, false),
        (ScramSha256Plus, "p=tls-exporter", &none, false),
        (ScramSha1Plus, "p=tls-server-end-point", &only_end_point, true),
        (ScramSha1Plus, "p=", &tls13(), false),
    ];
    for (mechanism, flag, bindings, ok) in table {
        let msg = format!("{flag},,n=juliet,r=abc");
        let result = parse_client_first(mechanism, msg.as_bytes(), bindings);
        assert_eq!(result.is_ok(), ok, "{mechanism:?} {flag}: {result:?}");
        if let Err(e) = result {
            assert_eq!(e.condition(), "not-authorized", "{mechanism:?} {flag}");
        }
    }
    let first = parse_client_first(ScramSha1Plus, b"p=tls-exporter,,n=a,r=b", &tls13()).unwrap();
    assert_eq!(first.channel_binding(), Some(ChannelBindingType::TlsExporter));
    assert_eq!(first.mechanism(), ScramSha1Plus);
}

#[test]
fn wrong_password_rejected() {
    for m in [Mechanism::ScramSha1, Mechanism::ScramSha256] {
        let none = ChannelBindings::default();
        let result = exchange(m, "n,,", b"", &none, "pencil", "pen");
        assert_eq!(result, Err(SaslError::NotAuthorized));
    }
}

#[test]
fn unknown_user_gets_plausible_fake_exchange() {
    let first = |()| parse_client_first(Mechanism::ScramSha256, b"n,,n=nobody,r=abc", &Default::default()).unwrap();
    let fake = ScramCredential::fake_for("nobody", ScramHash::Sha256, b"secret", 4096);
    let (_, a) = ScramServer::start(first(()), &fake).unwrap();
    let (server, b) = ScramServer::start(first(()), &fake).unwrap();
    let salt_part = |m: &[u8]| String::from_utf8(m.to_vec()).unwrap().split(',').nth(1).unwrap().to_owned();
    assert_eq!(salt_part(&a), salt_part(&b));
    assert_ne!(a, b, "server nonces must differ");
    let client = TestClient {
        hash: ScramHash::Sha256,
        password: "guess",
        bare: "n=nobody,r=abc".into(),
        cbind_input: b"n,,".to_vec(),
    };
    let reply = client.respond(&b);
    assert_eq!(server.finish(&reply.message), Err(SaslError::NotAuthorized));
}

#[test]
fn credential_for_other_hash_is_a_server_error() {
    let first = parse_client_first(Mechanism::ScramSha1, b"n,,n=u,r=abc", &Default::default()).unwrap();
    let result = ScramServer::start(first, &credential(ScramHash::Sha256, "pw"));
    assert!(matches!(result, Err(SaslError::Temporary(_))));
}

#[test]
fn names_are_decoded_and_prepared() {
    let msg = "n,a=ad=2Cmin=3D,n=ju=2Cli=3Det\u{a0}x,r=abc";
    let first = parse_client_first(Mechanism::ScramSha1, msg.as_bytes(), &Default::default()).unwrap();
    assert_eq!(first.username, "ju,li=et x");
    assert_eq!(first.authzid.as_deref(), Some("ad,min="));
    let plain = parse_client_first(Mechanism::Plain, b"n,,n=u,r=abc", &Default::default());
    assert_eq!(plain.unwrap_err(), SaslError::InvalidMechanism);
}

#[test]
fn malformed_client_first_rejected() {
    let table: [&[u8]; 22] = [
        b"",
        b"n",
        b"n,",
        b"n,,",
        b"x,,n=user,r=abc",
        b"F,n,,n=user,r=abc",
        b"n,,r=abc,n=user",
        b"n,,n=user",
        b"n,,n=,r=abc",
        b"n,,n=us=er,r=abc",
        b"n,,n=us=2,r=abc",
        b"n,,n=user,r=",
        b"n,,n=user,r=a b",
        b"n,,n=user,r=ab\x7f",
        b"n,,m=ext,n=user,r=abc",
        b"n,,n=user,r=abc,x=ext",
        b"n,,n=user,r=abc,",
        b"n,a,n=user,r=abc",
        b"n,a=,n=user,r=abc",
        b"n,,n=\xff,r=abc",
        b"n,,n=bell\x07,r=abc",
        b"n,,n=\xe2\x81\xa0,r=abc",
    ];
    for input in table {
        let result = parse_client_first(Mechanism::ScramSha256, input, &Default::default());
        assert!(matches!(result, Err(SaslError::Malformed(_))), "{:?} gave {result:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn malformed_client_final_rejected() {
    let nonce = "abcSERVER";
    let proof = BASE64.encode([0u8; 32]);
    let table: Vec<(String, SaslError)> = vec![
        (String::new(), SaslError::Malformed("")),
        ("c=biws".into(), SaslError::Malformed("")),
        (format!("c=biws,r={nonce}"), SaslError::Malformed("")),
        (format!("c=!!,r={nonce},p={proof}"), SaslError::Malformed("")),
        (format!("r={nonce},c=biws,p={proof}"), SaslError::Malformed("")),
        (format!("c=biws,r={nonce},x=1,p={proof}"), SaslError::Malformed("")),
        (format!("c=biws,r={nonce},p=AAAA"), SaslError::Malformed("")),
        (format!("c=biws,r={nonce},p=***"), SaslError::Malformed("")),
        (format!("c=biws,r={nonce},p={proof},x=1"), SaslError::Malformed("")),
        (format!("c=eSws,r={nonce},p={proof}"), SaslError::ChannelBinding("")),
        (format!("c=biws,r=abc,p={proof}"), SaslError::NotAuthorized),
        (format!("c=biws,r={nonce}X,p={proof}"), SaslError::NotAuthorized),
        (format!("c=biws,r={nonce},p={proof}"), SaslError::NotAuthorized),
    ];
    for (input, expected) in table {
        let first = parse_client_first(Mechanism::ScramSha256, b"n,,n=u,r=abc", &Default::default()).unwrap();
        let cred = credential(ScramHash::Sha256, "pw");
        let (server, _) = ScramServer::start_with_nonce(first, &cred, "SERVER").unwrap();
        let result = server.finish(input.as_bytes());
        let err = result.expect_err(&input);
        assert_eq!(std::mem::discriminant(&err), std::mem::discriminant(&expected), "{input}: {err:?}");
    }
    let first = parse_client_first(Mechanism::ScramSha256, b"n,,n=u,r=abc", &Default::default()).unwrap();
    let (server, _) = ScramServer::start(first, &credential(ScramHash::Sha256, "pw")).unwrap();
    assert!(matches!(server.finish(b"\xff\xfe"), Err(SaslError::Malformed(_))));
}
