//! What client state indication (XEP-0352) saves a phone: the same traffic (ten contacts each
//! changing presence five times and sending ten chat states, then one message each) is sent to
//! an active and to an inactive client, and the XML bytes each receives are counted. The
//! inactive one gets only what matters: each contact's latest presence and chat state, with the
//! message. Run with `--nocapture` to see the figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../conformance/client.rs"]
mod client;
mod support;

use client::Client;
use std::time::Duration;

const CONTACTS: usize = 10;

async fn bytes_received(inactive: bool) -> usize {
    let server = support::start("", "").await;
    let addr = server.running.c2s_direct_tls[0];
    server.add_user("juliet@localhost", "j").await;
    let mut contacts = Vec::new();
    for n in 0..CONTACTS {
        server.add_user(&format!("romeo{n}@localhost"), "r").await;
        contacts.push(Client::connect(addr, "localhost", &format!("romeo{n}"), "r", "desk").await.unwrap());
    }
    let mut juliet = Client::connect(addr, "localhost", "juliet", "j", "phone").await.unwrap();
    juliet.send_raw("<presence/>").await.unwrap();
    juliet.recv_named("presence").await.unwrap();
    if inactive {
        juliet.send_raw("<inactive xmlns='urn:xmpp:csi:0'/>").await.unwrap();
    }
    // A ping round trip: the state is in force before the contacts write.
    juliet.send_raw("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>").await.unwrap();
    juliet.recv_named("iq").await.unwrap();
    let before = juliet.received_bytes;
    for round in 0..5 {
        for contact in &mut contacts {
            let show = ["away", "xa", "dnd", "chat", "away"][round];
            contact
                .send_raw(&format!("<presence to='juliet@localhost/phone'><show>{show}</show></presence>"))
                .await
                .unwrap();
            for state in ["composing", "paused"] {
                contact
                    .send_raw(&format!(
                        "<message type='chat' to='juliet@localhost/phone'>\
                         <{state} xmlns='http://jabber.org/protocol/chatstates'/></message>"
                    ))
                    .await
                    .unwrap();
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for contact in &mut contacts {
        contact
            .send_raw("<message type='chat' to='juliet@localhost/phone'><body>Wherefore?</body></message>")
            .await
            .unwrap();
    }
    let mut bodies = 0;
    while bodies < CONTACTS {
        let el = juliet.recv().await.unwrap();
        if el.name == "message" && el.get_child("body", "jabber:client").is_some() {
            bodies += 1;
        }
    }
    // Whatever else is still on its way.
    while let Ok(Some(_)) = juliet.recv_within(Duration::from_millis(300)).await {}
    juliet.received_bytes - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_client_receives_a_fraction_of_the_bytes() {
    let active = bytes_received(false).await;
    let inactive = bytes_received(true).await;
    let saved = 100.0 * (1.0 - inactive as f64 / active as f64);
    eprintln!("CSI: active {active} bytes, inactive {inactive} bytes: {saved:.0}% saved");
    assert!(inactive * 3 < active, "inactive {inactive} bytes, active {active}");
}
