//! Bad input from an authenticated client: the sender's stream ends with the exact RFC 6120
//! stream error, the messages it sent before the bad bytes are still delivered, and the
//! server goes on serving the other client and new logins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../conformance/client.rs"]
mod client;
mod support;

use client::{Client, Received};
use std::time::Duration;

async fn body_of_next_message(client: &mut Client) -> String {
    let el = client.recv_named("message").await.unwrap();
    el.child_elements().find(|c| c.name == "body").map(|b| b.text()).unwrap_or_default()
}

async fn check(bad: &str, condition: &str) {
    let server = support::start("", "").await;
    server.add_user("alice@localhost", "a-secret").await;
    server.add_user("bob@localhost", "b-secret").await;
    let addr = server.running.c2s_direct_tls[0];
    let mut bob = Client::connect(addr, "localhost", "bob", "b-secret", "desk").await.unwrap();
    bob.send_raw("<presence/>").await.unwrap();
    let mut alice = Client::connect(addr, "localhost", "alice", "a-secret", "phone").await.unwrap();
    for i in 0..3 {
        alice
            .send_raw(&format!("<message to='bob@localhost' type='chat'><body>before-{i}</body></message>"))
            .await
            .unwrap();
    }
    alice.send_raw(bad).await.unwrap();
    let error = loop {
        match alice.recv_within(Duration::from_secs(5)).await.unwrap() {
            Some(Received::Element(el)) if el.name == "error" => break el,
            Some(Received::Element(_)) => continue,
            other => panic!("expected a stream error, got {other:?}"),
        }
    };
    assert!(
        error.child_elements().any(|c| c.name == condition && c.ns == "urn:ietf:params:xml:ns:xmpp-streams"),
        "expected {condition}, got {error}"
    );
    assert!(matches!(alice.recv_within(Duration::from_secs(5)).await.unwrap(), Some(Received::Closed)));
    for i in 0..3 {
        assert_eq!(body_of_next_message(&mut bob).await, format!("before-{i}"));
    }
    // The server keeps serving: a new login reaches Bob.
    let mut again = Client::connect(addr, "localhost", "alice", "a-secret", "laptop").await.unwrap();
    again.send_raw("<message to='bob@localhost' type='chat'><body>after</body></message>").await.unwrap();
    assert_eq!(body_of_next_message(&mut bob).await, "after");
}

#[tokio::test]
async fn malformed_xml_after_messages() {
    check("<message><body></message>", "not-well-formed").await;
}

#[tokio::test]
async fn comment_after_messages() {
    check("<!-- no comments in XMPP -->", "restricted-xml").await;
}

#[tokio::test]
async fn oversized_stanza_after_messages() {
    let body = "x".repeat(300 * 1024);
    check(&format!("<message to='bob@localhost'><body>{body}</body></message>"), "policy-violation").await;
}

#[tokio::test]
async fn unknown_top_level_element_after_messages() {
    check("<frobnicate xmlns='urn:example:unknown'/>", "unsupported-stanza-type").await;
}

#[tokio::test]
async fn undeclared_prefix_after_messages() {
    check("<message to='bob@localhost'><x:body>hi</x:body></message>", "not-well-formed").await;
}

#[tokio::test]
async fn invalid_to_gets_a_stanza_error_and_the_stream_survives() {
    let server = support::start("", "").await;
    server.add_user("alice@localhost", "a-secret").await;
    let addr = server.running.c2s_direct_tls[0];
    let mut alice = Client::connect(addr, "localhost", "alice", "a-secret", "phone").await.unwrap();
    alice.send_raw("<message id='m1' to='bad@@jid'><body>hi</body></message>").await.unwrap();
    let reply = alice.recv().await.unwrap();
    assert_eq!(reply.attr("type"), Some("error"), "{reply}");
    assert!(reply.to_string().contains("jid-malformed"), "{reply}");
    alice.send_raw("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await.unwrap();
    let pong = alice.recv().await.unwrap();
    assert_eq!((pong.attr("type"), pong.attr("id")), (Some("result"), Some("p1")), "{pong}");
}
