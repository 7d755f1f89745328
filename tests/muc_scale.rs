//! Multi-user chat (XEP-0045) at the sizes the service is configured for.
//!
//! 1. A full room: 1024 occupants (the default `max_occupants`) enter one room, one after the
//!    other. Each newcomer must get exactly the presence of everyone already there, then its
//!    own presence (status 110), then the subject (§7.2.3–§7.2.16); by the end every occupant
//!    has seen every other occupant's presence exactly once. Then four occupants each send 25
//!    numbered group messages at once: every occupant, the senders included (the room reflects
//!    a message to its sender, §7.4), gets all 100 exactly once, and each sender's in the order
//!    it sent them. One more who tries to enter is refused: the room is full (§7.2.10).
//! 2. A members-only room with 1000 members of whom none is in the room: the owner sends five
//!    messages, and each member gets them at the next login (initial presence), once each, in
//!    order, as group messages from the owner's occupant JID with a `<delay/>`.
//!
//! The timings are printed for information only (run with `--nocapture` to see them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../conformance/client.rs"]
mod client;
mod support;

use anyhow::{Context, anyhow, bail, ensure};
use client::{Client, Received};
use starling::xml::Element;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_USER: &str = "http://jabber.org/protocol/muc#user";
const NS_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
const NS_OWNER: &str = "http://jabber.org/protocol/muc#owner";
const NS_DELAY: &str = "urn:xmpp:delay";
const NS_CLIENT: &str = "jabber:client";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const PASSWORD: &str = "secret";

/// The lowest iteration count RFC 7677 allows: the logins here test the room, not PBKDF2.
const C2S: &str = "scram_iterations = 4096";

/// How long a client waits for the next stanza before the test fails. Generous: a debug build
/// on a small machine fans out about a million presence stanzas in the first test.
const STANZA_WAIT: Duration = Duration::from_secs(120);

/// Logins and account creations in flight at once.
const PARALLEL_LOGINS: usize = 16;

/// The limit on open file descriptors of this process, from `/proc/self/limits`.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Creates the accounts `names@localhost`, several at a time (each one derives SCRAM keys).
async fn create_accounts(server: &support::TestServer, names: &[String]) {
    let mut tasks = JoinSet::new();
    let gate = Arc::new(Semaphore::new(PARALLEL_LOGINS));
    for name in names {
        let accounts = server.server.accounts.clone();
        let gate = gate.clone();
        let jid = jid::BareJid::new(&format!("{name}@localhost")).unwrap();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            accounts.create(&jid, PASSWORD).await.unwrap();
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// Logs the accounts in, several at a time; the clients come back in the order of `names`.
async fn connect_all(addr: SocketAddr, names: &[String]) -> Vec<Client> {
    let mut tasks = JoinSet::new();
    let gate = Arc::new(Semaphore::new(PARALLEL_LOGINS));
    for (index, name) in names.iter().enumerate() {
        let gate = gate.clone();
        let name = name.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let client = Client::connect(addr, "localhost", &name, PASSWORD, "muc").await;
            (index, client.with_context(|| format!("login of {name}")))
        });
    }
    let mut clients: Vec<Option<Client>> = names.iter().map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (index, client) = done.unwrap();
        clients[index] = Some(client.unwrap());
    }
    clients.into_iter().map(Option::unwrap).collect()
}

/// The next stanza, failing on a closed stream or after [`STANZA_WAIT`].
async fn next(client: &mut Client) -> anyhow::Result<Element> {
    match client.recv_within(STANZA_WAIT).await? {
        Some(Received::Element(el)) => Ok(el),
        Some(Received::Closed) => Err(anyhow!("the server closed the stream")),
        None => Err(anyhow!("nothing received within {STANZA_WAIT:?}")),
    }
}

/// The nick in an occupant JID `room/nick` (`None` for anything else).
fn nick_of<'a>(from: &'a str, room: &str) -> Option<&'a str> {
    from.strip_prefix(room)?.strip_prefix('/')
}

fn status_codes(el: &Element) -> Vec<String> {
    let Some(x) = el.get_child("x", NS_USER) else { return Vec::new() };
    x.child_elements().filter(|c| c.is("status", NS_USER)).filter_map(|c| c.attr("code")).map(str::to_owned).collect()
}

/// Sends an IQ and waits for its result, failing on an error reply. Other stanzas that
/// arrive meanwhile are checked by `other`.
async fn iq_result(
    client: &mut Client,
    id: &str,
    iq: &str,
    mut other: impl FnMut(&Element) -> anyhow::Result<()>,
) -> anyhow::Result<Element> {
    client.send_raw(iq).await?;
    loop {
        let el = next(client).await?;
        if el.name == "iq" && el.attr("id") == Some(id) {
            ensure!(el.attr("type") == Some("result"), "IQ {id} failed: {el}");
            return Ok(el);
        }
        other(&el)?;
    }
}

// ---------------------------------------------------------------------------------------
// 1. A full room
// ---------------------------------------------------------------------------------------

const BIG_ROOM: &str = "big@conference.localhost";
/// Occupants who send in the burst, and how many messages each.
const SENDERS: usize = 4;
const PER_SENDER: usize = 25;

/// What an occupant's task tells the test as it goes.
enum Event {
    /// Entered: got the others' presence, its own and the subject.
    Entered,
    /// Has seen the presence of every other occupant.
    SawEveryone,
    /// Got every message of the burst.
    GotBurst,
    Failed(usize, String),
}

/// What one occupant does and checks.
struct Occupant {
    index: usize,
    total: usize,
    nick: String,
    /// `Some(k)` for the k-th sender of the burst.
    sender: Option<usize>,
    /// The nicks of the senders, by sender number.
    sender_nicks: Arc<Vec<String>>,
    events: mpsc::UnboundedSender<Event>,
}

impl Occupant {
    async fn run(
        self,
        mut client: Client,
        turn: oneshot::Receiver<()>,
        burst: watch::Receiver<bool>,
    ) -> Result<Client, String> {
        let index = self.index;
        let events = self.events.clone();
        match self.script(&mut client, turn, burst).await {
            Ok(()) => Ok(client),
            Err(e) => {
                let message = format!("{e:#}");
                let _ = events.send(Event::Failed(index, message.clone()));
                Err(message)
            }
        }
    }

    async fn script(
        &self,
        client: &mut Client,
        turn: oneshot::Receiver<()>,
        mut burst: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let report = |event| self.events.send(event).map_err(|_| anyhow!("the test is gone"));
        turn.await.context("never given a turn")?;
        let mut seen = self.enter(client).await?;
        ensure!(
            seen.len() == self.index,
            "entering as number {} it got the presence of {} others",
            self.index,
            seen.len()
        );
        report(Event::Entered)?;

        // Everyone who enters later is announced once (§7.2.5).
        while seen.len() < self.total - 1 {
            let el = next(client).await?;
            let nick = nick_of(el.attr("from").unwrap_or_default(), BIG_ROOM).map(str::to_owned);
            ensure!(el.name == "presence" && el.attr("type").is_none(), "expected a newcomer's presence: {el}");
            let nick = nick.with_context(|| format!("presence not from an occupant: {el}"))?;
            ensure!(nick != self.nick, "its own presence again: {el}");
            ensure!(seen.insert(nick), "a second presence of the same occupant: {el}");
        }
        report(Event::SawEveryone)?;

        if let Some(number) = self.sender {
            burst.wait_for(|go| *go).await.context("the burst never started")?;
            for k in 0..PER_SENDER {
                client
                    .send_raw(&format!(
                        "<message type='groupchat' to='{BIG_ROOM}' id='s{number}-{k}'><body>{number}:{k}</body></message>"
                    ))
                    .await?;
            }
        }

        // Every message of the burst once; each sender's in its order.
        let mut expected = [0usize; SENDERS];
        for _ in 0..SENDERS * PER_SENDER {
            let el = next(client).await?;
            ensure!(el.name == "message" && el.attr("type") == Some("groupchat"), "expected a group message: {el}");
            let body = el.get_child("body", NS_CLIENT).map(Element::text).unwrap_or_default();
            let (number, k) = body
                .split_once(':')
                .and_then(|(s, k)| Some((s.parse::<usize>().ok()?, k.parse::<usize>().ok()?)))
                .with_context(|| format!("unexpected body: {el}"))?;
            ensure!(number < SENDERS, "unexpected sender: {el}");
            let from = nick_of(el.attr("from").unwrap_or_default(), BIG_ROOM);
            ensure!(from == Some(self.sender_nicks[number].as_str()), "message {body} from the wrong occupant: {el}");
            ensure!(
                k == expected[number],
                "sender {number}: expected message {}, got {k} (duplicate or out of order)",
                expected[number]
            );
            expected[number] += 1;
        }
        report(Event::GotBurst)?;
        // No copy comes twice.
        client.expect_nothing(Duration::from_millis(500)).await.context("after the burst")?;
        Ok(())
    }

    /// Enters the room (§7.2): the presence of each occupant already there, its own presence
    /// with 110, then the subject. The first one creates the room and accepts the default
    /// configuration (an instant room, §10.1.2). Returns the nicks of the others it saw.
    async fn enter(&self, client: &mut Client) -> anyhow::Result<HashSet<String>> {
        client.send_raw(&format!("<presence to='{BIG_ROOM}/{}'><x xmlns='{NS_MUC}'/></presence>", self.nick)).await?;
        let mut seen = HashSet::new();
        let own = loop {
            let el = next(client).await?;
            ensure!(el.name == "presence" && el.attr("type").is_none(), "expected presence on entering: {el}");
            let nick = nick_of(el.attr("from").unwrap_or_default(), BIG_ROOM)
                .with_context(|| format!("presence not from an occupant: {el}"))?
                .to_owned();
            if status_codes(&el).iter().any(|c| c == "110") {
                ensure!(nick == self.nick, "status 110 on someone else's presence: {el}");
                break el;
            }
            ensure!(nick != self.nick, "its own presence without 110: {el}");
            ensure!(seen.insert(nick), "a second presence of the same occupant: {el}");
        };
        let created = status_codes(&own).iter().any(|c| c == "201");
        ensure!(created == (self.index == 0), "status 201 (room created) on entry number {}: {own}", self.index);
        let subject = next(client).await?;
        ensure!(
            subject.name == "message"
                && subject.attr("type") == Some("groupchat")
                && subject.has_child("subject", NS_CLIENT)
                && !subject.has_child("body", NS_CLIENT),
            "expected the subject after the own presence: {subject}"
        );
        if self.index == 0 {
            let iq = format!(
                "<iq type='set' id='instant' to='{BIG_ROOM}'><query xmlns='{NS_OWNER}'>\
                 <x xmlns='jabber:x:data' type='submit'/></query></iq>"
            );
            iq_result(client, "instant", &iq, |el| Err(anyhow!("unexpected while unlocking the room: {el}"))).await?;
        }
        Ok(seen)
    }
}

/// Reads test events until `done` holds for the counts, failing on a task's failure.
async fn await_events(
    events: &mut mpsc::UnboundedReceiver<Event>,
    counts: &mut [usize; 3],
    what: &str,
    done: impl Fn(&[usize; 3]) -> bool,
) {
    while !done(counts) {
        let event = tokio::time::timeout(STANZA_WAIT * 2, events.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("every occupant stopped before {what}"));
        match event {
            Event::Entered => counts[0] += 1,
            Event::SawEveryone => counts[1] += 1,
            Event::GotBurst => counts[2] += 1,
            Event::Failed(index, error) => panic!("occupant {index} ({what}): {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_of_1024_gets_every_message_once_and_in_order() {
    // Each connection takes two descriptors in this process (the client's and the server's).
    let mut total = 1024;
    if let Some(limit) = open_files_limit()
        && limit < 2 * total + 256
    {
        total = (limit.saturating_sub(256) / 2).max(SENDERS + 1);
        eprintln!("open files limited to {limit}: running with {total} occupants instead of 1024");
    }
    let server = support::start(C2S, "").await;
    let addr = server.running.c2s_direct_tls[0];
    let names: Vec<String> = (0..total).map(|i| format!("u{i:04}")).collect();

    let started = Instant::now();
    create_accounts(&server, &names).await;
    let clients = connect_all(addr, &names).await;
    eprintln!("{total} accounts created and logged in: {:?}", started.elapsed());
    server.add_user("latecomer@localhost", PASSWORD).await;
    let mut latecomer = Client::connect(addr, "localhost", "latecomer", PASSWORD, "muc").await.unwrap();

    // The owner, two in the middle and the last to enter send the burst.
    let sender_indices = [0, total / 3, 2 * total / 3, total - 1];
    let sender_nicks = Arc::new(sender_indices.iter().map(|&i| names[i].clone()).collect::<Vec<_>>());
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (burst_tx, burst_rx) = watch::channel(false);
    let mut turns = Vec::new();
    let mut tasks = Vec::new();
    for (index, client) in clients.into_iter().enumerate() {
        let (turn_tx, turn_rx) = oneshot::channel();
        turns.push(turn_tx);
        let occupant = Occupant {
            index,
            total,
            nick: names[index].clone(),
            sender: sender_indices.iter().position(|&s| s == index),
            sender_nicks: sender_nicks.clone(),
            events: events_tx.clone(),
        };
        tasks.push(tokio::spawn(occupant.run(client, turn_rx, burst_rx.clone())));
    }
    drop(events_tx);

    // One at a time, so that each newcomer knows how many are already there.
    let started = Instant::now();
    let mut counts = [0usize; 3];
    for (index, turn) in turns.into_iter().enumerate() {
        turn.send(()).unwrap_or_else(|_| panic!("occupant {index} is gone"));
        await_events(&mut events, &mut counts, "an occupant to enter", |c| c[0] > index).await;
    }
    await_events(&mut events, &mut counts, "everyone's presence", |c| c[1] == total).await;
    let entered = started.elapsed();
    eprintln!(
        "{total} occupants entered one after the other: {entered:?} ({} presence stanzas delivered)",
        total * (total - 1)
    );

    let started = Instant::now();
    burst_tx.send(true).unwrap();
    await_events(&mut events, &mut counts, "the burst", |c| c[2] == total).await;
    let delivered = started.elapsed();
    eprintln!(
        "{SENDERS}×{PER_SENDER} messages delivered to all {total} occupants: {delivered:?} ({} copies)",
        SENDERS * PER_SENDER * total
    );

    let mut failures = Vec::new();
    let mut clients = Vec::new();
    for (index, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(client) => clients.push(client),
            Err(error) => failures.push(format!("occupant {index}: {error}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // One more than the room holds is refused (§7.2.10), as long as everyone is still there.
    if total == 1024 {
        latecomer
            .send_raw(&format!("<presence to='{BIG_ROOM}/latecomer'><x xmlns='{NS_MUC}'/></presence>"))
            .await
            .unwrap();
        let refused = latecomer.recv().await.unwrap();
        let error = refused.get_child("error", NS_CLIENT);
        assert!(
            refused.attr("type") == Some("error")
                && error
                    .is_some_and(|e| e.attr("type") == Some("wait") && e.has_child("service-unavailable", NS_STANZAS)),
            "the 1025th occupant: {refused}"
        );
    }
    drop(clients);
}

// ---------------------------------------------------------------------------------------
// 2. Messages for absent members
// ---------------------------------------------------------------------------------------

const CREW_ROOM: &str = "crew@conference.localhost";
const OWNER_NICK: &str = "boss";
const MEMBERS: usize = 1000;
const KEPT: usize = 5;
/// Membership items per `muc#admin` request.
const ITEMS_PER_REQUEST: usize = 100;

/// The owner creates the room, makes it members-only and persistent, grants membership to
/// `members`, and sends [`KEPT`] messages; it stays in the room.
async fn owner_prepares_room(owner: &mut Client, members: &[String]) {
    owner.send_raw(&format!("<presence to='{CREW_ROOM}/{OWNER_NICK}'><x xmlns='{NS_MUC}'/></presence>")).await.unwrap();
    let own = owner.recv_named("presence").await.unwrap();
    let codes = status_codes(&own);
    assert!(codes.iter().any(|c| c == "110") && codes.iter().any(|c| c == "201"), "{own}");
    let subject = owner.recv_named("message").await.unwrap();
    assert!(subject.has_child("subject", NS_CLIENT), "{subject}");

    let config = format!(
        "<iq type='set' id='config' to='{CREW_ROOM}'><query xmlns='{NS_OWNER}'>\
         <x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
         <field var='muc#roomconfig_membersonly'><value>1</value></field>\
         <field var='muc#roomconfig_persistentroom'><value>1</value></field>\
         </x></query></iq>"
    );
    iq_result(owner, "config", &config, |el| Err(anyhow!("unexpected while configuring: {el}"))).await.unwrap();

    // Granting membership to someone not in the room tells nobody anything (§9.3).
    for (n, chunk) in members.chunks(ITEMS_PER_REQUEST).enumerate() {
        let items: String = chunk.iter().map(|m| format!("<item affiliation='member' jid='{m}@localhost'/>")).collect();
        let iq =
            format!("<iq type='set' id='grant{n}' to='{CREW_ROOM}'><query xmlns='{NS_ADMIN}'>{items}</query></iq>");
        iq_result(owner, &format!("grant{n}"), &iq, |el| Err(anyhow!("unexpected while granting: {el}")))
            .await
            .unwrap();
    }
    let list = format!(
        "<iq type='get' id='members' to='{CREW_ROOM}'><query xmlns='{NS_ADMIN}'>\
         <item affiliation='member'/></query></iq>"
    );
    let list = iq_result(owner, "members", &list, |el| Err(anyhow!("unexpected: {el}"))).await.unwrap();
    let listed = list.get_child("query", NS_ADMIN).map(|q| q.child_elements().count()).unwrap_or_default();
    assert_eq!(listed, members.len(), "the member list: {list}");

    // The room reflects each message to its sender; the copies for the absent members are
    // queued before that, and a login's catch-up waits for everything queued (the offline
    // store's group commit) before reading the store.
    for k in 0..KEPT {
        owner
            .send_raw(&format!(
                "<message type='groupchat' to='{CREW_ROOM}' id='kept{k}'><body>kept {k}</body></message>"
            ))
            .await
            .unwrap();
    }
    for k in 0..KEPT {
        let echo = owner.recv_named("message").await.unwrap();
        let body = echo.get_child("body", NS_CLIENT).map(Element::text);
        assert_eq!(body.as_deref(), Some(format!("kept {k}").as_str()), "{echo}");
    }
}

/// A member logs in, sends initial presence and must get the kept messages, once each and in
/// order. A ping after the presence is the barrier: stored messages are sent while the initial
/// presence is handled, so all of them come before the pong.
async fn member_catches_up(addr: SocketAddr, name: &str) -> anyhow::Result<()> {
    let mut client = Client::connect(addr, "localhost", name, PASSWORD, "phone").await?;
    client.send_raw("<presence/>").await?;
    client.send_raw("<iq type='get' id='barrier' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await?;
    let mut bodies = Vec::new();
    loop {
        let el = next(&mut client).await?;
        match el.name.as_str() {
            "iq" if el.attr("id") == Some("barrier") => break,
            "presence" => continue, // its own presence, reflected (RFC 6121 §4.2.2)
            "message" => {
                let from = format!("{CREW_ROOM}/{OWNER_NICK}");
                ensure!(el.attr("type") == Some("groupchat"), "not a group message: {el}");
                ensure!(el.attr("from") == Some(from.as_str()), "not from the owner's occupant JID: {el}");
                ensure!(el.has_child("delay", NS_DELAY), "no <delay/>: {el}");
                bodies.push(el.get_child("body", NS_CLIENT).map(Element::text).unwrap_or_default());
            }
            _ => bail!("unexpected: {el}"),
        }
    }
    let expected: Vec<String> = (0..KEPT).map(|k| format!("kept {k}")).collect();
    ensure!(bodies == expected, "got {bodies:?}");
    client.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_absent_members_get_the_messages_at_their_next_login() {
    let server = support::start(C2S, "").await;
    let addr = server.running.c2s_direct_tls[0];
    let members: Vec<String> = (0..MEMBERS).map(|i| format!("m{i:04}")).collect();
    let started = Instant::now();
    let mut everyone = members.clone();
    everyone.push("owner".into());
    create_accounts(&server, &everyone).await;
    eprintln!("{} accounts created: {:?}", everyone.len(), started.elapsed());

    let started = Instant::now();
    let mut owner = Client::connect(addr, "localhost", "owner", PASSWORD, "desk").await.unwrap();
    owner_prepares_room(&mut owner, &members).await;
    eprintln!("room configured, {MEMBERS} members granted, {KEPT} messages sent: {:?}", started.elapsed());

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(PARALLEL_LOGINS));
    let mut tasks = JoinSet::new();
    for name in members {
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            member_catches_up(addr, &name).await.with_context(|| name.clone())
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.unwrap() {
            failures.push(format!("{e:#}"));
        }
    }
    eprintln!("{MEMBERS} members logged in and caught up: {:?}", started.elapsed());
    assert!(failures.is_empty(), "{} members failed:\n{}", failures.len(), failures.join("\n"));

    // The owner, in the room all along, got nothing more.
    owner.expect_nothing(Duration::from_millis(300)).await.unwrap();
}
