//! The `muc` scenario (XEP-0045): M occupants enter one room, then S of them send groupchat
//! messages that the room reflects to all M.
//!
//! Joining: every occupant logs in first (not timed); then the first one enters alone, which
//! creates the room; if the server reports a new locked room (status 201) it submits the
//! owner's form, empty for an instant room or with the `--room-config` fields, and is in
//! once the server accepts it; otherwise it enters like anyone else. Then the others enter, at
//! most `join_concurrency` at a time (1: one after the other). An entry ends with the subject
//! message, which servers send after the occupants' presence and the history (none is asked
//! for: `<history maxstanzas='0'/>`). The join time runs from the creator's entry to the last
//! entry.
//!
//! Messages: each sender sends N groupchat messages, keeping at most W of them not yet
//! reflected back to itself, and with `--rate R` pacing itself to R messages per second.
//! Each body carries the sender's number, a sequence number and the send time, so every
//! occupant counts deliveries, duplicates and reordering per sender and measures latency
//! into a histogram shared by all occupants (no per-delivery allocation beyond parsing).
//!
//! One task per connection reads it; a sender's writing half runs in a second task, released
//! by the reading one as the sender's own messages come back.

use crate::client::{Session, Target, login};
use starling::xml::{Element, FrameEvent, Node};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::{Semaphore, mpsc, watch};

const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_USER: &str = "http://jabber.org/protocol/muc#user";
const NS_CLIENT: &str = "jabber:client";
const CREATE_ID: &str = "bench-create-room";

type Writer = WriteHalf<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// What one run does.
#[derive(Clone, Debug)]
pub struct MucPlan {
    pub occupants: usize,
    pub senders: usize,
    /// Messages per sender.
    pub messages: usize,
    pub window: usize,
    /// Messages per second per sender; 0 for as fast as the window allows.
    pub rate: f64,
    /// Body length in bytes (at least what the numbers and time need).
    pub body_bytes: usize,
    /// Entries under way at once; 1 for one after the other.
    pub join_concurrency: usize,
    /// The room's bare JID.
    pub room: String,
    /// Configuration fields (`var=value`) for a new locked room; none for the defaults.
    pub room_config: Vec<String>,
    /// Logins under way at once.
    pub login_concurrency: usize,
    /// Give up on the messages after this long.
    pub deadline: Duration,
    /// The server's process, to report its CPU time.
    pub server_pid: Option<u32>,
}

/// What an occupant's task reports to the coordinator.
enum Event {
    LoggedIn(Result<(), String>),
    /// Time from sending the entry presence to the end of the entry, in microseconds.
    Joined(Result<u64, String>),
    /// Everything expected arrived (`Ok`), or the connection ended first.
    Done(Result<(), String>),
}

/// State shared by the occupants' tasks.
struct Shared {
    target: Target,
    plan: MucPlan,
    /// The owner's form for a new room.
    form: String,
    prefix: String,
    password: String,
    base: Instant,
    logins: Semaphore,
    /// One permit, for the creator, once everybody is logged in.
    create: Semaphore,
    /// `join_concurrency` permits once the room exists.
    join: Semaphore,
    latency: Histogram,
    delivered: AtomicUsize,
    duplicated: AtomicUsize,
    reordered: AtomicUsize,
    /// Message errors bounced by the room.
    errors: AtomicUsize,
}

impl Shared {
    /// Counts a message the room bounced; prints the first few.
    fn bounced(&self, el: &Element) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 3 {
            eprintln!("message error: {el}");
        }
    }
}

/// Runs the scenario with accounts `<prefix>0` … `<prefix>{M-1}`, the first S being the
/// senders; returns the JSON fields of the result.
pub async fn run(target: &Target, prefix: &str, password: &str, plan: MucPlan) -> Result<String, String> {
    let m = plan.occupants;
    let shared = Arc::new(Shared {
        target: target.clone(),
        plan: plan.clone(),
        form: room_form(&plan.room_config)?,
        prefix: prefix.to_owned(),
        password: password.to_owned(),
        base: Instant::now(),
        logins: Semaphore::new(plan.login_concurrency.max(1)),
        create: Semaphore::new(0),
        join: Semaphore::new(0),
        latency: Histogram::new(),
        delivered: AtomicUsize::new(0),
        duplicated: AtomicUsize::new(0),
        reordered: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
    });
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (start_tx, start_rx) = watch::channel(false);
    for index in 0..m {
        tokio::spawn(occupant(shared.clone(), index, start_rx.clone(), events_tx.clone()));
    }
    drop(events_tx);
    let mut next = async || events.recv().await.ok_or_else(|| "occupant tasks ended".to_string());

    for _ in 0..m {
        if let Event::LoggedIn(Err(e)) = next().await? {
            return Err(e);
        }
    }
    let (bench_clock, server_clock) = (crate::CpuClock::own(), crate::CpuClock::server(plan.server_pid));
    let join_start = Instant::now();
    shared.create.add_permits(1);
    let mut join_each_us = Vec::with_capacity(m);
    for entered in 0..m {
        match next().await? {
            Event::Joined(Ok(us)) => join_each_us.push(u32::try_from(us).unwrap_or(u32::MAX)),
            Event::Joined(Err(e)) | Event::Done(Err(e)) => return Err(e),
            _ => {}
        }
        if entered == 0 {
            shared.join.add_permits(plan.join_concurrency.max(1));
        }
    }
    let join_ms = join_start.elapsed().as_secs_f64() * 1000.0;
    let (join_bench_cpu, join_server_cpu) = (bench_clock.json(), server_clock.json());

    tokio::time::sleep(Duration::from_millis(500)).await; // presence traffic settles
    let (bench_clock, server_clock) = (crate::CpuClock::own(), crate::CpuClock::server(plan.server_pid));
    let start = Instant::now();
    let _ = start_tx.send(true);
    let (mut done, mut disconnected) = (0usize, 0usize);
    let waiting = async {
        while done + disconnected < m {
            match next().await {
                Ok(Event::Done(Ok(()))) => done += 1,
                Ok(Event::Done(Err(e))) => {
                    if disconnected < 5 {
                        eprintln!("{e}");
                    }
                    disconnected += 1;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    };
    let timed_out = tokio::time::timeout(plan.deadline, waiting).await.is_err();
    let elapsed = start.elapsed().as_secs_f64();
    let (bench_cpu, server_cpu) = (bench_clock.json(), server_clock.json());

    let messages = plan.senders * plan.messages;
    let expected = messages * m;
    let delivered = shared.delivered.load(Ordering::Relaxed);
    Ok(format!(
        "\"occupants\":{m},\"senders\":{},\"messages_per_sender\":{},\"messages\":{messages},\"window\":{},\
         \"rate_per_sender\":{},\"join\":\"{}\",\"join_concurrency\":{},\"join_ms\":{join_ms:.1},\
         \"join_each_ms\":{},\"join_bench_cpu_s\":{join_bench_cpu},\"join_server_cpu_s\":{join_server_cpu},\"expected\":{expected},\"delivered\":{delivered},\
         \"lost\":{},\"duplicated\":{},\"reordered\":{},\"errors\":{},\"disconnected\":{disconnected},\
         \"timed_out\":{timed_out},\"seconds\":{elapsed:.3},\"deliveries_per_s\":{:.1},\"messages_per_s\":{:.1},\
         \"latency_ms\":{},\"room_config\":\"{}\",\"bench_cpu_s\":{bench_cpu},\"server_cpu_s\":{server_cpu}",
        plan.senders,
        plan.messages,
        plan.window,
        plan.rate,
        if plan.join_concurrency <= 1 { "sequential" } else { "concurrent" },
        plan.join_concurrency.max(1),
        crate::chat::percentiles(&mut join_each_us),
        expected.saturating_sub(delivered),
        shared.duplicated.load(Ordering::Relaxed),
        shared.reordered.load(Ordering::Relaxed),
        shared.errors.load(Ordering::Relaxed),
        delivered as f64 / elapsed,
        messages as f64 / elapsed,
        shared.latency.percentiles(),
        plan.room_config.join(",").replace(['"', '\\'], ""),
    ))
}

/// One occupant: logs in, waits for its turn, enters, then reads until the end.
async fn occupant(
    shared: Arc<Shared>,
    index: usize,
    start: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<Event>,
) {
    let user = format!("{}{index}", shared.prefix);
    let permit = shared.logins.acquire().await;
    let session = login(&shared.target, &user, &shared.password, None).await;
    drop(permit);
    let mut session = match session {
        Ok(session) => session,
        Err(e) => {
            let _ = events.send(Event::LoggedIn(Err(format!("{user}: login: {e}"))));
            return;
        }
    };
    let _ = events.send(Event::LoggedIn(Ok(())));
    let Ok(permit) = (if index == 0 { &shared.create } else { &shared.join }).acquire().await else { return };
    let began = shared.base.elapsed();
    let entered = enter(&mut session, &shared.plan.room, &user, &shared.form).await;
    drop(permit);
    if let Err(e) = entered {
        let _ = events.send(Event::Joined(Err(format!("{user}: entering {}: {e}", shared.plan.room))));
        return;
    }
    let _ = events.send(Event::Joined(Ok((shared.base.elapsed() - began).as_micros() as u64)));

    let (reader, writer) = session.split();
    let sender = index < shared.plan.senders;
    let window = Arc::new(Semaphore::new(if sender { shared.plan.window } else { 0 }));
    // A sender's writing half goes to its own task; the others keep theirs to answer pings.
    let mut writer = if sender {
        tokio::spawn(send(writer, index, shared.clone(), window.clone(), start));
        None
    } else {
        Some(writer)
    };
    if let Err(e) = receive(reader, &mut writer, index, &shared, &window, &events).await {
        let _ = events.send(Event::Done(Err(format!("{user}: {e}"))));
    }
}

/// Enters the room as `nick`; creates it (and unlocks it) when it is new.
async fn enter(session: &mut Session, room: &str, nick: &str, form: &str) -> Result<(), String> {
    session
        .send(&format!("<presence to='{room}/{nick}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>"))
        .await?;
    let (mut own_presence, mut subject, mut state) = (false, false, Form::None);
    loop {
        let el = session.element_where(&mut worth_building_on_entry).await?;
        let from_room = el.attr("from").is_some_and(|from| from.split('/').next() == Some(room));
        match el.name.as_str() {
            "presence" if from_room => {
                if el.attr("type") == Some("error") {
                    return Err(format!("refused: {el}"));
                }
                if has_status(&el, "110") {
                    own_presence = true;
                    if has_status(&el, "201") && state == Form::None {
                        // A new room, locked until its owner configures it: the defaults, or the
                        // fields asked for.
                        session
                            .send(&format!(
                                "<iq type='set' id='{CREATE_ID}' to='{room}'><query xmlns='{NS_MUC}#owner'>{form}</query></iq>"
                            ))
                            .await?;
                        state = Form::Sent;
                    }
                }
            }
            "message" if from_room && el.has_child("subject", NS_CLIENT) && !el.has_child("body", NS_CLIENT) => {
                subject = true;
            }
            "message" if from_room && el.attr("type") == Some("error") => return Err(format!("refused: {el}")),
            "iq" if el.attr("id") == Some(CREATE_ID) => {
                if el.attr("type") != Some("result") {
                    return Err(format!("room configuration form refused: {el}"));
                }
                state = Form::Accepted;
            }
            "iq" if matches!(el.attr("type"), Some("get" | "set")) => session.send(&iq_result(&el)).await?,
            _ => {}
        }
        // A creator is in once the room is unlocked, whether or not a subject came first.
        if own_presence && state != Form::Sent && (subject || state == Form::Accepted) {
            return Ok(());
        }
    }
}

/// The owner's form for a new room: an empty submission takes the defaults (an instant
/// room, XEP-0045 §10.1.2); `var=value` pairs set room configuration fields.
pub fn room_form(fields: &[String]) -> Result<String, String> {
    if fields.is_empty() {
        return Ok("<x xmlns='jabber:x:data' type='submit'/>".into());
    }
    let mut form = String::from(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>\
         <value>http://jabber.org/protocol/muc#roomconfig</value></field>",
    );
    for field in fields {
        let (var, value) =
            field.split_once('=').ok_or_else(|| format!("room configuration '{field}': not var=value"))?;
        let _ = write!(form, "<field var='{}'><value>{}</value></field>", escape(var), escape(value));
    }
    form.push_str("</x>");
    Ok(form)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    None,
    Sent,
    Accepted,
}

fn has_status(presence: &Element, code: &str) -> bool {
    let Some(x) = presence.get_child("x", NS_USER) else { return false };
    x.child_elements().any(|e| e.name == "status" && e.attr("code") == Some(code))
}

fn iq_result(iq: &Element) -> String {
    let (id, from) = (iq.attr("id").unwrap_or_default(), iq.attr("from").unwrap_or_default());
    format!("<iq type='result' id='{id}' to='{from}'/>")
}

/// The first text of an element, without copying it.
fn first_text(el: &Element) -> &str {
    el.children.iter().find_map(|n| if let Node::Text(t) = n { Some(t.as_str()) } else { None }).unwrap_or_default()
}

/// Parses `sender:sequence:micros:` at the start of a body.
fn parse_body(body: &str) -> Option<(usize, usize, u64)> {
    let mut fields = body.splitn(4, ':');
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// Counts the room's messages until every sender's every message arrived (then reports
/// `Done`), and keeps reading (so that the server is never blocked on this connection) until
/// the connection ends; an error if it ends before everything arrived.
async fn receive(
    mut reader: crate::client::Wire<tokio::io::ReadHalf<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>,
    writer: &mut Option<Writer>,
    me: usize,
    shared: &Shared,
    window: &Semaphore,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), String> {
    let mut tally = Tally::new(shared, me, window, events);
    loop {
        let event = reader.next_where(&mut |raw| tally.worth_building(raw)).await;
        let el = match event {
            Ok(FrameEvent::Element(el)) => el,
            Ok(FrameEvent::StreamOpen(_)) => continue,
            _ if tally.complete() => return Ok(()),
            Ok(FrameEvent::StreamClose) => return Err("stream closed by server".into()),
            Err(e) => return Err(e),
        };
        match el.name.as_str() {
            "message" if el.attr("type") == Some("error") => shared.bounced(&el),
            "message" => {
                if let Some(body) = el.get_child("body", NS_CLIENT) {
                    tally.count(first_text(body));
                }
            }
            "iq" if matches!(el.attr("type"), Some("get" | "set")) => {
                if let Some(writer) = writer.as_mut() {
                    let reply = iq_result(&el);
                    if writer.write_all(reply.as_bytes()).await.is_err() || writer.flush().await.is_err() {
                        return if tally.complete() { Ok(()) } else { Err("connection closed".into()) };
                    }
                }
            }
            _ => {}
        }
    }
}

/// What one occupant received of the room's messages.
struct Tally<'a> {
    shared: &'a Shared,
    me: usize,
    window: &'a Semaphore,
    events: &'a mpsc::UnboundedSender<Event>,
    /// One bit per message of every sender.
    seen: Vec<u64>,
    /// Per sender, the sequence number expected next.
    next: Vec<usize>,
    delivered: usize,
    expected: usize,
}

impl<'a> Tally<'a> {
    fn new(
        shared: &'a Shared,
        me: usize,
        window: &'a Semaphore,
        events: &'a mpsc::UnboundedSender<Event>,
    ) -> Tally<'a> {
        let plan = &shared.plan;
        let expected = plan.senders * plan.messages;
        Tally {
            shared,
            me,
            window,
            events,
            seen: vec![0; expected.div_ceil(64)],
            next: vec![0; plan.senders],
            delivered: 0,
            expected,
        }
    }

    fn complete(&self) -> bool {
        self.delivered == self.expected
    }

    /// Whether a received element needs building. Presences are not looked at once inside;
    /// a room message whose body can be read from its bytes is counted from them, so that
    /// reading 1024 copies of every message costs the load generator little.
    fn worth_building(&mut self, raw: &[u8]) -> bool {
        if raw.starts_with(b"<presence") {
            return false;
        }
        if raw.starts_with(b"<message")
            && !contains(raw, b"error")
            && let Some(body) = raw_body(raw)
        {
            self.count(body);
            return false;
        }
        true
    }

    /// Counts one message body `sender:sequence:micros:…`: a delivery, a duplicate or
    /// another sender's unknown message (ignored).
    fn count(&mut self, body: &str) {
        let plan = &self.shared.plan;
        let Some((s, k, at)) = parse_body(body) else { return };
        if s >= plan.senders || k >= plan.messages {
            return;
        }
        let bit = s * plan.messages + k;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        if self.seen[word] & mask != 0 {
            self.shared.duplicated.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.seen[word] |= mask;
        self.shared.latency.record((self.shared.base.elapsed().as_micros() as u64).saturating_sub(at));
        self.shared.delivered.fetch_add(1, Ordering::Relaxed);
        if k != self.next[s] {
            self.shared.reordered.fetch_add(1, Ordering::Relaxed);
        }
        self.next[s] = k + 1;
        if s == self.me {
            self.window.add_permits(1);
        }
        self.delivered += 1;
        if self.complete() {
            let _ = self.events.send(Event::Done(Ok(())));
        }
    }
}

/// Whether an element received while entering needs building: the others' presence (for
/// 1024 entries, 1,047,552 presences in all) is skipped unless its bytes could hold what an
/// entry waits for, an error or the status codes of one's own presence.
fn worth_building_on_entry(raw: &[u8]) -> bool {
    !raw.starts_with(b"<presence") || contains(raw, b"<status") || contains(raw, b"error")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    crate::find_bytes(haystack, needle).is_some()
}

/// The text of a message's `<body>` read from the bytes, when it has no markup or entity
/// in it (the load generator's own bodies never do); `None` when it must be parsed.
fn raw_body(raw: &[u8]) -> Option<&str> {
    let at = crate::find_bytes(raw, b"<body>").or_else(|| crate::find_bytes(raw, b"<body "))?;
    let open_end = at + raw[at..].iter().position(|&b| b == b'>')? + 1;
    let len = raw[open_end..].iter().position(|&b| b == b'<')?;
    let text = &raw[open_end..open_end + len];
    if raw[open_end + len..].starts_with(b"</body>") && !text.contains(&b'&') {
        std::str::from_utf8(text).ok()
    } else {
        None
    }
}

/// Writes a sender's messages once the coordinator says go.
async fn send(
    mut writer: Writer,
    me: usize,
    shared: Arc<Shared>,
    window: Arc<Semaphore>,
    mut start: watch::Receiver<bool>,
) {
    if start.wait_for(|go| *go).await.is_err() {
        return;
    }
    let plan = &shared.plan;
    let pad = "x".repeat(plan.body_bytes.saturating_sub(32));
    let mut pace = (plan.rate > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate)));
    let mut out = String::with_capacity(256 + plan.room.len() + pad.len());
    for k in 0..plan.messages {
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        match window.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return,
        }
        let now = shared.base.elapsed().as_micros() as u64;
        out.clear();
        let _ = write!(
            out,
            "<message to='{}' type='groupchat' id='{me}-{k}'><body>{me}:{k}:{now}:{pad}</body></message>",
            plan.room
        );
        // Flushed at once: the window opens only when this message comes back.
        if writer.write_all(out.as_bytes()).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
}

/// A latency histogram in microseconds, shared by all occupants: exact below 128 µs, then
/// 64 buckets per power of two (under 1.6 % error), up to u32::MAX µs.
struct Histogram {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
    count: AtomicU64,
}

const LINEAR: u64 = 128;
const PER_OCTAVE: u64 = 64;
const BUCKETS: usize = (LINEAR + (31 - 7 + 1) * PER_OCTAVE) as usize;

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn index(us: u64) -> usize {
        let us = us.min(u64::from(u32::MAX));
        if us < LINEAR {
            return us as usize;
        }
        let octave = 63 - u64::from(us.leading_zeros()); // 7 ..= 31
        let top = us >> (octave - 6); // 64 ..= 127
        (LINEAR + (octave - 7) * PER_OCTAVE + (top - PER_OCTAVE)) as usize
    }

    /// The middle of a bucket.
    fn value(index: usize) -> u64 {
        let index = index as u64;
        if index < LINEAR {
            return index;
        }
        let (octave, top) = ((index - LINEAR) / PER_OCTAVE + 7, (index - LINEAR) % PER_OCTAVE + PER_OCTAVE);
        let width = 1u64 << (octave - 6);
        top * width + width / 2
    }

    fn record(&self, us: u64) {
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// p50, p90, p99 and max in milliseconds, as the other scenarios print them.
    fn percentiles(&self) -> String {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return "null".into();
        }
        let at = |q: f64| {
            let rank = ((count - 1) as f64 * q).round() as u64;
            let mut seen = 0;
            for (i, bucket) in self.buckets.iter().enumerate() {
                seen += bucket.load(Ordering::Relaxed);
                if seen > rank {
                    return Self::value(i) as f64 / 1000.0;
                }
            }
            0.0
        };
        let max = self.max.load(Ordering::Relaxed) as f64 / 1000.0;
        format!("{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"max\":{max:.3}}}", at(0.5), at(0.9), at(0.99))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_ordered_and_close() {
        let mut last = 0;
        for us in [0u64, 1, 127, 128, 129, 255, 256, 1000, 12_345, 1 << 20, u64::from(u32::MAX)] {
            let i = Histogram::index(us);
            assert!(i >= last && i < BUCKETS, "{us}");
            last = i;
            let v = Histogram::value(i) as f64;
            assert!((v - us as f64).abs() <= us as f64 * 0.016 + 0.5, "{us} -> {v}");
        }
    }

    #[test]
    fn percentiles_of_known_samples() {
        let h = Histogram::new();
        for us in 1..=100u64 {
            h.record(us * 10);
        }
        assert_eq!(h.percentiles(), "{\"p50\":0.510,\"p90\":0.900,\"p99\":0.988,\"max\":1.000}");
    }

    #[test]
    fn bodies_parse() {
        assert_eq!(parse_body("3:17:123456:xxxx"), Some((3, 17, 123456)));
        assert_eq!(parse_body("3:17:123456:"), Some((3, 17, 123456)));
        assert_eq!(parse_body("hello"), None);
    }

    #[test]
    fn bodies_are_read_from_bytes_only_when_plain() {
        let read = |xml: &str| raw_body(xml.as_bytes()).map(str::to_owned);
        assert_eq!(
            read("<message from='r@c/a' type='groupchat'><body>1:2:3:xx</body></message>"),
            Some("1:2:3:xx".into())
        );
        assert_eq!(read("<message><body xml:lang='en'>1:2:3:</body><bodyx/></message>"), Some("1:2:3:".into()));
        assert_eq!(read("<message><bodyx>1</bodyx></message>"), None);
        assert_eq!(read("<message><body>a &amp; b</body></message>"), None, "entities need the parser");
        assert_eq!(read("<message><body>a<b/>c</body></message>"), None, "markup needs the parser");
        assert_eq!(read("<message><subject>s</subject></message>"), None);
    }

    #[test]
    fn an_entry_reads_only_presences_that_may_matter() {
        let others = b"<presence from='r@c/n'><x xmlns='http://jabber.org/protocol/muc#user'>\
            <item affiliation='none' role='participant'/></x></presence>";
        assert!(!worth_building_on_entry(others));
        assert!(worth_building_on_entry(b"<presence from='r@c/me'><x><status code='110'/></x></presence>"));
        assert!(worth_building_on_entry(b"<presence type='error' from='r@c/me'/>"));
        assert!(worth_building_on_entry(b"<message from='r@c'><subject/></message>"));
        assert!(contains(b"abc", b"bc") && !contains(b"abc", b"cb") && contains(b"abc", b""));
    }
}
