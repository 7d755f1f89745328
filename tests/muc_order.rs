//! The order in which a room's copies of one departure leave for different sessions. A room
//! operation runs on the connection task of the session that caused it, and that task writes
//! what it queued for itself as soon as routing returns; the other occupants' copies are
//! written by their own tasks. When an occupant leaves or changes its nick (XEP-0045 §7.14,
//! §7.6), its own presence (status 110) must still be the last to go out: clients take it as
//! the sign that the room told everyone, and a client that leaves right after its nick change
//! must not have its exit overtake the nick change at the other occupants.
//!
//! The sessions here are bound straight in the session table and served by small tasks that
//! log what they take from their queues, as connection tasks would write it, so that the order
//! of the writes is seen exactly (over sockets, it would depend on the scheduler).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use starling::router::route;
use starling::router::stanza::Stanza;
use starling::session::{Outbound, SessionRef};
use starling::xml::Element;
use std::sync::{Arc, Mutex};

type Log = Arc<Mutex<Vec<(String, String)>>>;

fn record(log: &Log, who: &str, item: Outbound) {
    if let Outbound::Stanza(stanza) = item {
        log.lock().unwrap().push((who.to_owned(), stanza.to_string()));
    }
}

/// Serves a session as its connection task would: takes each queued item as it comes.
fn serve(session: SessionRef, who: &'static str, log: Log) {
    let generation = session.generation.load(std::sync::atomic::Ordering::Acquire);
    tokio::spawn(async move {
        while let Some(item) = session.next_outbound(generation).await {
            record(&log, who, item);
        }
    });
}

/// Routes a stanza the way the session's connection task does, then writes what routing
/// queued for the session itself, as that task does right after routing.
async fn act(server: &starling::server::Server, session: &SessionRef, who: &str, log: &Log, xml: &str) {
    let xml = xml.replacen(' ', " xmlns='jabber:client' ", 1);
    let mut el = Element::parse(xml.as_bytes()).unwrap();
    el.set_attr("from", session.jid.as_str());
    let stanza = Stanza::from_element(el).unwrap();
    route(server, stanza, Some(session)).await;
    while let Some(item) = session.try_next_outbound() {
        record(log, who, item);
    }
}

/// Lets the other sessions' tasks take what was queued for them.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Where in the log `who` was first written a stanza containing all of `needles`.
fn position(log: &Log, who: &str, needles: &[&str]) -> usize {
    let log = log.lock().unwrap();
    log.iter()
        .position(|(w, text)| w == who && needles.iter().all(|n| text.contains(n)))
        .unwrap_or_else(|| panic!("{who} never got {needles:?}: {log:?}"))
}

#[tokio::test]
async fn the_actor_hears_of_its_nick_change_and_exit_after_the_other_occupants() {
    let server = support::start("", "").await;
    let server = server.server.clone();
    let (romeo, _) = server.sessions.bind("romeo@localhost/desk".parse().unwrap());
    let (juliet, _) = server.sessions.bind("juliet@localhost/phone".parse().unwrap());
    let log = Log::default();
    serve(juliet.clone(), "juliet", log.clone());

    // Both enter an instant room (no <x/>: unlocked at once), romeo first.
    act(&server, &romeo, "romeo", &log, "<presence to='inn@conference.localhost/romeo'/>").await;
    act(&server, &juliet, "juliet", &log, "<presence to='inn@conference.localhost/juliet'/>").await;
    settle().await;
    position(&log, "juliet", &["110"]);

    act(&server, &romeo, "romeo", &log, "<presence to='inn@conference.localhost/montague'/>").await;
    settle().await;
    let others = position(&log, "juliet", &["303"]);
    let own = position(&log, "romeo", &["303"]);
    assert!(others < own, "romeo heard of its nick change before juliet did: {:?}", log.lock().unwrap());

    act(&server, &romeo, "romeo", &log, "<presence type='unavailable' to='inn@conference.localhost/montague'/>").await;
    settle().await;
    let others = position(&log, "juliet", &["unavailable", "inn@conference.localhost/montague"]);
    let own = position(&log, "romeo", &["unavailable", "inn@conference.localhost/montague"]);
    assert!(others < own, "romeo heard of its exit before juliet did: {:?}", log.lock().unwrap());
}
