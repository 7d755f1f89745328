//! `starling-bench`: a load generator that speaks plain standard XMPP, so that it drives any
//! server (Starling, Prosody, ejabberd) the same way. Each scenario prints one JSON line.
//!
//! `chat`: see [`chat`]: P pairs exchange messages; delivered messages per second, delivery
//! and acknowledgement latency, lost and duplicated counts. With `--peer-server` and
//! `--peer-domain` the receivers are on a second server, so that messages cross one
//! server-to-server link.
//!
//! `login`: opens N sessions (TLS, SASL, bind, presence) with bounded concurrency, reports
//! logins per second, keeps them idle, and reads the server's resident memory before and
//! after (`--server-pid`) to give the memory cost of one idle session.
//!
//! `muc`: see [`muc`]: M occupants enter one room (join time), then S of them send groupchat
//! messages; deliveries per second, delivery latency, lost and duplicated counts.
//!
//! `offline`: see [`offline`]: K messages wait for each of U offline accounts, which then log
//! in; the time to store them and the time to drain them at login, lost and duplicated counts.
//!
//! `echo-server` and `echo`: see [`echo`]: a trivial TLS echo driven with the `chat`
//! scenario's messages, the ceiling for one-to-one chat on the same machine.

mod chat;
mod client;
mod echo;
mod muc;
mod offline;
mod scram;

use clap::{Parser, Subcommand};
use client::{AccountTickets, Target, idle, insecure_tls, login, register};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(name = "starling-bench", about = "XMPP load generator")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Server address (STARTTLS port, or direct TLS port with --direct-tls).
    #[arg(long, default_value = "127.0.0.1:5222")]
    server: SocketAddr,
    /// XMPP domain.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Use direct TLS (XEP-0368) instead of STARTTLS.
    #[arg(long)]
    direct_tls: bool,
    /// SASL mechanism: SCRAM-SHA-1, SCRAM-SHA-256 or PLAIN.
    #[arg(long, default_value = "SCRAM-SHA-256")]
    mech: String,
    /// Account name prefix; accounts are <prefix><n>.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Password of every account.
    #[arg(long, default_value = "bench-password")]
    password: String,
    /// Create the accounts first with in-band registration (XEP-0077).
    #[arg(long)]
    register: bool,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Local source addresses to spread connections over (e.g. 127.0.0.2,127.0.0.3).
    #[arg(long, value_delimiter = ',')]
    source: Vec<IpAddr>,
    /// PID of the server process (on this machine), to read its resident memory and CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Subcommand)]
enum Scenario {
    /// N idle sessions: logins per second and memory per session.
    Login {
        #[command(flatten)]
        common: Common,
        /// Number of sessions.
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// Seconds to stay idle before measuring memory.
        #[arg(long, default_value_t = 10)]
        idle: u64,
        /// Measure reconnections: every account logs in and out once first, unmeasured, and
        /// the measured logins reuse the SCRAM keys derived then (RFC 5802 §3) and offer that
        /// account's own TLS session ticket (RFC 8446 §2.2), as a client that keeps both does
        /// when it reconnects. Without it every handshake is a full one.
        #[arg(long)]
        reconnect: bool,
        /// With `--reconnect`: offer no TLS session ticket, so that every measured login makes
        /// a full TLS handshake while reusing the SCRAM keys. The server does all the work of
        /// a first login (it never derives keys at login), and the load generator spends no
        /// PBKDF2, which otherwise bounds its rate of first logins.
        #[arg(long, requires = "reconnect")]
        no_resume: bool,
    },
    /// P sender/receiver pairs: delivered messages per second and latencies.
    Chat {
        #[command(flatten)]
        common: Common,
        /// Sender/receiver pairs (accounts <prefix>0 … <prefix>{2P-1}).
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        /// Messages per sender.
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        /// Messages in flight per sender (unacknowledged with stream management, else undelivered).
        #[arg(long, default_value_t = 50)]
        window: usize,
        /// Enable stream management and request an acknowledgement every N messages (0: off).
        #[arg(long, default_value_t = 0)]
        ack_every: usize,
        /// Messages per second per sender (0: as fast as the window allows).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Body size in bytes.
        #[arg(long, default_value_t = 64)]
        body_bytes: usize,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        deadline: u64,
        /// Server of the receivers, when not --server: messages then cross a server-to-server link.
        #[arg(long, requires = "peer_domain")]
        peer_server: Option<SocketAddr>,
        /// XMPP domain of the receivers on --peer-server.
        #[arg(long, requires = "peer_server")]
        peer_domain: Option<String>,
    },
    /// M occupants in one room, S of them sending: join time, deliveries per second, latencies.
    Muc {
        #[command(flatten)]
        common: Common,
        /// Occupants (accounts <prefix>0 … <prefix>{M-1}; the first creates the room).
        #[arg(long, default_value_t = 100)]
        occupants: usize,
        /// Occupants that send (the first S).
        #[arg(long, default_value_t = 4)]
        senders: usize,
        /// Messages per sender.
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// Messages per sender not yet reflected back to it.
        #[arg(long, default_value_t = 10)]
        window: usize,
        /// Messages per second per sender (0: as fast as the window allows).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Body size in bytes.
        #[arg(long, default_value_t = 64)]
        body_bytes: usize,
        /// Entries under way at once (1: one after the other).
        #[arg(long, default_value_t = 32)]
        join_concurrency: usize,
        /// The room's local part.
        #[arg(long, default_value = "bench")]
        room: String,
        /// The MUC service's domain (default: conference.<domain>).
        #[arg(long)]
        service: Option<String>,
        /// Room configuration fields the creator submits for a new locked room, as var=value
        /// (e.g. muc#roomconfig_enablearchiving=0); none: the instant room's defaults.
        #[arg(long, value_delimiter = ',')]
        room_config: Vec<String>,
        /// Give up on the messages after this many seconds.
        #[arg(long, default_value_t = 300)]
        deadline: u64,
    },
    /// K messages for each of U offline accounts: time to store them, time to drain them at login.
    Offline {
        #[command(flatten)]
        common: Common,
        /// Offline accounts (odd accounts; the even ones send).
        #[arg(long, default_value_t = 10)]
        users: usize,
        /// Messages for each offline account.
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        /// Unacknowledged messages per sender.
        #[arg(long, default_value_t = 50)]
        window: usize,
        /// An ack request every N messages.
        #[arg(long, default_value_t = 10)]
        ack_every: usize,
        /// Body size in bytes.
        #[arg(long, default_value_t = 64)]
        body_bytes: usize,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        deadline: u64,
    },
    /// A trivial TLS echo server (the reference for `echo`); runs until killed.
    EchoServer {
        /// Address to listen on (direct TLS).
        #[arg(long, default_value = "127.0.0.1:15299")]
        listen: SocketAddr,
        /// PEM certificate chain.
        #[arg(long)]
        cert: std::path::PathBuf,
        /// PEM private key.
        #[arg(long)]
        key: std::path::PathBuf,
    },
    /// Chat-shaped messages through the TLS echo server: the ceiling for `chat`.
    Echo {
        /// The echo server's address.
        #[arg(long, default_value = "127.0.0.1:15299")]
        server: SocketAddr,
        /// Connections (one per chat pair).
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Messages per connection.
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        /// Messages per connection not yet returned.
        #[arg(long, default_value_t = 10)]
        window: usize,
        /// Body size in bytes.
        #[arg(long, default_value_t = 64)]
        body_bytes: usize,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        deadline: u64,
        /// The echo server's process id: its CPU time for the messages is reported.
        #[arg(long)]
        server_pid: Option<u32>,
    },
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The CPU time (user + system) a process uses from a starting point on: this one, or the
/// server when its PID is known.
pub(crate) struct CpuClock {
    /// The process's directory under /proc (`self` or a PID); none when unknown.
    process: Option<String>,
    before: f64,
}

impl CpuClock {
    /// This process (the load generator).
    pub(crate) fn own() -> CpuClock {
        CpuClock::start(Some("self".into()))
    }

    /// The server's process, if its PID was given.
    pub(crate) fn server(pid: Option<u32>) -> CpuClock {
        CpuClock::start(pid.map(|p| p.to_string()))
    }

    fn start(process: Option<String>) -> CpuClock {
        let before = process.as_deref().map_or(0.0, cpu_seconds);
        CpuClock { process, before }
    }

    /// Seconds used since the start, as a JSON number (`null` for an unknown process).
    pub(crate) fn json(&self) -> String {
        self.process.as_deref().map_or("null".into(), |p| format!("{:.2}", cpu_seconds(p) - self.before))
    }
}

/// Where `needle` first occurs in `haystack` (the load generator reads some replies from
/// their bytes instead of parsing them). Only positions holding the needle's first byte are
/// compared further: this runs over every byte of a room's presence flood.
pub(crate) fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let Some((&first, rest)) = needle.split_first() else { return Some(0) };
    (0..haystack.len()).find(|&i| haystack[i] == first && haystack[i + 1..].starts_with(rest))
}

/// CPU seconds (user + system) the process `pid` ("self" for this one) has used so far,
/// from /proc (clock ticks of 1/100 s).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn target(common: &Common) -> Result<Target, String> {
    let mech = scram::Mech::parse(&common.mech).ok_or_else(|| format!("unknown mechanism {}", common.mech))?;
    Ok(Target {
        addr: common.server,
        domain: common.domain.clone(),
        direct_tls: common.direct_tls,
        mech,
        tls: insecure_tls()?,
        keys: None,
        tickets: None,
    })
}

/// The target of `common`, with the accounts `<prefix>0` … `<prefix>{count-1}` created first
/// when `--register` is given.
async fn registered_target(common: &Common, count: usize) -> Result<Target, String> {
    let target = target(common)?;
    if common.register {
        register_all(&target, common, 0..count).await?;
    }
    Ok(target)
}

/// Creates the accounts `<prefix><n>` for each `n` of `numbers`.
async fn register_all(target: &Target, common: &Common, numbers: impl Iterator<Item = usize>) -> Result<(), String> {
    for_each_account(target, common, numbers, |target, user, password, _| async move {
        register(&target, &user, &password).await
    })
    .await
}

/// Runs `action` for each account `<prefix><n>` of `numbers`, at most `--concurrency` at once,
/// with the account's source address if `--source` gives any; fails with the first error.
async fn for_each_account<F, Fut>(
    target: &Target,
    common: &Common,
    numbers: impl Iterator<Item = usize>,
    action: F,
) -> Result<(), String>
where
    F: Fn(Target, String, String, Option<IpAddr>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(common.concurrency));
    let mut tasks = Vec::new();
    for n in numbers {
        let (user, password) = (format!("{}{n}", common.prefix), common.password.clone());
        let source = (!common.source.is_empty()).then(|| common.source[n % common.source.len()]);
        let work = action(target.clone(), user, password, source);
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            work.await
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

async fn login_scenario(
    common: Common,
    sessions: usize,
    idle_secs: u64,
    reconnect: bool,
    resume: bool,
) -> Result<(), String> {
    let mut target = registered_target(&common, sessions).await?;
    if reconnect {
        target.keys = Some(Arc::default());
        if resume {
            target.tickets = Some(Arc::new(AccountTickets::new()?));
        }
        log_in_and_out(&target, &common, sessions).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = common.server_pid;
    let rss_before = pid.and_then(rss_kib);
    let (bench_clock, server_clock) = (CpuClock::own(), CpuClock::server(pid));
    let gate = Arc::new(Semaphore::new(common.concurrency));
    let (failed, resumed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let start = Instant::now();
    for n in 0..sessions {
        let (target, gate, ready) = (target.clone(), gate.clone(), ready_tx.clone());
        let (failed, resumed) = (failed.clone(), resumed.clone());
        let user = format!("{}{n}", common.prefix);
        let password = common.password.clone();
        let source = (!common.source.is_empty()).then(|| common.source[n % common.source.len()]);
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let outcome = login(&target, &user, &password, source).await;
            drop(permit);
            if outcome.as_ref().is_ok_and(client::resumed) {
                resumed.fetch_add(1, Ordering::Relaxed);
            }
            let _ = ready.send(());
            match outcome {
                Ok(session) => idle(session).await,
                Err(e) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("{user}: {e}");
                    }
                }
            }
        });
    }
    drop(ready_tx);
    for _ in 0..sessions {
        ready_rx.recv().await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (bench_cpu, server_cpu) = (bench_clock.json(), server_clock.json());
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let rss_after = pid.and_then(rss_kib);
    let failed = failed.load(Ordering::Relaxed);
    let established = sessions - failed;
    let per_session = match (rss_before, rss_after) {
        (Some(b), Some(a)) if established > 0 => Some((a.saturating_sub(b)) as f64 / established as f64),
        _ => None,
    };
    let json = format!(
        "{{\"scenario\":\"login\",\"sessions\":{sessions},\"established\":{established},\"failed\":{failed},\
         \"mechanism\":\"{}\",\"tls\":\"{}\",\"reconnect\":{reconnect},\"tls_tickets\":{},\"tls_resumed\":{},\"seconds\":{elapsed:.3},\"logins_per_sec\":{:.1},\
         \"server_rss_before_kib\":{},\"server_rss_after_kib\":{},\"kib_per_session\":{},\"bench_cpu_s\":{bench_cpu},\"server_cpu_s\":{server_cpu}}}",
        target.mech.name(),
        if common.direct_tls { "direct" } else { "starttls" },
        target.tickets.is_some(),
        resumed.load(Ordering::Relaxed),
        established as f64 / elapsed,
        rss_before.map_or("null".into(), |v| v.to_string()),
        rss_after.map_or("null".into(), |v| v.to_string()),
        per_session.map_or("null".into(), |v| format!("{v:.2}")),
    );
    println!("{json}");
    Ok(())
}

/// Logs each of the accounts `<prefix>0` … `<prefix>{count-1}` in and closes its stream
/// again (the unmeasured first pass of `login --reconnect`).
async fn log_in_and_out(target: &Target, common: &Common, count: usize) -> Result<(), String> {
    for_each_account(target, common, 0..count, |target, user, password, source| async move {
        let mut session = login(&target, &user, &password, source).await?;
        session.send("</stream:stream>").await
    })
    .await
}

/// Senders are the even accounts on `common.server`, receivers the odd ones on `peer` (server
/// and domain) if given, else on the same server.
async fn chat_scenario(common: Common, peer: Option<(SocketAddr, String)>, plan: chat::ChatPlan) -> Result<(), String> {
    if plan.ack_every > plan.window {
        return Err("--window must be at least --ack-every (acks are requested every N messages)".into());
    }
    let senders = target(&common)?;
    let receivers = match &peer {
        Some((addr, domain)) => Target { addr: *addr, domain: domain.clone(), ..senders.clone() },
        None => senders.clone(),
    };
    if common.register {
        register_all(&senders, &common, (0..2 * plan.pairs).step_by(2)).await?;
        register_all(&receivers, &common, (1..2 * plan.pairs).step_by(2)).await?;
    }
    let fields = chat::run(&senders, &receivers, &common.prefix, &common.password, plan).await?;
    let peer = peer.map_or("null".into(), |(_, domain)| format!("\"{domain}\""));
    println!(
        "{{\"scenario\":\"chat\",\"mechanism\":\"{}\",\"domain\":\"{}\",\"peer_domain\":{peer},{fields}}}",
        senders.mech.name(),
        senders.domain,
    );
    Ok(())
}

async fn muc_scenario(common: Common, plan: muc::MucPlan) -> Result<(), String> {
    if plan.occupants == 0 || plan.senders == 0 || plan.senders > plan.occupants {
        return Err("need 1 <= --senders <= --occupants".into());
    }
    if plan.messages == 0 || plan.window == 0 {
        return Err("--messages and --window must be at least 1".into());
    }
    let target = registered_target(&common, plan.occupants).await?;
    let fields = muc::run(&target, &common.prefix, &common.password, plan).await?;
    println!("{{\"scenario\":\"muc\",\"mechanism\":\"{}\",{fields}}}", target.mech.name());
    Ok(())
}

async fn offline_scenario(common: Common, plan: offline::OfflinePlan) -> Result<(), String> {
    if plan.users == 0 || plan.messages == 0 || plan.ack_every == 0 || plan.ack_every > plan.window {
        return Err("need --users and --messages of at least 1, and 1 <= --ack-every <= --window".into());
    }
    let target = registered_target(&common, 2 * plan.users).await?;
    let fields = offline::run(&target, &common.prefix, &common.password, plan).await?;
    println!("{{\"scenario\":\"offline\",\"mechanism\":\"{}\",{fields}}}", target.mech.name());
    Ok(())
}

#[tokio::main]
async fn main() {
    let outcome = match Cli::parse().scenario {
        Scenario::Login { common, sessions, idle, reconnect, no_resume } => {
            login_scenario(common, sessions, idle, reconnect, !no_resume).await
        }
        Scenario::Chat {
            common,
            pairs,
            messages,
            window,
            ack_every,
            rate,
            body_bytes,
            deadline,
            peer_server,
            peer_domain,
        } => {
            let plan = chat::ChatPlan {
                pairs,
                messages,
                window,
                ack_every,
                rate,
                body_bytes,
                deadline: Duration::from_secs(deadline),
                server_pid: common.server_pid,
            };
            chat_scenario(common, peer_server.zip(peer_domain), plan).await
        }
        Scenario::Muc {
            common,
            occupants,
            senders,
            messages,
            window,
            rate,
            body_bytes,
            join_concurrency,
            room,
            service,
            room_config,
            deadline,
        } => {
            let service = service.unwrap_or_else(|| format!("conference.{}", common.domain));
            let plan = muc::MucPlan {
                occupants,
                senders,
                messages,
                window,
                rate,
                body_bytes,
                join_concurrency,
                room: format!("{room}@{service}"),
                room_config,
                login_concurrency: common.concurrency,
                deadline: Duration::from_secs(deadline),
                server_pid: common.server_pid,
            };
            muc_scenario(common, plan).await
        }
        Scenario::Offline { common, users, messages, window, ack_every, body_bytes, deadline } => {
            let deadline = Duration::from_secs(deadline);
            offline_scenario(common, offline::OfflinePlan { users, messages, window, ack_every, body_bytes, deadline })
                .await
        }
        Scenario::EchoServer { listen, cert, key } => echo::serve(listen, cert, key).await,
        Scenario::Echo { server, connections, messages, window, body_bytes, deadline, server_pid } => {
            let deadline = Duration::from_secs(deadline);
            let plan = echo::EchoPlan { connections, messages, window, body_bytes, deadline, server_pid };
            echo::run(server, plan).await.map(|fields| println!("{{\"scenario\":\"echo\",{fields}}}"))
        }
    };
    if let Err(e) = outcome {
        eprintln!("starling-bench: {e}");
        std::process::exit(1);
    }
}
