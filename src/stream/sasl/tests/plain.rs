use crate::stream::sasl::{PlainCredentials, SaslError, parse_plain};

fn creds(authzid: Option<&str>, authcid: &str, password: &str) -> PlainCredentials {
    PlainCredentials { authzid: authzid.map(str::to_owned), authcid: authcid.to_owned(), password: password.to_owned() }
}

#[test]
fn accepts_rfc_4616_messages() {
    let table: [(&[u8], PlainCredentials); 5] = [
        // RFC 4616 §4 examples.
        (b"\0tim\0tanstaaftanstaaf", creds(None, "tim", "tanstaaftanstaaf")),
        (b"Ursel\0Kurt\0xipj3plmq", creds(Some("Ursel"), "Kurt", "xipj3plmq")),
        (b"juliet@example.com\0juliet\0r0m30myr0m30", creds(Some("juliet@example.com"), "juliet", "r0m30myr0m30")),
        // Non-ASCII spaces in the username are mapped by SASLprep; the password is kept raw.
        ("\0j\u{a0}uliet\0p\u{a0}w".as_bytes(), creds(None, "j uliet", "p\u{a0}w")),
        (b"\0a\0 ", creds(None, "a", " ")),
    ];
    for (input, expected) in table {
        assert_eq!(parse_plain(input), Ok(expected), "{input:?}");
    }
}

#[test]
fn rejects_malformed_messages() {
    let table: [&[u8]; 11] = [
        b"",
        b"tim",
        b"\0tim",
        b"\0tim\0",
        b"\0\0secret",
        b"authz\0\0secret",
        b"\0tim\0pass\0word",
        b"\0\0\0",
        b"\0t\xffm\0secret",
        b"\0tim\0se\xc3",
        b"\0\x07bell\0secret",
    ];
    for input in table {
        let result = parse_plain(input);
        assert!(matches!(result, Err(SaslError::Malformed(_))), "{input:?} gave {result:?}");
    }
}

#[test]
fn debug_redacts_the_password() {
    let parsed = parse_plain(b"\0tim\0hunter2").unwrap();
    let text = format!("{parsed:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("tim"), "{text}");
}
