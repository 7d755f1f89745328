//! Server pings (XEP-0199 §4.2) find dead clients: a client silent past `ping_after_idle` is
//! pinged; one that answers stays, one that does not is closed with `connection-timeout`
//! and its contacts see it go unavailable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../conformance/client.rs"]
mod client;
mod support;

use client::{Client, Received};
use std::time::Duration;

const FAST_PINGS: &str = "ping_after_idle = \"1s\"\nping_timeout = \"1s\"";

async fn next_ping(client: &mut Client) -> starling::xml::Element {
    loop {
        let el = client.recv().await.unwrap();
        if el.name == "iq" && el.has_child("ping", "urn:xmpp:ping") {
            assert_eq!(el.attr("type"), Some("get"));
            return el;
        }
    }
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected() {
    let server = support::start(FAST_PINGS, "").await;
    server.add_user("alice@localhost", "pw").await;
    let mut alice = Client::connect(server.running.c2s_direct_tls[0], "localhost", "alice", "pw", "r").await.unwrap();
    for _ in 0..2 {
        let ping = next_ping(&mut alice).await;
        let id = ping.attr("id").unwrap();
        alice.send_raw(&format!("<iq type='result' id='{id}' to='localhost'/>")).await.unwrap();
    }
    assert_eq!(server.server.sessions.count(), 1);
}

#[tokio::test]
async fn a_client_that_keeps_talking_is_not_pinged() {
    let server = support::start(FAST_PINGS, "").await;
    server.add_user("alice@localhost", "pw").await;
    let mut alice = Client::connect(server.running.c2s_direct_tls[0], "localhost", "alice", "pw", "r").await.unwrap();
    // Three idle periods of traffic every 300 ms: the timer that fires after the first second
    // finds recent reads and waits again instead of pinging.
    for i in 0..10 {
        alice
            .send_raw(&format!("<iq type='get' id='t{i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"))
            .await
            .unwrap();
        let answer = alice.recv_within(Duration::from_millis(300)).await.unwrap();
        match answer {
            Some(Received::Element(el)) => assert_eq!(el.attr("id"), Some(format!("t{i}").as_str()), "{el}"),
            other => panic!("expected the answer to t{i}, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Silent from now on: the ping comes.
    next_ping(&mut alice).await;
}

#[tokio::test]
async fn a_silent_client_is_disconnected_and_its_contacts_see_it_leave() {
    let server = support::start(FAST_PINGS, "").await;
    server.add_user("alice@localhost", "pw").await;
    let addr = server.running.c2s_direct_tls[0];
    let mut alice = Client::connect(addr, "localhost", "alice", "pw", "silent").await.unwrap();
    alice.send_raw("<presence/>").await.unwrap();
    // Another resource of the same account sees the silent one leave.
    let mut watcher = Client::connect(addr, "localhost", "alice", "pw", "watcher").await.unwrap();
    watcher.send_raw("<presence/>").await.unwrap();
    next_ping(&mut alice).await;
    let error = loop {
        match alice.recv_within(Duration::from_secs(5)).await.unwrap() {
            Some(Received::Element(el)) if el.name == "error" => break el,
            Some(Received::Element(_)) => continue,
            other => panic!("expected a stream error, got {other:?}"),
        }
    };
    assert!(error.has_child("connection-timeout", "urn:ietf:params:xml:ns:xmpp-streams"), "{error}");
    let gone = loop {
        let el = watcher.recv().await.unwrap();
        if el.name == "presence"
            && el.attr("from").is_some_and(|f| f.ends_with("/silent"))
            && el.attr("type") == Some("unavailable")
        {
            break el;
        }
        if el.name == "iq" && el.has_child("ping", "urn:xmpp:ping") {
            let id = el.attr("id").unwrap().to_owned();
            watcher.send_raw(&format!("<iq type='result' id='{id}' to='localhost'/>")).await.unwrap();
        }
    };
    assert_eq!(gone.attr("to").map(|t| t.ends_with("/watcher")), Some(true), "{gone}");
}
