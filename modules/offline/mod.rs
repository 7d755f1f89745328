//! The inbox: every message to a local account is stored before it is acknowledged to its
//! sender and kept until one of the account's clients has it; for accounts with no client
//! online this is offline storage (XEP-0160).
//!
//! Flow of a message to a local account (on [`MessageToLocal`]):
//! 1. a. (priority `STAMP`, after blocking, before archiving and carbons) Messages worth
//!    keeping (not chat states alone, not `<no-store/>`; receipts and chat markers are kept,
//!    XEP-0085 §5.6, XEP-0334) get a `<stanza-id/>` (XEP-0359) naming the account.
//!    b. (priority `DELIVERY`) They are queued on the group commit into the account's
//!    `offline` archive, kept as a queue (`Storage::queue`: indexed by key only, as the inbox
//!    is read by key and in order and holds each message a short time). The sender's
//!    stream-management `<a/>` waits for that commit (durable before acknowledged). A redelivery (from a session that ended without showing it
//!    delivered) is in the archive already and is not added again.
//!    When no client of the account is online and the account is over its quota, the sender
//!    gets `service-unavailable` instead (XEP-0160 §3).
//! 2. The message is then delivered by the RFC 6121 §8.5 rules. Nothing further happens when
//!    no resource takes it: it is already stored.
//! 3. When a client has it ([`MessagesDelivered`]: acknowledged under XEP-0198, or written to a
//!    client without it), the item leaves `offline`. A message with an origin id leaves a
//!    record in the `delivered` log (a line naming account and key; the records of one commit
//!    batch share a row), long enough to recognise the message if its sender sends it again. A message handed to its recipient before its
//!    commit came round is thus not written at all (see `storage::commit`), only its record.
//! 4. On [`InitialPresence`] (non-negative priority) the stored messages are sent to the new
//!    session oldest first, with `<delay/>` (XEP-0203). Live messages to the account wait for
//!    this under the same per-account lock as step 1, and the session counts as not there for
//!    delivery until it is done, so each message reaches it once and in order.
//!
//! Ids: a message with an `<origin-id/>` (XEP-0359) is stored under a key derived from its
//! sender and origin id. For a while after a restart (`dedup_check_after_start`), when the
//! in-memory duplicate check of the origin-id module knows nothing yet, a message with such a
//! key that the previous run handled (among its newest `dedup_records_at_start` delivery
//! records, or still in the inbox) is a retransmission: it is acknowledged and dropped, or,
//! if its first copy still waits for the account's first client, stored once (see
//! `restart`). A message without an origin id gets a random key, which no retransmission can
//! have, so it leaves no record.
//!
//! An expiry job deletes stored messages older than `retention` and delivery records older
//! than `dedup_window`.

mod inbox;
mod policy;
mod restart;
#[cfg(test)]
mod tests;

use crate::module_api::{
    BareJid, BoxFuture, ConfigDuration, Flow, Hook, InitialPresence, MessageToLocal, MessageUndeliverable,
    MessagesDelivered, ModuleDescriptor, ModuleError, PeriodicTask, Registrar, ServerHandle, Stanza, check_section,
    expire_archive, now_micros, ns, priority,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "offline",
    xeps: &["XEP-0160", "XEP-0203", "XEP-0359"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<Options>,
    build,
};

/// `[modules.offline]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct Options {
    /// Most messages kept per account while none of its clients is online; further messages
    /// bounce with service-unavailable.
    pub max_messages_per_user: usize,
    /// Messages older than this are deleted by the expiry job.
    pub retention: ConfigDuration,
    /// How long a record of a delivered message is kept to recognise it if its sender sends it
    /// again (after a server restart).
    pub dedup_window: ConfigDuration,
    /// How many of the newest records are read after a start for that check (the restart
    /// then remembers as much as the origin-id module's memory held before it).
    pub dedup_records_at_start: usize,
    /// For how long after start-up stored records are consulted for such duplicates (later the
    /// origin-id module's memory covers them).
    pub dedup_check_after_start: ConfigDuration,
    /// How often the expiry job runs.
    pub expiry_interval: ConfigDuration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_messages_per_user: 10_000,
            retention: ConfigDuration(Duration::from_secs(365 * 86_400)),
            dedup_window: ConfigDuration(Duration::from_secs(86_400)),
            dedup_records_at_start: 100_000,
            dedup_check_after_start: ConfigDuration(Duration::from_secs(600)),
            expiry_interval: ConfigDuration(Duration::from_secs(3600)),
        }
    }
}

/// The store of the delivery record log.
const DELIVERED: &str = "delivered";

struct Offline {
    inbox: inbox::Inbox,
    retention: Duration,
    dedup_window: Duration,
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let options: Options = r.config()?;
    let server: ServerHandle = r.server();
    let inbox = inbox::Inbox::new(
        r.queue("offline"),
        r.archive(DELIVERED),
        r.domain(),
        options.max_messages_per_user,
        restart::Dedup {
            check_after_start: options.dedup_check_after_start.get(),
            records_at_start: options.dedup_records_at_start,
            window: options.dedup_window.get(),
        },
        r.keyval("inbox_secret"),
        server,
    );
    let offline =
        Arc::new(Offline { inbox, retention: options.retention.get(), dedup_window: options.dedup_window.get() });
    r.hook::<MessageToLocal>(priority::STAMP, Arc::new(Stamp(offline.clone())));
    r.hook::<MessageToLocal>(priority::DELIVERY, offline.clone());
    r.hook::<MessageUndeliverable>(priority::DELIVERY, offline.clone());
    r.hook::<MessagesDelivered>(priority::DELIVERY, offline.clone());
    r.hook::<InitialPresence>(priority::DELIVERY, offline.clone());
    r.provide(Arc::new(OfflineStore(offline.clone())));
    r.every(options.expiry_interval.get(), offline);
    r.feature("msgoffline");
    // XEP-0359 §6: the entity named in `by` (the account) advertises stanza-id support.
    r.account_feature(ns::SID);
    Ok(())
}

/// The inbox as a service for other modules: rooms keep group messages here for members who
/// are not in the room, so that their next login gets them (XEP-0045 groups run as
/// WhatsApp-style groups).
pub struct OfflineStore(Arc<Offline>);

impl OfflineStore {
    /// Queues `message` into `account`'s inbox under `key` (the key must be unique in the
    /// account's inbox; rooms use their stanza-id) and sends it to the account's available
    /// clients. Until a client has it, it is sent again at each initial presence; then it
    /// leaves the inbox like any stored message. No quota applies: the room decided to keep
    /// it, and the retention expiry bounds it.
    pub async fn keep(&self, account: &BareJid, message: &Stanza, key: &str) {
        self.0.inbox.keep(account, message, key).await;
    }
}

impl Hook<MessageToLocal> for Offline {
    fn call<'a>(&'a self, event: &'a mut MessageToLocal) -> BoxFuture<'a, Flow> {
        Box::pin(self.inbox.accept(&event.stanza, &event.to, event.redelivery))
    }
}

/// The id-stamping step, which runs before archiving and carbons.
struct Stamp(Arc<Offline>);

impl Hook<MessageToLocal> for Stamp {
    fn call<'a>(&'a self, event: &'a mut MessageToLocal) -> BoxFuture<'a, Flow> {
        Box::pin(self.0.inbox.stamp(&mut event.stanza, &event.to, event.redelivery))
    }
}

impl Hook<MessageUndeliverable> for Offline {
    fn call<'a>(&'a self, event: &'a mut MessageUndeliverable) -> BoxFuture<'a, Flow> {
        Box::pin(self.inbox.undeliverable(&event.stanza, &event.to))
    }
}

impl Hook<MessagesDelivered> for Offline {
    fn call<'a>(&'a self, event: &'a mut MessagesDelivered) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            self.inbox.delivered(&event.session, &event.messages).await;
            Flow::Continue
        })
    }
}

impl Hook<InitialPresence> for Offline {
    fn call<'a>(&'a self, event: &'a mut InitialPresence) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            self.inbox.catch_up(&event.session).await;
            Flow::Continue
        })
    }
}

impl Offline {
    /// Deletes stored messages older than `retention` and delivery records older than
    /// `dedup_window`, as of `now` (Unix microseconds; a parameter so that tests set the clock).
    async fn expire(&self, now: i64) {
        expire_archive(self.inbox.stored(), now, self.retention).await;
        expire_archive(self.inbox.records(), now, self.dedup_window).await;
        self.inbox.recount(None);
    }
}

impl PeriodicTask for Offline {
    fn run(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.expire(now_micros()))
    }
}
