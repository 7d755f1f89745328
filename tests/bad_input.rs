//! Bad input on a client stream gets the exact RFC 6120 §4.9.3 stream error and a clean
//! close, and the server goes on serving others. Each case sends raw bytes on a plain TCP
//! connection (stream-level checks run before TLS), then checks that a fresh connection is
//! still served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// Sends `input`, reads until the server closes, returns everything received.
async fn exchange(port: u16, input: &[u8]) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(input).await.unwrap();
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "server did not close the stream; got {}", String::from_utf8_lossy(&received));
    String::from_utf8_lossy(&received).into_owned()
}

fn assert_stream_error(received: &str, condition: &str) {
    let expected = format!("<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'");
    assert!(received.contains("<stream:error>"), "no stream error in {received}");
    assert!(received.contains(&expected), "expected {condition} in {received}");
    assert!(received.ends_with("</stream:stream>"), "stream not closed cleanly: {received}");
}

async fn check(input: String, condition: &str) {
    let server = support::start("require_encryption = true", "").await;
    let port = server.starttls_port();
    let received = exchange(port, input.as_bytes()).await;
    assert_stream_error(&received, condition);
    // The server still serves a well-behaved client.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(HEADER.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut seen = String::new();
    while !seen.contains("</stream:features>") {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before features: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("<starttls"), "{seen}");
}

#[tokio::test]
async fn malformed_xml_is_not_well_formed() {
    // A mismatched end tag is reported as soon as it arrives, although the top-level element
    // is still open and the client sends nothing more.
    check(format!("{HEADER}<message><body></message>"), "not-well-formed").await;
}

#[tokio::test]
async fn comments_are_restricted_xml() {
    check(format!("{HEADER}<!-- hello -->"), "restricted-xml").await;
}

#[tokio::test]
async fn processing_instructions_are_restricted_xml() {
    check(format!("{HEADER}<?evil instruction?>"), "restricted-xml").await;
}

#[tokio::test]
async fn doctype_is_restricted_xml() {
    check("<?xml version='1.0'?><!DOCTYPE foo [<!ENTITY x 'y'>]><stream:stream/>".to_owned(), "restricted-xml").await;
}

#[tokio::test]
async fn undeclared_entities_are_restricted_xml() {
    check(format!("{HEADER}<message><body>&lol;</body></message>"), "restricted-xml").await;
}

#[tokio::test]
async fn wrong_stream_namespace_is_invalid_namespace() {
    let header = "<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' version='1.0'>";
    check(header.to_owned(), "invalid-namespace").await;
}

#[tokio::test]
async fn wrong_content_namespace_is_invalid_namespace() {
    let header = "<stream:stream xmlns='jabber:bogus' xmlns:stream='http://etherx.jabber.org/streams' \
                  to='localhost' version='1.0'>";
    check(header.to_owned(), "invalid-namespace").await;
}

#[tokio::test]
async fn unknown_host_is_host_unknown() {
    check(HEADER.replace("to='localhost'", "to='elsewhere.example'"), "host-unknown").await;
}

#[tokio::test]
async fn oversized_stanza_is_policy_violation() {
    let body = "a".repeat(300 * 1024);
    check(format!("{HEADER}<message><body>{body}</body></message>"), "policy-violation").await;
}

#[tokio::test]
async fn deep_nesting_is_policy_violation() {
    let open = "<a>".repeat(100);
    check(format!("{HEADER}<message>{open}"), "policy-violation").await;
}

#[tokio::test]
async fn too_many_attributes_is_policy_violation() {
    let attrs: String = (0..100).map(|i| format!(" a{i}='x'")).collect();
    check(format!("{HEADER}<message{attrs}/>"), "policy-violation").await;
}

#[tokio::test]
async fn stanzas_before_authentication_are_not_authorized() {
    check(format!("{HEADER}<message to='a@localhost'><body>hi</body></message>"), "not-authorized").await;
}

#[tokio::test]
async fn old_stream_version_is_unsupported_version() {
    check(HEADER.replace("to='localhost' version='1.0'", "to='localhost' version='0.9'"), "unsupported-version").await;
}

#[tokio::test]
async fn whitespace_keepalives_are_accepted() {
    let server = support::start("", "").await;
    let mut tcp = TcpStream::connect(("127.0.0.1", server.starttls_port())).await.unwrap();
    tcp.write_all(format!("{HEADER} \n \n ").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut seen = String::new();
    while !seen.contains("</stream:features>") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    tcp.write_all(b"   \n").await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf)).await;
    assert!(quiet.is_err(), "server answered keepalive whitespace");
}
