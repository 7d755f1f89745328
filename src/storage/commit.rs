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
//! Every write gets a sequence number when it is queued; the committer applies a batch in that
//! order (appends first, see `commit_batch`) and, after each commit, raises the watermark to the last number it committed. A
//! connection that must not acknowledge a stanza before its writes are durable (XEP-0198 `<a/>`)
//! remembers [`GroupCommit::enqueued`] after routing the stanza and waits for
//! [`GroupCommit::committed`] of that number: everything the routing queued is then on disk
//! (numbers of other connections' writes in between only make the wait conservative).
//!
//! Failures: a batch that fails is retried write by write, each in its own transaction, with
//! backoff. A database that is down or full therefore holds the watermark (no acknowledgement
//! is given for what is not stored, and the queue's bound pushes back on the routers) until it
//! recovers. A single write that still fails after [`POISON_ATTEMPTS`] tries while the
//! database otherwise works is dropped with an error log, so one bad row cannot stop the server.

use super::archive::{Archive, ArchiveRow, NewItem};
use super::dialect::Backend;
use super::error::StorageError;
use sqlx::AnyPool;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Most writes per transaction.
const MAX_BATCH: usize = 1024;
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
    /// Move the items with these keys from `user`'s `archive` to store `to`, payload dropped.
    Move { archive: Archive, user: String, keys: Vec<String>, to: String },
}

impl Write {
    async fn apply(&self, conn: &mut sqlx::AnyConnection) -> Result<(), StorageError> {
        match self {
            Write::Append { archive, user, item } => {
                Archive::insert_rows(
                    conn,
                    &[ArchiveRow { host: archive.host(), store: archive.store(), user, item, payload: true }],
                )
                .await
            }
            Write::Delete { archive, user, keys } => archive.delete_keys_on(conn, user, keys).await.map(drop),
            Write::Move { archive, user, keys, to } => archive.move_keys_on(conn, user, keys, to).await,
        }
    }
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
}

#[derive(Debug, Default)]
struct Queue {
    writes: VecDeque<(u64, Write)>,
    next_seq: u64,
}

impl GroupCommit {
    /// Starts the committer task for `pool`.
    pub(crate) fn start(pool: AnyPool, backend: Backend) -> Arc<GroupCommit> {
        let commits = Arc::new(GroupCommit {
            queue: Mutex::new(Queue { writes: VecDeque::new(), next_seq: 1 }),
            work: Notify::new(),
            room: Notify::new(),
            committed: watch::Sender::new(0),
            enqueued: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(committer(commits.clone(), pool, backend));
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

    fn take_batch(&self) -> Vec<(u64, Write)> {
        let mut queue = self.lock();
        let n = queue.writes.len().min(MAX_BATCH);
        queue.writes.drain(..n).collect()
    }
}

async fn committer(commits: Arc<GroupCommit>, pool: AnyPool, backend: Backend) {
    let mut statistics = Statistics::default();
    loop {
        let wake = commits.work.notified();
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
        let outcome = commit_batch(&pool, &writes).await;
        tracing::trace!(writes = writes.len(), elapsed = ?started.elapsed(), "group commit");
        if let Err(e) = outcome {
            tracing::warn!(error = %e, writes = batch.len(), "group commit failed; retrying write by write");
            commit_one_by_one(&pool, &batch).await;
        }
        commits.committed.send_replace(last);
        if backend == Backend::Postgres {
            statistics.after_commit(&pool, &writes).await;
        }
    }
}

/// Keeps PostgreSQL's planner statistics of the archive table current while the committer
/// fills it. Without them (a new table, or autovacuum off) the planner takes the index on
/// (host, store, when) for key lookups of one account and scans a whole store: measured, the
/// removal of delivered messages then slows every batch down as the store grows (1,500 instead
/// of 10,900 durable messages per second in the chat benchmark). ANALYZE samples a bounded
/// number of rows, so it runs after the first 1,000 appended rows and again each time the
/// count has doubled, then every million.
#[derive(Default)]
struct Statistics {
    appended: u64,
    next_analyze: u64,
}

impl Statistics {
    async fn after_commit(&mut self, pool: &AnyPool, writes: &[&Write]) {
        self.appended += writes.iter().filter(|w| matches!(w, Write::Append { .. })).count() as u64;
        let threshold = self.next_analyze.max(1_000);
        if self.appended < threshold {
            return;
        }
        self.next_analyze = if threshold < 1_000_000 { threshold * 2 } else { threshold + 1_000_000 };
        if let Err(e) = sqlx::query("ANALYZE archive").execute(pool).await {
            tracing::warn!(error = %e, "analyzing the archive table failed");
        }
    }
}

/// Rows per multi-row INSERT (eight bound values each, far below both databases' limits).
const ROWS_PER_INSERT: usize = 32;

/// Applies a batch in one transaction: its appends in queue order, a few hundred rows per
/// statement, then its deletions in queue order, then its moves, one statement per archive,
/// account and destination. Deletions and moves only ever concern keys appended earlier, so
/// this gives what queue order gives, with far fewer statements.
///
/// An item appended and moved on in the same batch (a message put into the inbox and handed to
/// its recipient's client before the commit came round) is written once, straight into the
/// destination store without its payload: what the append and the move would leave. The
/// move's statements still run for its keys, so that an older item with the same key is moved
/// as before; the direct row then finds it there and adds nothing.
async fn commit_batch(pool: &AnyPool, writes: &[&Write]) -> Result<(), StorageError> {
    let mut tx = pool.begin().await?;
    let moves = grouped_moves(writes);
    let moved_on = moved_keys(&moves);
    let (mut kept, mut landed) = (Vec::new(), Vec::new());
    for write in writes {
        let Write::Append { archive, user, item } = write else { continue };
        let (host, store, user) = (archive.host(), archive.store(), user.as_str());
        let destination = item.key.as_deref().and_then(|key| moved_on.get(&(host, store, user, key)));
        match destination {
            Some(to) => landed.push(ArchiveRow { host, store: to, user, item, payload: false }),
            None => kept.push(ArchiveRow { host, store, user, item, payload: true }),
        }
    }
    for rows in kept.chunks(ROWS_PER_INSERT) {
        Archive::insert_rows(&mut tx, rows).await?;
    }
    for write in writes.iter().filter(|w| matches!(w, Write::Delete { .. })) {
        write.apply(&mut tx).await?;
    }
    for ((archive, user, to), keys) in &moves {
        archive.move_keys_on(&mut tx, user, keys, to).await?;
    }
    for rows in landed.chunks(ROWS_PER_INSERT) {
        Archive::insert_rows(&mut tx, rows).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The moved keys of a batch: (host, store, account, key) to the destination store.
fn moved_keys<'a>(moves: &'a [(MoveGroup<'a>, Vec<String>)]) -> HashMap<(&'a str, &'a str, &'a str, &'a str), &'a str> {
    let mut moved = HashMap::new();
    for ((archive, user, to), keys) in moves {
        for key in keys {
            moved.insert((archive.host(), archive.store(), *user, key.as_str()), *to);
        }
    }
    moved
}

/// Moves of one archive and account to one destination store: (archive, account, store).
type MoveGroup<'a> = (&'a Archive, &'a str, &'a str);

/// The batch's moves, keys merged per archive, account and destination (in first-seen order).
fn grouped_moves<'a>(writes: &[&'a Write]) -> Vec<(MoveGroup<'a>, Vec<String>)> {
    let mut groups: Vec<(MoveGroup<'a>, Vec<String>)> = Vec::new();
    let mut index: HashMap<(&str, &str, &str, &str), usize> = HashMap::new();
    for write in writes {
        let Write::Move { archive, user, keys, to } = write else { continue };
        let slot = *index.entry((archive.host(), archive.store(), user, to)).or_insert_with(|| {
            groups.push(((archive, user.as_str(), to.as_str()), Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.extend(keys.iter().cloned());
    }
    groups
}

async fn commit_one_by_one(pool: &AnyPool, batch: &[(u64, Write)]) {
    for (seq, write) in batch {
        let mut attempts = 0;
        let mut backoff = Duration::from_millis(10);
        loop {
            match commit_batch(pool, &[write]).await {
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
