//! The `offline` scenario (XEP-0160): K messages wait for each of U accounts that are offline;
//! then those accounts log in, and the time until each has all of its messages is measured.
//!
//! Storing: U senders (`<prefix><2i>`) log in, enable stream management (XEP-0198) and each
//! sends K messages to its receiver's bare JID (`<prefix><2i+1>`, an account that is not
//! logged in), keeping at most W unacknowledged and asking for an ack every few messages. The
//! phase ends when every message is acknowledged: on Starling that means stored; on other
//! servers it may only mean received, so a pause follows before the next phase.
//!
//! Draining: the U receivers log in at once (TLS, SASL, bind, initial presence, which is when
//! servers send what they kept) and count their messages as in the `chat` scenario (lost,
//! duplicated, reordered). The drain time runs from the start of the logins to the moment the
//! last receiver has all of its messages.

use crate::chat::{ChatPlan, Pair, Tally, deadline, receive, send};
use crate::client::{Target, login};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one run does.
#[derive(Clone, Debug)]
pub struct OfflinePlan {
    /// Accounts that receive while offline (and as many senders).
    pub users: usize,
    /// Messages kept for each.
    pub messages: usize,
    /// Unacknowledged messages per sender.
    pub window: usize,
    /// An ack request every N messages.
    pub ack_every: usize,
    pub body_bytes: usize,
    /// Give up after this long (both phases together).
    pub deadline: Duration,
}

/// Time given to servers that acknowledge before they store.
const SETTLE: Duration = Duration::from_secs(1);

/// Runs the scenario; returns the JSON fields of the result.
pub async fn run(target: &Target, prefix: &str, password: &str, plan: OfflinePlan) -> Result<String, String> {
    let chat = ChatPlan {
        pairs: plan.users,
        messages: plan.messages,
        window: plan.window,
        ack_every: plan.ack_every,
        rate: 0.0,
        body_bytes: plan.body_bytes,
        deadline: plan.deadline,
        server_pid: None,
    };
    let mut senders = Vec::with_capacity(plan.users);
    for i in 0..plan.users {
        let mut session = login(target, &format!("{prefix}{}", 2 * i), password, None).await?;
        session.send("<enable xmlns='urn:xmpp:sm:3'/>").await?;
        while session.element().await?.name != "enabled" {}
        senders.push(session);
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let base = Instant::now();
    let bench_clock = crate::CpuClock::own();
    // A pair's bounces (a full offline store) tell its receiver how many not to wait for.
    let pairs: Vec<Arc<Pair>> = (0..plan.users).map(|_| Pair::new(plan.window)).collect();
    let mut storing = Vec::with_capacity(plan.users);
    for (i, (session, pair)) in senders.into_iter().zip(&pairs).enumerate() {
        pair.without_receiver();
        let to = format!("{prefix}{}@{}", 2 * i + 1, target.domain);
        storing.push(tokio::spawn(send(session, to, chat.clone(), base, pair.clone(), tally.clone())));
    }
    for task in storing {
        task.await.map_err(|e| e.to_string())?;
    }
    let store_seconds = base.elapsed().as_secs_f64();
    let acked = tally.lock().unwrap_or_else(|p| p.into_inner()).ack_us.len();
    tokio::time::sleep(SETTLE).await;

    let drain_start = Instant::now();
    let mut draining = Vec::with_capacity(plan.users);
    for (i, pair) in pairs.into_iter().enumerate() {
        let (target, user, password) = (target.clone(), format!("{prefix}{}", 2 * i + 1), password.to_owned());
        let (chat, tally) = (chat.clone(), tally.clone());
        draining.push(tokio::spawn(async move {
            let session = login(&target, &user, &password, None).await?;
            let until = deadline(base, &chat);
            tokio::time::timeout_at(until, receive(session, chat, base, pair, tally)).await.ok();
            Ok::<Instant, String>(Instant::now())
        }));
    }
    let mut drained_at = drain_start;
    for task in draining {
        drained_at = drained_at.max(task.await.map_err(|e| e.to_string())??);
    }
    let drain_seconds = drained_at.duration_since(drain_start).as_secs_f64();
    let bench_cpu = bench_clock.json();
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    let expected = plan.users * plan.messages;
    Ok(format!(
        "\"users\":{},\"messages_per_user\":{},\"window\":{},\"ack_every\":{},\"expected\":{expected},\
         \"acked\":{acked},\"store_seconds\":{store_seconds:.3},\"stored_per_sec\":{:.1},\
         \"drain_seconds\":{drain_seconds:.3},\"drained_per_sec\":{:.1},\"delivered\":{},\"lost\":{},\
         \"bounced\":{},\"duplicated\":{},\"reordered\":{},\"bench_cpu_s\":{bench_cpu}",
        plan.users,
        plan.messages,
        plan.window,
        plan.ack_every,
        acked as f64 / store_seconds,
        tally.delivered as f64 / drain_seconds.max(1e-6),
        tally.delivered,
        expected.saturating_sub(tally.delivered),
        tally.bounced,
        tally.duplicated,
        tally.reordered,
    ))
}
