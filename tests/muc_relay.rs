//! IQs between occupants are relayed through the room: the request reaches the addressee from
//! the requester's occupant JID, under an id of the room's, never showing the requester's real
//! JID, and the answer comes back with the requester's own id; answers nobody asked for are
//! dropped. vCard requests (avatars) go to the addressee's account, which its server answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../conformance/client.rs"]
mod client;
mod support;

use client::Client;
use std::time::Duration;

async fn enter(client: &mut Client, room_nick: &str) {
    client
        .send_raw(&format!("<presence to='{room_nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"))
        .await
        .unwrap();
    loop {
        let el = client.recv().await.unwrap();
        if el.name == "message" && el.get_child("subject", "jabber:client").is_some() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iq_to_an_occupant_is_relayed_and_answered() {
    let server = support::start("", "").await;
    let addr = server.running.c2s_direct_tls[0];
    server.add_user("romeo@localhost", "r").await;
    server.add_user("juliet@localhost", "j").await;
    let mut romeo = Client::connect(addr, "localhost", "romeo", "r", "desk").await.unwrap();
    let mut juliet = Client::connect(addr, "localhost", "juliet", "j", "phone").await.unwrap();
    enter(&mut romeo, "inn@conference.localhost/romeo").await;
    romeo.send_raw("<iq type='set' id='c' to='inn@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>").await.unwrap();
    romeo.recv_named("iq").await.unwrap();
    enter(&mut juliet, "inn@conference.localhost/juliet").await;
    romeo.recv_named("presence").await.unwrap();

    juliet
        .send_raw("<iq type='get' id='v1' to='inn@conference.localhost/romeo'><query xmlns='jabber:iq:version'/></iq>")
        .await
        .unwrap();
    let relayed = romeo.recv_named("iq").await.unwrap();
    assert_eq!(relayed.attr("from"), Some("inn@conference.localhost/juliet"), "{relayed}");
    let id = relayed.attr("id").unwrap().to_owned();
    assert!(id != "v1" && !relayed.to_string().contains("juliet@localhost"), "the real JID must not show: {relayed}");

    let answer = format!(
        "<iq type='result' id='{id}' to='inn@conference.localhost/juliet'>\
         <query xmlns='jabber:iq:version'><name>Balcony</name></query></iq>"
    );
    romeo.send_raw(&answer).await.unwrap();
    let answer = juliet.recv_named("iq").await.unwrap();
    assert_eq!(answer.attr("id"), Some("v1"), "{answer}");
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    assert_eq!(answer.attr("from"), Some("inn@conference.localhost/romeo"), "{answer}");
    assert!(answer.to_string().contains("<name>Balcony</name>"), "{answer}");

    // The same id is not accepted twice.
    romeo.send_raw(&format!("<iq type='result' id='{id}' to='inn@conference.localhost/juliet'/>")).await.unwrap();
    juliet.expect_nothing(Duration::from_millis(300)).await.unwrap();

    // A vCard request is answered by the addressee's server from the stored vCard.
    romeo.send_raw("<iq type='set' id='pub'><vCard xmlns='vcard-temp'><FN>Romeo</FN></vCard></iq>").await.unwrap();
    romeo.recv_named("iq").await.unwrap();
    juliet
        .send_raw("<iq type='get' id='card' to='inn@conference.localhost/romeo'><vCard xmlns='vcard-temp'/></iq>")
        .await
        .unwrap();
    let card = juliet.recv_named("iq").await.unwrap();
    assert_eq!((card.attr("id"), card.attr("type")), (Some("card"), Some("result")), "{card}");
    assert_eq!(card.attr("from"), Some("inn@conference.localhost/romeo"), "{card}");
    assert!(card.to_string().contains("<FN>Romeo</FN>"), "{card}");

    // An answer with an id the room never gave out goes nowhere.
    romeo.send_raw("<iq type='result' id='made-up' to='inn@conference.localhost/juliet'/>").await.unwrap();
    juliet.expect_nothing(Duration::from_millis(300)).await.unwrap();

    // The self-ping is answered by the room itself.
    juliet
        .send_raw("<iq type='get' id='self' to='inn@conference.localhost/juliet'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    let pong = juliet.recv_named("iq").await.unwrap();
    assert_eq!((pong.attr("id"), pong.attr("type")), (Some("self"), Some("result")), "{pong}");
    romeo.expect_nothing(Duration::from_millis(300)).await.unwrap();
}
