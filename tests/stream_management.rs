//! Stream management (XEP-0198): a message written to a client that never acknowledged it is
//! not lost when the connection ends; it goes to offline storage and arrives at next login.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../conformance/client.rs"]
mod client;
mod support;

use client::Client;

#[tokio::test]
async fn unacknowledged_messages_reach_the_next_login_exactly_once() {
    let server = support::start("", "").await;
    server.add_user("romeo@localhost", "r").await;
    server.add_user("juliet@localhost", "j").await;
    let addr = server.running.c2s_direct_tls[0];
    let mut juliet = Client::connect(addr, "localhost", "juliet", "j", "phone").await.unwrap();
    juliet.send_raw("<enable xmlns='urn:xmpp:sm:3'/>").await.unwrap();
    juliet.recv_named("enabled").await.unwrap();
    juliet.send_raw("<presence/>").await.unwrap();
    let mut romeo = Client::connect(addr, "localhost", "romeo", "r", "desk").await.unwrap();
    for i in 0..3 {
        romeo
            .send_raw(&format!("<message type='chat' id='m{i}' to='juliet@localhost'><body>n{i}</body></message>"))
            .await
            .unwrap();
    }
    // Juliet reads the first message and acknowledges everything up to it (her own presence
    // echo and the first message), then her connection goes away without acknowledging more.
    let first = juliet.recv_named("message").await.unwrap();
    assert_eq!(first.attr("id"), Some("m0"));
    juliet.send_raw("<a xmlns='urn:xmpp:sm:3' h='2'/>").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(juliet);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let mut juliet = Client::connect(addr, "localhost", "juliet", "j", "laptop").await.unwrap();
    juliet.send_raw("<presence/>").await.unwrap();
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let message = juliet.recv_named("message").await.unwrap();
        assert!(message.has_child("delay", "urn:xmpp:delay"), "{message}");
        ids.push(message.attr("id").unwrap().to_owned());
    }
    assert_eq!(ids, vec!["m1", "m2"]);
    juliet.expect_nothing(std::time::Duration::from_millis(500)).await.unwrap();
}

async fn juliet_with_resumption(addr: std::net::SocketAddr) -> (Client, String) {
    let mut juliet = Client::connect(addr, "localhost", "juliet", "j", "phone").await.unwrap();
    juliet.send_raw("<enable xmlns='urn:xmpp:sm:3' resume='true'/>").await.unwrap();
    let enabled = juliet.recv_named("enabled").await.unwrap();
    assert_eq!(enabled.attr("resume"), Some("true"), "{enabled}");
    let id = enabled.attr("id").unwrap().to_owned();
    juliet.send_raw("<presence/>").await.unwrap();
    (juliet, id)
}

async fn send_messages(romeo: &mut Client, ids: std::ops::Range<u32>) {
    for i in ids {
        romeo
            .send_raw(&format!("<message type='chat' id='m{i}' to='juliet@localhost'><body>n{i}</body></message>"))
            .await
            .unwrap();
    }
}

async fn message_ids(client: &mut Client, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < count {
        ids.push(client.recv_named("message").await.unwrap().attr("id").unwrap().to_owned());
    }
    ids
}

/// Nothing but acknowledgement requests arrives for a while.
async fn no_more_messages(client: &mut Client) {
    while let Some(client::Received::Element(el)) =
        client.recv_within(std::time::Duration::from_millis(300)).await.unwrap()
    {
        assert_eq!(el.name, "r", "unexpected {el}");
    }
}

/// A connection that dies (or is silently dead and still open) is resumed by a new one: the
/// client gets what it had not acknowledged and what arrived meanwhile, exactly once, in order.
async fn resume_after(kill_old: bool) {
    let server = support::start("", "").await;
    server.add_user("romeo@localhost", "r").await;
    server.add_user("juliet@localhost", "j").await;
    let addr = server.running.c2s_direct_tls[0];
    let (mut juliet, previd) = juliet_with_resumption(addr).await;
    let mut romeo = Client::connect(addr, "localhost", "romeo", "r", "desk").await.unwrap();
    send_messages(&mut romeo, 0..3).await;
    assert_eq!(message_ids(&mut juliet, 1).await, vec!["m0"]);
    // Acknowledges her presence echo and m0 only.
    juliet.send_raw("<a xmlns='urn:xmpp:sm:3' h='2'/>").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let old = if kill_old {
        drop(juliet);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        None
    } else {
        Some(juliet)
    };
    send_messages(&mut romeo, 3..4).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let mut resumed = Client::connect_authenticated(addr, "localhost", "juliet", "j").await.unwrap();
    resumed.send_raw(&format!("<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='2'/>")).await.unwrap();
    let reply = resumed.recv_named("resumed").await.unwrap();
    assert_eq!(reply.attr("previd"), Some(previd.as_str()), "{reply}");
    assert_eq!(message_ids(&mut resumed, 3).await, vec!["m1", "m2", "m3"]);
    resumed.send_raw("<a xmlns='urn:xmpp:sm:3' h='5'/>").await.unwrap();
    send_messages(&mut romeo, 4..5).await;
    assert_eq!(message_ids(&mut resumed, 1).await, vec!["m4"]);
    no_more_messages(&mut resumed).await;
    assert_eq!(server.server.sessions.count(), 2, "the resumed session replaces the old one");
    drop(old);
}

#[tokio::test]
async fn a_dead_connection_is_resumed_with_everything_unacknowledged_exactly_once() {
    resume_after(true).await;
}

#[tokio::test]
async fn a_silently_dead_connection_still_open_is_taken_over_by_resumption() {
    resume_after(false).await;
}

#[tokio::test]
async fn an_unknown_resumption_id_fails_and_the_client_can_bind() {
    let server = support::start("", "").await;
    server.add_user("juliet@localhost", "j").await;
    let addr = server.running.c2s_direct_tls[0];
    let mut juliet = Client::connect_authenticated(addr, "localhost", "juliet", "j").await.unwrap();
    juliet.send_raw("<resume xmlns='urn:xmpp:sm:3' previd='nope' h='0'/>").await.unwrap();
    let failed = juliet.recv().await.unwrap();
    assert_eq!(failed.name, "failed", "{failed}");
    juliet.bind("again").await.unwrap();
}

#[tokio::test]
async fn a_session_not_resumed_in_time_leaves_its_messages_offline() {
    let server = support::start("resume_timeout = \"1s\"", "").await;
    server.add_user("romeo@localhost", "r").await;
    server.add_user("juliet@localhost", "j").await;
    let addr = server.running.c2s_direct_tls[0];
    let (mut juliet, _) = juliet_with_resumption(addr).await;
    let mut romeo = Client::connect(addr, "localhost", "romeo", "r", "desk").await.unwrap();
    send_messages(&mut romeo, 0..2).await;
    assert_eq!(message_ids(&mut juliet, 2).await, vec!["m0", "m1"]);
    drop(juliet); // nothing acknowledged
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    send_messages(&mut romeo, 2..3).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(server.server.sessions.count(), 1, "the unresumed session ended");
    let mut juliet = Client::connect(addr, "localhost", "juliet", "j", "laptop").await.unwrap();
    juliet.send_raw("<presence/>").await.unwrap();
    assert_eq!(message_ids(&mut juliet, 3).await, vec!["m0", "m1", "m2"]);
    no_more_messages(&mut juliet).await;
}
