//! The `chat` scenario: P sender/receiver pairs of logged-in, available sessions; each sender
//! sends M messages to its receiver's bare JID, keeping at most W in flight.
//!
//! In flight means not yet acknowledged by the server when stream management is on
//! (`--ack-every N`: the sender enables XEP-0198 and sends `<r/>` after every N messages, as
//! phone clients do), otherwise not yet delivered. With `--rate R` each sender paces itself to
//! R messages per second; without it senders go as fast as the window allows.
//!
//! Each body carries the message's sequence number and send time, so receivers measure
//! delivery latency and count lost, duplicated and reordered messages; senders measure the
//! time from send to acknowledgement. Receivers with stream management answer the server's
//! `<r/>`, which lets a server that keeps messages until delivery release them.

use crate::client::{Session, Target, Wire, login};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, ReadHalf};
use tokio::sync::Semaphore;

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
}

/// Latencies in microseconds, and counts.
#[derive(Default)]
struct Tally {
    delivery_us: Vec<u32>,
    ack_us: Vec<u32>,
    delivered: usize,
    duplicated: usize,
    reordered: usize,
}

/// Runs the scenario with accounts `<prefix><2i>` (senders) and `<prefix><2i+1>`
/// (receivers); returns the JSON fields of the result.
pub async fn run(target: &Target, prefix: &str, password: &str, plan: ChatPlan) -> Result<String, String> {
    let sm = plan.ack_every > 0;
    let mut senders = Vec::with_capacity(plan.pairs);
    let mut receivers = Vec::with_capacity(plan.pairs);
    for i in 0..plan.pairs {
        receivers.push(connect(target, &format!("{prefix}{}", 2 * i + 1), password, sm).await?);
        senders.push(connect(target, &format!("{prefix}{}", 2 * i), password, sm).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // presence traffic settles
    let tally = Arc::new(Mutex::new(Tally::default()));
    let base = Instant::now();
    let cpu_before = crate::own_cpu_seconds();
    let mut tasks = Vec::new();
    for (i, (sender, receiver)) in senders.into_iter().zip(receivers).enumerate() {
        let window = Arc::new(Semaphore::new(plan.window));
        let to = format!("{prefix}{}@{}", 2 * i + 1, target.domain);
        tasks.push(tokio::spawn(receive(receiver, plan.clone(), base, window.clone(), tally.clone())));
        tasks.push(tokio::spawn(send(sender, to, plan.clone(), base, window, tally.clone())));
    }
    let all = futures_util::future::join_all(tasks);
    let timed_out = tokio::time::timeout(plan.deadline, all).await.is_err();
    let elapsed = base.elapsed().as_secs_f64();
    let bench_cpu = crate::own_cpu_seconds() - cpu_before;
    let mut tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    let expected = plan.pairs * plan.messages;
    let lost = expected.saturating_sub(tally.delivered);
    Ok(format!(
        "\"pairs\":{},\"messages_per_sender\":{},\"window\":{},\"stream_management\":{sm},\"ack_every\":{},\
         \"rate_per_sender\":{},\"expected\":{expected},\"delivered\":{},\"lost\":{lost},\"duplicated\":{},\
         \"reordered\":{},\"timed_out\":{timed_out},\"seconds\":{elapsed:.3},\"delivered_per_sec\":{:.1},\
         \"delivery_ms\":{},\"ack_ms\":{},\"bench_cpu_s\":{bench_cpu:.2}",
        plan.pairs,
        plan.messages,
        plan.window,
        plan.ack_every,
        plan.rate,
        tally.delivered,
        tally.duplicated,
        tally.reordered,
        tally.delivered as f64 / elapsed,
        percentiles(&mut tally.delivery_us),
        percentiles(&mut tally.ack_us),
    ))
}

pub(crate) fn percentiles(samples: &mut [u32]) -> String {
    if samples.is_empty() {
        return "null".into();
    }
    samples.sort_unstable();
    let at = |q: f64| f64::from(samples[((samples.len() - 1) as f64 * q).round() as usize]) / 1000.0;
    format!("{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3}}}", at(0.5), at(0.9), at(0.99), at(1.0))
}

async fn connect(target: &Target, user: &str, password: &str, sm: bool) -> Result<Session, String> {
    let mut session = login(target, user, password, None).await?;
    if sm {
        session.send("<enable xmlns='urn:xmpp:sm:3'/>").await?;
        while session.element().await?.name != "enabled" {}
    }
    Ok(session)
}

/// Writes the messages; with stream management, a reader counts the acknowledgements.
async fn send(
    session: Session,
    to: String,
    plan: ChatPlan,
    base: Instant,
    window: Arc<Semaphore>,
    tally: Arc<Mutex<Tally>>,
) {
    let (reader, mut writer) = session.split();
    let sent_at = Arc::new(Mutex::new(VecDeque::with_capacity(plan.window)));
    let acks = (plan.ack_every > 0)
        .then(|| tokio::spawn(read_acks(reader, sent_at.clone(), base, window.clone(), tally, plan.messages)));
    let pad = "x".repeat(plan.body_bytes.saturating_sub(24));
    let mut pace = (plan.rate > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate)));
    let mut out = String::with_capacity(256 + pad.len());
    for k in 0..plan.messages {
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        match window.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return,
        }
        let now = base.elapsed().as_micros() as u64;
        out.clear();
        out.push_str(&format!("<message to='{to}' type='chat' id='{k}'><body>{k}:{now}:{pad}</body></message>"));
        if plan.ack_every > 0 {
            sent_at.lock().unwrap_or_else(|p| p.into_inner()).push_back(now);
            if (k + 1) % plan.ack_every == 0 || k + 1 == plan.messages {
                out.push_str("<r xmlns='urn:xmpp:sm:3'/>");
            }
        }
        // TLS buffers what it is given; without a flush the tail could wait there while the
        // sender waits for the window, which only the delivery of that tail would open.
        if writer.write_all(out.as_bytes()).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
    match acks {
        Some(acks) => {
            let _ = acks.await;
        }
        // Closing now could lose the tail: a socket closed with unread input is reset, and the
        // server drops what it had not read yet. Stay until everything was delivered.
        None => {
            let _ = window.acquire_many(plan.window as u32).await;
        }
    }
    drop(writer);
}

async fn read_acks(
    mut reader: Wire<ReadHalf<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>,
    sent_at: Arc<Mutex<VecDeque<u64>>>,
    base: Instant,
    window: Arc<Semaphore>,
    tally: Arc<Mutex<Tally>>,
    total: usize,
) {
    let mut acked = 0usize;
    let mut latencies = Vec::with_capacity(total);
    while acked < total {
        let Ok(el) = reader.element().await else { break };
        // Only acknowledgements matter: the sender is sent nothing it must count.
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
        window.add_permits(h.saturating_sub(acked));
        acked = acked.max(h);
    }
    tally.lock().unwrap_or_else(|p| p.into_inner()).ack_us.extend(latencies);
}

/// Reads the messages, checking order and duplicates and measuring latency.
async fn receive(
    mut session: Session,
    plan: ChatPlan,
    base: Instant,
    window: Arc<Semaphore>,
    tally: Arc<Mutex<Tally>>,
) {
    let (mut handled, mut next, mut delivered, mut duplicated, mut reordered) = (0u32, 0usize, 0, 0, 0);
    let mut seen = vec![false; plan.messages];
    let mut latencies = Vec::with_capacity(plan.messages);
    while delivered < plan.messages {
        let Ok(el) = session.element().await else { break };
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
                            window.add_permits(1);
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
    let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
    tally.delivery_us.extend(latencies);
    tally.delivered += delivered;
    tally.duplicated += duplicated;
    tally.reordered += reordered;
}
