//! The `chat` scenario: P sender/receiver pairs of logged-in, available sessions; each sender
//! sends M messages to its receiver's bare JID, keeping at most W in flight.
//!
//! In flight means not yet acknowledged by the server when stream management is on
//! (`--ack-every N`: the sender enables XEP-0198 and sends `<r/>` after every N messages, as
//! phone clients do), otherwise not yet delivered. With `--rate R` each sender paces itself to
//! R messages per second; without it senders go as fast as the window allows.
//!
//! The receivers may be on another server (`--peer-server`, `--peer-domain`): messages then
//! cross one server-to-server link. Before the clock starts, the first pair exchanges one
//! message, so that such a link is already up and its setup is not measured.
//!
//! Messages carry an XEP-0359 origin id, as those of Conversations, Monal, Gajim or Dino do.
//! Each body carries the message's sequence number and send time, so receivers measure
//! delivery latency and count lost, duplicated and reordered messages; senders measure the
//! time from send to acknowledgement, and count the messages that bounced back to them as
//! errors (`bounced`, part of `lost`; a bounce frees its place in the window). Receivers
//! with stream management answer the server's `<r/>`, which lets a server that keeps
//! messages until delivery release them. At the deadline every side stops and what was
//! counted so far is reported.

use crate::client::{Session, Target, Wire, login};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, ReadHalf};
use tokio::sync::{Notify, Semaphore};

/// What one run does.
#[derive(Clone, Debug)]
pub struct ChatPlan {
    pub pairs: usize,
    pub messages: usize,
    pub window: usize,
    /// Stream management with an ack request every N messages; 0 for none.
    pub ack_every: usize,
    /// Messages per second per sender; 0 for as fast as possible.
    pub rate: f64,
    /// Body length in bytes (at least what the sequence number and time need).
    pub body_bytes: usize,
    /// Give up after this long.
    pub deadline: Duration,
    /// The server's process, to report its CPU time during the messages.
    pub server_pid: Option<u32>,
}

/// Latencies in microseconds, and counts.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) delivery_us: Vec<u32>,
    pub(crate) ack_us: Vec<u32>,
    pub(crate) delivered: usize,
    pub(crate) bounced: usize,
    pub(crate) duplicated: usize,
    pub(crate) reordered: usize,
}

/// What a sender and its receiver share.
pub(crate) struct Pair {
    /// Places in the sender's window.
    window: Semaphore,
    /// Messages that bounced back to the sender.
    bounced: AtomicUsize,
    /// Wakes the receiver after a bounce (it may have nothing left to wait for).
    bounce: Notify,
    /// Wakes the sender's reader when the receiver stopped.
    received: Notify,
}

impl Pair {
    pub(crate) fn new(window: usize) -> Arc<Pair> {
        Arc::new(Pair {
            window: Semaphore::new(window),
            bounced: AtomicUsize::new(0),
            bounce: Notify::new(),
            received: Notify::new(),
        })
    }

    /// Lets the sender stop once its messages are acknowledged, without waiting for a receiver.
    pub(crate) fn without_receiver(&self) {
        self.received.notify_one();
    }
}

/// Runs the scenario with accounts `<prefix><2i>` on `from` (senders) and `<prefix><2i+1>` on
/// `to` (receivers; the same server or another); returns the JSON fields of the result.
pub async fn run(from: &Target, to: &Target, prefix: &str, password: &str, plan: ChatPlan) -> Result<String, String> {
    let sm = plan.ack_every > 0;
    let mut senders = Vec::with_capacity(plan.pairs);
    let mut receivers = Vec::with_capacity(plan.pairs);
    for i in 0..plan.pairs {
        receivers.push(login(to, &format!("{prefix}{}", 2 * i + 1), password, None).await?);
        senders.push(login(from, &format!("{prefix}{}", 2 * i), password, None).await?);
    }
    if let (Some(sender), Some(receiver)) = (senders.first_mut(), receivers.first_mut()) {
        warm_up(sender, receiver, &format!("{prefix}1@{}", to.domain)).await?;
    }
    if sm {
        for session in senders.iter_mut().chain(receivers.iter_mut()) {
            enable_sm(session).await?;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // presence traffic settles
    let tally = Arc::new(Mutex::new(Tally::default()));
    let base = Instant::now();
    let (bench_clock, server_clock) = (crate::CpuClock::own(), crate::CpuClock::server(plan.server_pid));
    let mut tasks = Vec::new();
    for (i, (sender, receiver)) in senders.into_iter().zip(receivers).enumerate() {
        let pair = Pair::new(plan.window);
        let addressee = format!("{prefix}{}@{}", 2 * i + 1, to.domain);
        tasks.push(tokio::spawn(receive(receiver, plan.clone(), base, pair.clone(), tally.clone())));
        tasks.push(tokio::spawn(send(sender, addressee, plan.clone(), base, pair, tally.clone())));
    }
    // Every task stops at the deadline; waiting longer is a safety net for a stalled write.
    let all = futures_util::future::join_all(tasks);
    let _ = tokio::time::timeout(plan.deadline + Duration::from_secs(5), all).await;
    let timed_out = tokio::time::Instant::now() >= deadline(base, &plan);
    let elapsed = base.elapsed().as_secs_f64();
    let (bench_cpu, server_cpu) = (bench_clock.json(), server_clock.json());
    let mut tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    let expected = plan.pairs * plan.messages;
    let lost = expected.saturating_sub(tally.delivered);
    Ok(format!(
        "\"pairs\":{},\"messages_per_sender\":{},\"window\":{},\"stream_management\":{sm},\"ack_every\":{},\
         \"rate_per_sender\":{},\"expected\":{expected},\"delivered\":{},\"lost\":{lost},\"bounced\":{},\"duplicated\":{},\
         \"reordered\":{},\"timed_out\":{timed_out},\"seconds\":{elapsed:.3},\"delivered_per_sec\":{:.1},\
         \"delivery_ms\":{},\"ack_ms\":{},\"bench_cpu_s\":{bench_cpu},\"server_cpu_s\":{server_cpu}",
        plan.pairs,
        plan.messages,
        plan.window,
        plan.ack_every,
        plan.rate,
        tally.delivered,
        tally.bounced,
        tally.duplicated,
        tally.reordered,
        tally.delivered as f64 / elapsed,
        percentiles(&mut tally.delivery_us),
        percentiles(&mut tally.ack_us),
    ))
}

/// When every side of the run stops.
pub(crate) fn deadline(base: Instant, plan: &ChatPlan) -> tokio::time::Instant {
    tokio::time::Instant::from_std(base + plan.deadline)
}

pub(crate) fn percentiles(samples: &mut [u32]) -> String {
    if samples.is_empty() {
        return "null".into();
    }
    samples.sort_unstable();
    let at = |q: f64| f64::from(samples[((samples.len() - 1) as f64 * q).round() as usize]) / 1000.0;
    format!("{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3}}}", at(0.5), at(0.9), at(0.99), at(1.0))
}

/// Message `k` of a sender, written at `now` (µs since the run's start), as phone and desktop
/// clients send it: with an XEP-0359 origin id equal to its id, a UUID (the server may keep a
/// record of it to recognise a retransmission).
pub(crate) fn chat_message(to: &str, k: usize, now: u64, pad: &str) -> String {
    let id = format!("{k:08x}-5374-4a72-8c69-6e6762656e63");
    format!(
        "<message to='{to}' type='chat' id='{id}'><body>{k}:{now}:{pad}</body>\
         <origin-id xmlns='urn:xmpp:sid:0' id='{id}'/></message>"
    )
}

/// Sends one message outside the count and waits for it (before stream management, which
/// would count it).
async fn warm_up(sender: &mut Session, receiver: &mut Session, to: &str) -> Result<(), String> {
    sender.send(&format!("<message to='{to}' type='chat' id='warm-up'><body>warm-up</body></message>")).await?;
    loop {
        let el = receiver.element().await?;
        if el.name == "message" && el.attr("id") == Some("warm-up") {
            return Ok(());
        }
    }
}

async fn enable_sm(session: &mut Session) -> Result<(), String> {
    session.send("<enable xmlns='urn:xmpp:sm:3'/>").await?;
    while session.element().await?.name != "enabled" {}
    Ok(())
}

/// Writes the messages; a reader counts the acknowledgements (stream management) and bounces.
pub(crate) async fn send(
    session: Session,
    to: String,
    plan: ChatPlan,
    base: Instant,
    pair: Arc<Pair>,
    tally: Arc<Mutex<Tally>>,
) {
    let (reader, mut writer) = session.split();
    let sent_at = Arc::new(Mutex::new(VecDeque::with_capacity(plan.window)));
    let replies = tokio::spawn(read_replies(reader, sent_at.clone(), base, pair.clone(), tally, plan.clone()));
    let until = deadline(base, &plan);
    let pad = "x".repeat(plan.body_bytes.saturating_sub(24));
    let mut pace = (plan.rate > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate)));
    let mut out = String::with_capacity(256 + pad.len());
    for k in 0..plan.messages {
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        match tokio::time::timeout_at(until, pair.window.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            _ => break,
        }
        let now = base.elapsed().as_micros() as u64;
        out.clear();
        out.push_str(&chat_message(&to, k, now, &pad));
        if plan.ack_every > 0 {
            sent_at.lock().unwrap_or_else(|p| p.into_inner()).push_back(now);
            if (k + 1) % plan.ack_every == 0 || k + 1 == plan.messages {
                out.push_str("<r xmlns='urn:xmpp:sm:3'/>");
            }
        }
        // TLS buffers what it is given; without a flush the tail could wait there while the
        // sender waits for the window, which only the delivery of that tail would open.
        if writer.write_all(out.as_bytes()).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
    let _ = writer.flush().await;
    // Closing now could lose the tail: a socket closed with unread input is reset, and the
    // server drops what it had not read yet. The reader keeps it open until the receiver stops.
    let _ = replies.await;
    drop(writer);
}

/// Reads what comes back to a sender until the receiver stopped and, with stream management,
/// every message was acknowledged: acknowledgements, and bounces (each frees a place in the
/// window when that counts deliveries).
async fn read_replies(
    mut reader: Wire<ReadHalf<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>,
    sent_at: Arc<Mutex<VecDeque<u64>>>,
    base: Instant,
    pair: Arc<Pair>,
    tally: Arc<Mutex<Tally>>,
    plan: ChatPlan,
) {
    let (sm, total, until) = (plan.ack_every > 0, plan.messages, deadline(base, &plan));
    let (mut acked, mut received) = (0usize, false);
    let mut latencies = Vec::with_capacity(if sm { total } else { 0 });
    while !received || (sm && acked < total) {
        let el = tokio::select! {
            el = tokio::time::timeout_at(until, reader.element()) => match el {
                Ok(Ok(el)) => el,
                _ => break,
            },
            () = pair.received.notified(), if !received => {
                received = true;
                continue;
            }
        };
        if el.name == "message" && el.attr("type") == Some("error") {
            tally.lock().unwrap_or_else(|p| p.into_inner()).bounced += 1;
            pair.bounced.fetch_add(1, Ordering::Relaxed);
            pair.bounce.notify_one();
            if !sm {
                pair.window.add_permits(1);
            }
            continue;
        }
        let Some(h) = el.attr("h").filter(|_| el.name == "a").and_then(|h| h.parse::<usize>().ok()) else {
            continue;
        };
        let now = base.elapsed().as_micros() as u64;
        let mut pending = sent_at.lock().unwrap_or_else(|p| p.into_inner());
        for _ in acked..h {
            if let Some(at) = pending.pop_front() {
                latencies.push(u32::try_from(now.saturating_sub(at)).unwrap_or(u32::MAX));
            }
        }
        drop(pending);
        pair.window.add_permits(h.saturating_sub(acked));
        acked = acked.max(h);
    }
    tally.lock().unwrap_or_else(|p| p.into_inner()).ack_us.extend(latencies);
}

/// Reads the messages, checking order and duplicates and measuring latency.
pub(crate) async fn receive(
    mut session: Session,
    plan: ChatPlan,
    base: Instant,
    pair: Arc<Pair>,
    tally: Arc<Mutex<Tally>>,
) {
    let (mut handled, mut next, mut delivered, mut duplicated, mut reordered) = (0u32, 0usize, 0, 0, 0);
    let mut seen = vec![false; plan.messages];
    let mut latencies = Vec::with_capacity(plan.messages);
    let until = deadline(base, &plan);
    while delivered + pair.bounced.load(Ordering::Relaxed) < plan.messages {
        let el = tokio::select! {
            el = tokio::time::timeout_at(until, session.element()) => match el {
                Ok(Ok(el)) => el,
                _ => break,
            },
            () = pair.bounce.notified() => continue,
        };
        match el.name.as_str() {
            "r" if plan.ack_every > 0
                && session.send(&format!("<a xmlns='urn:xmpp:sm:3' h='{handled}'/>")).await.is_err() =>
            {
                break;
            }
            "iq" if el.attr("type") == Some("get") => {
                handled = handled.wrapping_add(1);
                let (id, from) = (el.attr("id").unwrap_or_default(), el.attr("from").unwrap_or_default());
                let _ = session.send(&format!("<iq type='result' id='{id}' to='{from}'/>")).await;
            }
            "message" => {
                handled = handled.wrapping_add(1);
                let body = el.get_child("body", "jabber:client").map(|b| b.text()).unwrap_or_default();
                let mut fields = body.splitn(3, ':');
                let (Some(Ok(k)), Some(Ok(at))) =
                    (fields.next().map(str::parse::<usize>), fields.next().map(str::parse::<u64>))
                else {
                    continue;
                };
                let now = base.elapsed().as_micros() as u64;
                match seen.get_mut(k) {
                    Some(true) => duplicated += 1,
                    Some(slot) => {
                        *slot = true;
                        delivered += 1;
                        if k != next {
                            reordered += 1;
                        }
                        next = k + 1;
                        latencies.push(u32::try_from(now.saturating_sub(at)).unwrap_or(u32::MAX));
                        if plan.ack_every == 0 {
                            pair.window.add_permits(1);
                        }
                    }
                    None => {}
                }
            }
            "presence" | "iq" => handled = handled.wrapping_add(1),
            _ => {}
        }
    }
    if plan.ack_every > 0 {
        // Acknowledge the tail so that the server can let go of it.
        let _ = session.send(&format!("<a xmlns='urn:xmpp:sm:3' h='{handled}'/>")).await;
    }
    pair.received.notify_one();
    let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
    tally.delivery_us.extend(latencies);
    tally.delivered += delivered;
    tally.duplicated += duplicated;
    tally.reordered += reordered;
}
