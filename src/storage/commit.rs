//! Group commit: archive writes from every connection go through one queue and are committed
//! many to a transaction, so that "durable before acknowledged" costs latency, not throughput.
//!
//! ```text
//! router / modules ──enqueue(write) → seq──▶ queue ──▶ committer task
//!                                                         │ takes up to MAX_BATCH writes
//!                                                         │ one transaction, in queue order
//!                                                         ▼
//! connection task ◀──committed(seq) resolves── watermark = last seq of the batch
//! ```
//!
//! Every write gets a sequence number when it is queued; the committer applies a batch with
//! the outcome of that order (see `commit_batch`) and, after each commit, raises the watermark
//! to the last number it committed. A connection that must not acknowledge a stanza before its
//! writes are durable (XEP-0198 `<a/>`) remembers [`GroupCommit::enqueued`] after routing the
//! stanza and waits for [`GroupCommit::committed`] of that number: everything the routing
//! queued is then on disk (numbers of other connections' writes in between only make the wait
//! conservative).
//!
//! Failures: a batch that fails is retried write by write, each in its own transaction, with
//! backoff. A database that is down or full therefore holds the watermark (no acknowledgement
//! is given for what is not stored, and the queue's bound pushes back on the routers) until it
//! recovers. A single write that still fails after [`POISON_ATTEMPTS`] tries while the
//! database otherwise works is dropped with an error log, so one bad row cannot stop the server.

use super::archive::{Archive, ArchiveRow, ItemKey, NewItem, Table};
use super::dialect::Backend;
use super::error::StorageError;
use super::lease::Connections;
use super::now_micros;
use super::sql::{Sql, random_key};
use super::value::Value;
use sqlx::Connection;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Most writes per transaction.
const MAX_BATCH: usize = 1024;
/// How long queued writes that nobody waits for yet may gather before they are committed. A
/// message handed to its recipient's client within that time is then never written at all
/// (see [`commit_batch`]): for a chat message with no sender waiting for its durability (no
/// stream management), that saves its whole storage cost.
const GATHER: Duration = Duration::from_millis(1);
/// Most writes waiting; beyond this, enqueueing waits for the committer.
const QUEUE_BOUND: usize = 64 * 1024;
/// Tries of a single write before it is dropped as unstorable.
const POISON_ATTEMPTS: u32 = 5;

/// One queued write.
#[derive(Debug)]
pub(crate) enum Write {
    /// Append `item` to `user`'s `archive`.
    Append { archive: Archive, user: String, item: NewItem },
    /// Delete the items with these keys from `user`'s `archive`.
    Delete { archive: Archive, user: String, keys: Vec<String> },
    /// Add a line to the log in `user`'s `archive` (see [`Archive::log_queued`]).
    Log { archive: Archive, user: String, entry: String },
}

/// The queue and watermark shared by every handle of one [`super::Storage`].
#[derive(Debug)]
pub struct GroupCommit {
    queue: Mutex<Queue>,
    /// Wakes the committer when the queue was empty.
    work: Notify,
    /// Wakes writers waiting for room in the queue.
    room: Notify,
    /// The last sequence number committed.
    committed: watch::Sender<u64>,
    /// The last sequence number handed out.
    enqueued: AtomicU64,
    closed: AtomicBool,
    /// How many callers of `committed` are waiting.
    waiters: AtomicUsize,
    /// Wakes the committer when a caller starts waiting.
    waited: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    writes: VecDeque<(u64, Write)>,
    next_seq: u64,
}

impl GroupCommit {
    /// Starts the committer task, writing through `db`.
    pub(crate) fn start(db: Connections, backend: Backend) -> Arc<GroupCommit> {
        let commits = Arc::new(GroupCommit {
            queue: Mutex::new(Queue { writes: VecDeque::new(), next_seq: 1 }),
            work: Notify::new(),
            room: Notify::new(),
            committed: watch::Sender::new(0),
            enqueued: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            waited: Notify::new(),
        });
        tokio::spawn(committer(commits.clone(), db, backend));
        commits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a write; returns its sequence number. Waits while the queue is full.
    pub(crate) async fn enqueue(&self, write: Write) -> u64 {
        loop {
            let room = self.room.notified();
            {
                let mut queue = self.lock();
                if queue.writes.len() < QUEUE_BOUND || self.closed.load(Ordering::Acquire) {
                    let seq = queue.next_seq;
                    queue.next_seq += 1;
                    let was_empty = queue.writes.is_empty();
                    queue.writes.push_back((seq, write));
                    self.enqueued.store(seq, Ordering::Release);
                    drop(queue);
                    if was_empty {
                        self.work.notify_one();
                    }
                    return seq;
                }
            }
            room.await;
        }
    }

    /// The last sequence number handed out: waiting for it covers every write queued so far.
    pub fn enqueued(&self) -> u64 {
        self.enqueued.load(Ordering::Acquire)
    }

    /// The last sequence number committed.
    pub fn committed_seq(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Resolves once every write numbered up to `seq` is committed.
    pub async fn committed(&self, seq: u64) {
        let mut watermark = self.committed.subscribe();
        if *watermark.borrow_and_update() >= seq {
            return;
        }
        let _waiting = Waiting::start(self);
        // The sender lives as long as `self`, so this never reports a closed channel.
        let _ = watermark.wait_for(|done| *done >= seq).await;
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) {
        self.committed(self.enqueued()).await;
    }

    /// Stops the committer once the queue is drained.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.work.notify_one();
    }

    /// Lets queued writes gather for up to [`GATHER`] before a batch is taken, unless a caller
    /// waits for a commit, the queue is empty, or the queue is closing.
    async fn gather(&self) {
        let waited = self.waited.notified();
        let len = self.lock().writes.len();
        if len == 0 || self.waiters.load(Ordering::Acquire) > 0 || self.closed.load(Ordering::Acquire) {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(GATHER) => {}
            () = waited => {}
        }
    }

    fn take_batch(&self) -> Vec<(u64, Write)> {
        let mut queue = self.lock();
        let n = queue.writes.len().min(MAX_BATCH);
        queue.writes.drain(..n).collect()
    }
}

/// A caller of [`GroupCommit::committed`] counted while it waits (also when its wait is
/// dropped unfinished).
struct Waiting<'a>(&'a GroupCommit);

impl<'a> Waiting<'a> {
    fn start(commits: &'a GroupCommit) -> Waiting<'a> {
        commits.waiters.fetch_add(1, Ordering::AcqRel);
        commits.waited.notify_one();
        Waiting(commits)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn committer(commits: Arc<GroupCommit>, db: Connections, backend: Backend) {
    let mut statistics = Statistics::default();
    loop {
        let wake = commits.work.notified();
        commits.gather().await;
        let batch = commits.take_batch();
        let Some(&(last, _)) = batch.last() else {
            if commits.closed.load(Ordering::Acquire) {
                return;
            }
            wake.await;
            continue;
        };
        commits.room.notify_waiters();
        let writes: Vec<&Write> = batch.iter().map(|(_, write)| write).collect();
        let started = std::time::Instant::now();
        let outcome = commit_batch(&db, backend, &writes).await;
        tracing::trace!(writes = writes.len(), elapsed = ?started.elapsed(), "group commit");
        if let Err(e) = outcome {
            tracing::warn!(error = %e, writes = batch.len(), "group commit failed; retrying write by write");
            commit_one_by_one(&db, backend, &batch).await;
        }
        commits.committed.send_replace(last);
        if backend == Backend::Postgres {
            statistics.after_commit(db.pool(), &writes).await;
        }
    }
}

/// Keeps PostgreSQL's planner statistics of the archive and queue tables current while the
/// committer fills them. Without them (a new table, or autovacuum off) the planner took the
/// archive's index on (host, store, when) for key lookups of one account and scanned a whole
/// store: measured, the removal of delivered messages then slowed every batch down as the
/// store grew (1,500 instead of 10,900 durable messages per second in the chat benchmark).
/// ANALYZE samples a bounded number of rows, so it runs after the first 1,000 appended rows
/// and again each time the count has doubled, then every million.
#[derive(Default)]
struct Statistics {
    appended: u64,
    next_analyze: u64,
}

impl Statistics {
    async fn after_commit(&mut self, pool: &sqlx::AnyPool, writes: &[&Write]) {
        self.appended += writes.iter().filter(|w| !matches!(w, Write::Delete { .. })).count() as u64;
        let threshold = self.next_analyze.max(1_000);
        if self.appended < threshold {
            return;
        }
        self.next_analyze = if threshold < 1_000_000 { threshold * 2 } else { threshold + 1_000_000 };
        for table in Table::ALL {
            let mut analyze = Sql::new(Backend::Postgres, "ANALYZE ");
            analyze.push(table.name());
            if let Err(e) = analyze.build().execute(pool).await {
                tracing::warn!(error = %e, table = table.name(), "updating the planner's statistics failed");
            }
        }
    }
}

/// Rows per multi-row INSERT (eight bound values each, far below both databases' limits).
const ROWS_PER_INSERT: usize = 32;

/// Applies a batch in one transaction: its deletions first, the keys of many accounts to a
/// statement, then its appends in queue order, a few hundred rows per statement, with one row
/// per log holding the batch's lines for it (see [`Archive::log_queued`]).
///
/// An append followed in the same batch by a deletion of its key (a message put into the inbox
/// and handed to its recipient's client before the commit came round) is not written at all.
/// Running every deletion before the remaining appends leaves what queue order leaves: a
/// deletion removes the older item with its key (as it would after an append that found the
/// key taken and added nothing), and an append queued after a deletion of its key still lands.
async fn commit_batch(db: &Connections, backend: Backend, writes: &[&Write]) -> Result<(), StorageError> {
    let logs = log_items(writes)?;
    let mut rows = surviving_appends(writes);
    rows.extend(logs.iter().map(|(archive, user, item)| ArchiveRow {
        table: archive.table(),
        host: archive.host(),
        store: archive.store(),
        user,
        item,
    }));
    let mut conn = db.lease().await?;
    let mut tx = conn.begin().await?;
    Archive::delete_items(&mut tx, backend, &deleted_items(writes)).await?;
    for table in Table::ALL {
        let of_table: Vec<&ArchiveRow<'_>> = rows.iter().filter(|row| row.table == table).collect();
        for chunk in of_table.chunks(ROWS_PER_INSERT) {
            Archive::insert_rows(&mut tx, backend, table, chunk).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The batch's appends that no later deletion in the batch undoes, in queue order.
fn surviving_appends<'a>(writes: &[&'a Write]) -> Vec<ArchiveRow<'a>> {
    let deletions = writes.iter().map(|write| if let Write::Delete { keys, .. } = write { keys.len() } else { 0 });
    let mut deleted_later: HashSet<ItemKey<'_>> = HashSet::with_capacity(deletions.sum());
    let mut rows = Vec::with_capacity(writes.len());
    for write in writes.iter().rev() {
        match write {
            Write::Delete { archive, user, keys } => {
                let (table, host, store, user) = (archive.table(), archive.host(), archive.store(), user.as_str());
                deleted_later.extend(keys.iter().map(|key| ItemKey { table, host, store, user, key }));
            }
            Write::Log { .. } => {}
            Write::Append { archive, user, item } => {
                let (table, host, store, user) = (archive.table(), archive.host(), archive.store(), user.as_str());
                let undone = item
                    .key
                    .as_deref()
                    .is_some_and(|key| deleted_later.contains(&ItemKey { table, host, store, user, key }));
                if !undone {
                    rows.push(ArchiveRow { table, host, store, user, item });
                }
            }
        }
    }
    rows.reverse();
    rows
}

/// The batch's log entries as new items: one per archive and account, holding its entries in
/// queue order, one per line.
fn log_items<'a>(writes: &[&'a Write]) -> Result<Vec<(&'a Archive, &'a str, NewItem)>, StorageError> {
    let entries = writes.iter().filter_map(|write| match write {
        Write::Log { archive, user, entry } => Some((archive, user.as_str(), entry.as_str())),
        _ => None,
    });
    let when = now_micros();
    per_account(entries)
        .into_iter()
        .map(|(archive, user, lines)| {
            let key = format!("{when:016x}{}", random_key()?);
            let value = Value::text(lines.join("\n"));
            Ok((archive, user, NewItem { key: Some(key), when, with: String::new(), value }))
        })
        .collect()
}

/// The items the batch deletes, in queue order.
fn deleted_items<'a>(writes: &[&'a Write]) -> Vec<ItemKey<'a>> {
    let mut items = Vec::new();
    for write in writes {
        if let Write::Delete { archive, user, keys } = write {
            let (table, host, store, user) = (archive.table(), archive.host(), archive.store(), user.as_str());
            items.extend(keys.iter().map(|key| ItemKey { table, host, store, user, key }));
        }
    }
    items
}

/// `items` grouped by the archive and account each belongs to, groups in first-seen order and
/// items in queue order within them.
fn per_account<'a, T>(items: impl Iterator<Item = (&'a Archive, &'a str, T)>) -> Vec<(&'a Archive, &'a str, Vec<T>)> {
    let mut groups: Vec<(&'a Archive, &'a str, Vec<T>)> = Vec::new();
    let mut index: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut last: Option<((&str, &str, &str), usize)> = None;
    for (archive, user, item) in items {
        let account = (archive.host(), archive.store(), user);
        // Items come in runs of one account (the log lines of one log), so the previous
        // item's group is tried before hashing.
        let slot = match last {
            Some((previous, slot)) if previous == account => slot,
            _ => *index.entry(account).or_insert_with(|| {
                groups.push((archive, user, Vec::new()));
                groups.len() - 1
            }),
        };
        last = Some((account, slot));
        groups[slot].2.push(item);
    }
    groups
}

async fn commit_one_by_one(db: &Connections, backend: Backend, batch: &[(u64, Write)]) {
    for (seq, write) in batch {
        let mut attempts = 0;
        let mut backoff = Duration::from_millis(10);
        loop {
            match commit_batch(db, backend, &[write]).await {
                Ok(()) => break,
                Err(e) if is_unstorable(&e) => {
                    attempts += 1;
                    if attempts >= POISON_ATTEMPTS {
                        tracing::error!(error = %e, seq, "a write the database rejects as invalid was dropped");
                        break;
                    }
                }
                Err(e) => tracing::error!(error = %e, seq, "storage failing; writes are held until it recovers"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// Whether the database rejected the write itself (bad data, a violated constraint), as
/// opposed to failing for reasons that pass (down, full, busy, locked), which are retried
/// without limit. PostgreSQL SQLSTATE classes 22 (data exception) and 23 (integrity
/// constraint); SQLite primary result codes 18 (too big), 19 (constraint), 20 (type mismatch).
fn is_unstorable(error: &StorageError) -> bool {
    let StorageError::Database(sqlx::Error::Database(db)) = error else {
        return matches!(error, StorageError::Codec(_));
    };
    if !matches!(db.kind(), sqlx::error::ErrorKind::Other) {
        return true; // unique, foreign key, not-null or check violation
    }
    let Some(code) = db.code() else { return false };
    // SQLite result codes have at most four digits; SQLSTATEs always five characters.
    match code.parse::<u32>() {
        Ok(sqlite) if code.len() < 5 => matches!(sqlite & 0xff, 18..=20),
        _ => code.len() == 5 && (code.starts_with("22") || code.starts_with("23")),
    }
}
