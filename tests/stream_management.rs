//! Stream management (XEP-0198): a message written to a client that never acknowledged it is
//! not lost when the connection ends; it goes to offline storage and arrives at next login.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../conformance/client.rs"]
mod client;
mod support;

use client::Client;

async fn next_named(client: &mut Client, name: &str) -> starling::xml::Element {
    loop {
        let el = client.recv().await.unwrap();
        if el.name == name {
            return el;
        }
    }
}

#[tokio::test]
async fn unacknowledged_messages_reach_the_next_login_exactly_once() {
    let server = support::start("", "").await;
    server.add_user("romeo@localhost", "r").await;
    server.add_user("juliet@localhost", "j").await;
    let addr = server.running.c2s_direct_tls[0];
    let mut juliet = Client::connect(addr, "localhost", "juliet", "j", "phone").await.unwrap();
    juliet.send_raw("<enable xmlns='urn:xmpp:sm:3'/>").await.unwrap();
    next_named(&mut juliet, "enabled").await;
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
    let first = next_named(&mut juliet, "message").await;
    assert_eq!(first.attr("id"), Some("m0"));
    juliet.send_raw("<a xmlns='urn:xmpp:sm:3' h='2'/>").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(juliet);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let mut juliet = Client::connect(addr, "localhost", "juliet", "j", "laptop").await.unwrap();
    juliet.send_raw("<presence/>").await.unwrap();
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let message = next_named(&mut juliet, "message").await;
        assert!(message.has_child("delay", "urn:xmpp:delay"), "{message}");
        ids.push(message.attr("id").unwrap().to_owned());
    }
    assert_eq!(ids, vec!["m1", "m2"]);
    juliet.expect_nothing(std::time::Duration::from_millis(500)).await.unwrap();
}
