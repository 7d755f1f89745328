//! Durable before acknowledged, under SIGKILL.
//!
//! A sender with stream management (XEP-0198) sends 5,000 messages to a recipient who is
//! online (with stream management, acknowledging when asked) and 5,000 to one who is offline,
//! interleaved, asking for an acknowledgement every few messages. Once a random number of them
//! is acknowledged, the server process (the real `starling` binary on a SQLite file) is killed
//! with SIGKILL while more are in flight. After a restart the sender logs in again and resends
//! exactly the messages it never saw acknowledged, with the same origin-ids, as a client must.
//! Then:
//! - the offline recipient gets all 5,000 exactly once, in order (ids checked);
//! - the online recipient gets all 5,000 in order once re-deliveries are dropped by stanza-id
//!   (as XEP-0359 clients do): a message she had read but whose acknowledgement the server had
//!   not yet committed at the kill comes again after the restart, and then it must carry the
//!   stanza-id of the copy she already has (one stored message, never two);
//! - nothing acknowledged to the sender is missing, and none of the resends is stored twice
//!   (the origin-id check across the restart).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../conformance/client.rs"]
mod client;

use client::{Client, Received};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Messages per recipient.
const MESSAGES: usize = 5_000;
/// The sender asks for an acknowledgement after this many messages.
const ACK_EVERY: usize = 25;

fn starling(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_starling"));
    command.arg("--config").arg(config).env("RUST_LOG", "warn");
    command
}

fn write_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let path = dir.join("starling.toml");
    let toml = format!(
        "[server]\ndomains = [\"localhost\"]\ndata_dir = {data:?}\n\
         [storage]\nurl = \"sqlite://{data}/starling.db\"\n\
         [c2s]\nlisten = []\ndirect_tls_listen = [\"127.0.0.1:{port}\"]\n\
         [http]\nlisten = []\n[s2s]\nlisten = []\n{extra}",
        data = dir.display().to_string(),
    );
    std::fs::write(&path, toml).unwrap();
    path
}

fn add_user(config: &Path, user: &str) {
    let status = starling(config).args(["user", "add", user, "--password", "pw"]).status().unwrap();
    assert!(status.success(), "adding {user}");
}

async fn start(config: &Path, addr: SocketAddr, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut child = starling(config).arg("serve").stdout(Stdio::null()).stderr(log).spawn().unwrap();
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not start listening on {addr}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The i-th message: to the online recipient when even, to the offline one when odd.
fn message(i: usize) -> String {
    let to = if i.is_multiple_of(2) { "juliet@localhost" } else { "nurse@localhost" };
    format!(
        "<message type='chat' id='m{i}' to='{to}'><body>{i}</body>\
         <origin-id xmlns='urn:xmpp:sid:0' id='o{i}'/></message>"
    )
}

/// Reads acknowledgements until `h` reaches `want` (or the stream ends); returns the last h.
async fn read_acks(sender: &mut Client, mut h: usize, want: usize) -> usize {
    while h < want {
        match sender.recv_within(Duration::from_secs(30)).await {
            Ok(Some(Received::Element(el))) if el.name == "a" => h = el.attr("h").unwrap().parse().unwrap(),
            Ok(Some(Received::Element(_))) => {}
            _ => break,
        }
    }
    h
}

/// What a recipient saw: message ids with their stanza-ids, in order of arrival.
type Seen = Arc<Mutex<Vec<(usize, String)>>>;

/// A recipient with stream management that acknowledges everything it has read whenever asked.
fn receive(mut client: Client, seen: Seen) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut handled = 0u32;
        loop {
            let el = match client.recv_within(Duration::from_secs(60)).await {
                Ok(Some(Received::Element(el))) => el,
                _ => return,
            };
            match el.name.as_str() {
                "r" if client.send_raw(&format!("<a xmlns='urn:xmpp:sm:3' h='{handled}'/>")).await.is_err() => return,
                "message" | "presence" | "iq" => {
                    handled += 1;
                    if el.name == "message" {
                        let id = el.attr("id").and_then(|id| id.strip_prefix('m')).unwrap().parse().unwrap();
                        let sid = el.get_child("stanza-id", "urn:xmpp:sid:0").and_then(|s| s.attr("id")).unwrap();
                        seen.lock().unwrap().push((id, sid.to_owned()));
                    }
                }
                _ => {}
            }
        }
    })
}

async fn recipient(addr: SocketAddr, user: &str, seen: Seen) -> tokio::task::JoinHandle<()> {
    let mut client = Client::connect(addr, "localhost", user, "pw", "phone").await.unwrap();
    client.send_raw("<enable xmlns='urn:xmpp:sm:3'/>").await.unwrap();
    client.recv_named("enabled").await.unwrap();
    client.send_raw("<presence/>").await.unwrap();
    receive(client, seen)
}

async fn wait_for(seen: &Seen, count: usize, what: &str) {
    for _ in 0..1200 {
        if seen.lock().unwrap().iter().map(|(id, _)| id).collect::<HashSet<_>>().len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: only {} of {count} messages arrived", seen.lock().unwrap().len());
}

/// A server's data directory, configuration and accounts (romeo, juliet, nurse), on a free
/// port. STARLING_CRASH_CONFIG adds configuration (e.g. to see the tests fail without the
/// duplicate check after restart: `[modules.offline]\ndedup_check_after_start = "0s"`).
struct Node {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    config: PathBuf,
    log: PathBuf,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let extra = std::env::var("STARLING_CRASH_CONFIG").unwrap_or_default();
        let config = write_config(dir.path(), addr.port(), &extra.replace("\\n", "\n"));
        let log = dir.path().join("server.log");
        for user in ["romeo", "juliet", "nurse"] {
            add_user(&config, user);
        }
        Node { _dir: dir, addr, config, log }
    }
}

/// A point between 10% and 90% of the run, different on every run (printed for reruns).
fn kill_point() -> usize {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as usize;
    let point = 2 * MESSAGES / 10 + nanos % (2 * MESSAGES * 8 / 10);
    std::env::var("STARLING_CRASH_POINT").ok().and_then(|p| p.parse().ok()).unwrap_or(point)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill_exactly_once_and_in_order() {
    let node = Node::new();
    let (addr, config, log) = (node.addr, node.config.clone(), node.log.clone());
    let mut server = start(&config, addr, &log).await;

    let juliet_seen: Seen = Arc::default();
    let juliet = recipient(addr, "juliet", juliet_seen.clone()).await;
    let mut romeo = Client::connect(addr, "localhost", "romeo", "pw", "desk").await.unwrap();
    romeo.send_raw("<enable xmlns='urn:xmpp:sm:3'/>").await.unwrap();
    romeo.recv_named("enabled").await.unwrap();

    // Send in windows of ACK_EVERY, one window ahead of the acknowledgements, until the kill.
    let kill_at = kill_point();
    eprintln!("killing the server once {kill_at} messages are acknowledged (STARLING_CRASH_POINT to repeat)");
    let total = 2 * MESSAGES;
    let (mut sent, mut acked) = (0, 0);
    while acked < kill_at {
        let window_end = (sent + ACK_EVERY).min(total);
        let batch: String = (sent..window_end).map(message).collect();
        romeo.send_raw(&format!("{batch}<r xmlns='urn:xmpp:sm:3'/>")).await.unwrap();
        sent = window_end;
        acked = read_acks(&mut romeo, acked, sent.saturating_sub(ACK_EVERY)).await;
    }
    // One more window goes out without an acknowledgement request, and the process dies while
    // it is being handled: some of it stored, none of it acknowledged.
    let batch: String = (sent..(sent + ACK_EVERY).min(total)).map(message).collect();
    romeo.send_raw(&batch).await.unwrap();
    tokio::time::sleep(Duration::from_micros(300 + (kill_at % 11) as u64 * 400)).await;
    server.kill().unwrap();
    server.wait().unwrap();
    // Acknowledgements already on the wire before the kill still count.
    acked = read_acks(&mut romeo, acked, total).await;
    juliet.await.unwrap();
    let juliet_read = juliet_seen.lock().unwrap().len();
    eprintln!("acknowledged to the sender before the kill: {acked}; juliet had read {juliet_read}");

    let mut server = start(&config, addr, &log).await;
    let mut romeo = Client::connect(addr, "localhost", "romeo", "pw", "desk").await.unwrap();
    romeo.send_raw("<enable xmlns='urn:xmpp:sm:3'/>").await.unwrap();
    romeo.recv_named("enabled").await.unwrap();
    let juliet = recipient(addr, "juliet", juliet_seen.clone()).await;
    // Only what was never acknowledged is sent again.
    for start in (acked..total).step_by(ACK_EVERY) {
        let batch: String = (start..(start + ACK_EVERY).min(total)).map(message).collect();
        romeo.send_raw(&format!("{batch}<r xmlns='urn:xmpp:sm:3'/>")).await.unwrap();
    }
    assert_eq!(read_acks(&mut romeo, 0, total - acked).await, total - acked, "every resend acknowledged");

    wait_for(&juliet_seen, MESSAGES, "juliet").await;
    let nurse_seen: Seen = Arc::default();
    let nurse = recipient(addr, "nurse", nurse_seen.clone()).await;
    wait_for(&nurse_seen, MESSAGES, "nurse").await;
    tokio::time::sleep(Duration::from_secs(1)).await; // anything extra would arrive now
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = tokio::join!(juliet, nurse);

    // The offline recipient: each message once, in order.
    let nurse_ids: Vec<usize> = nurse_seen.lock().unwrap().iter().map(|(id, _)| *id).collect();
    let expected: Vec<usize> = (0..total).filter(|i| !i.is_multiple_of(2)).collect();
    assert_eq!(nurse_ids.len(), MESSAGES, "no duplicates for the offline recipient");
    assert_eq!(nurse_ids, expected, "all, in order");

    // The online recipient: in order after dropping re-deliveries of stored copies she has.
    let seen = juliet_seen.lock().unwrap().clone();
    let mut first_sid = std::collections::HashMap::new();
    let mut distinct = Vec::new();
    let mut redelivered = 0;
    for (id, sid) in &seen {
        match first_sid.get(id) {
            Some(first) => {
                assert_eq!(first, sid, "message {id} came twice as two different stored copies");
                redelivered += 1;
            }
            None => {
                first_sid.insert(*id, sid.clone());
                distinct.push(*id);
            }
        }
    }
    let expected: Vec<usize> = (0..total).filter(|i| i.is_multiple_of(2)).collect();
    let mut sorted = distinct.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected, "every message reached the online recipient");
    assert!(distinct.windows(2).all(|w| w[0] < w[1]), "in order: {:?}", distinct.windows(2).find(|w| w[0] > w[1]));
    eprintln!("online recipient: {} messages, {redelivered} re-delivered unacknowledged copies", distinct.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_again_after_a_restart_is_acknowledged_but_not_delivered_twice() {
    let node = Node::new();
    let (addr, config, log) = (node.addr, node.config.clone(), node.log.clone());
    let mut server = start(&config, addr, &log).await;
    let juliet_seen: Seen = Arc::default();
    let juliet = recipient(addr, "juliet", juliet_seen.clone()).await;
    let mut romeo = Client::connect(addr, "localhost", "romeo", "pw", "desk").await.unwrap();
    // m0 to Juliet (online: read and acknowledged), m1 to the nurse (offline: stored).
    romeo.send_raw(&format!("{}{}", message(0), message(1))).await.unwrap();
    wait_for(&juliet_seen, 1, "juliet").await;
    tokio::time::sleep(Duration::from_millis(500)).await; // her acknowledgement is committed
    server.kill().unwrap();
    server.wait().unwrap();
    juliet.await.unwrap();

    // The sender never saw an acknowledgement, so after the restart it sends both again.
    let mut server = start(&config, addr, &log).await;
    let juliet = recipient(addr, "juliet", juliet_seen.clone()).await;
    let mut romeo = Client::connect(addr, "localhost", "romeo", "pw", "desk").await.unwrap();
    romeo.send_raw("<enable xmlns='urn:xmpp:sm:3'/>").await.unwrap();
    romeo.recv_named("enabled").await.unwrap();
    romeo.send_raw(&format!("{}{}<r xmlns='urn:xmpp:sm:3'/>", message(0), message(1))).await.unwrap();
    assert_eq!(read_acks(&mut romeo, 0, 2).await, 2, "both acknowledged");
    let nurse_seen: Seen = Arc::default();
    let nurse = recipient(addr, "nurse", nurse_seen.clone()).await;
    wait_for(&nurse_seen, 1, "nurse").await;
    tokio::time::sleep(Duration::from_secs(1)).await; // a second copy would arrive now
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = tokio::join!(juliet, nurse);
    let ids = |seen: &Seen| seen.lock().unwrap().iter().map(|(id, _)| *id).collect::<Vec<_>>();
    assert_eq!(ids(&juliet_seen), [0], "delivered and acknowledged before the restart: not again");
    assert_eq!(ids(&nurse_seen), [1], "stored before the restart: once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_message_sent_after_a_restart_is_not_sent_again_when_its_sender_resends_it() {
    let node = Node::new();
    let (addr, config, log) = (node.addr, node.config.clone(), node.log.clone());
    let mut server = start(&config, addr, &log).await;
    let mut romeo = Client::connect(addr, "localhost", "romeo", "pw", "desk").await.unwrap();
    romeo.send_raw("<enable xmlns='urn:xmpp:sm:3'/>").await.unwrap();
    romeo.recv_named("enabled").await.unwrap();
    // m1 to the nurse, who is offline: stored, committed, its acknowledgement never read.
    romeo.send_raw(&format!("{}<r xmlns='urn:xmpp:sm:3'/>", message(1))).await.unwrap();
    assert_eq!(read_acks(&mut romeo, 0, 1).await, 1, "stored");
    server.kill().unwrap();
    server.wait().unwrap();

    // After the restart the nurse comes first and gets it from her inbox (she has not
    // acknowledged it yet, so it is still there); then the sender, who lost the
    // acknowledgement, sends it again.
    let mut server = start(&config, addr, &log).await;
    let mut nurse = Client::connect(addr, "localhost", "nurse", "pw", "phone").await.unwrap();
    nurse.send_raw("<enable xmlns='urn:xmpp:sm:3'/><presence/>").await.unwrap();
    nurse.recv_named("enabled").await.unwrap();
    let mut ids = Vec::new();
    while ids.is_empty() {
        if let Ok(Some(Received::Element(el))) = nurse.recv_within(Duration::from_secs(30)).await
            && el.name == "message"
        {
            ids.push(el.attr("id").unwrap().to_owned());
        }
    }
    let mut romeo = Client::connect(addr, "localhost", "romeo", "pw", "desk").await.unwrap();
    romeo.send_raw("<enable xmlns='urn:xmpp:sm:3'/>").await.unwrap();
    romeo.recv_named("enabled").await.unwrap();
    romeo.send_raw(&format!("{}<r xmlns='urn:xmpp:sm:3'/>", message(1))).await.unwrap();
    assert_eq!(read_acks(&mut romeo, 0, 1).await, 1, "acknowledged again");
    // A second copy would arrive now.
    while let Ok(Some(Received::Element(el))) = nurse.recv_within(Duration::from_secs(1)).await {
        if el.name == "message" {
            ids.push(el.attr("id").unwrap().to_owned());
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(ids, ["m1"], "once");
}
