//! Recognising, for a while after a start, messages sent again from before it (the flow is in
//! the module documentation, "Ids").
//!
//! A client that never saw the acknowledgement of a message (XEP-0198) sends it again with the
//! same origin id (XEP-0359 §4) when it is back, which after a restart means a message whose
//! first copy the previous run handled. That first copy, keyed by sender and origin id, is in
//! one of three places:
//! * delivered and acknowledged: among the delivery records the previous run logged; the
//!   newest of them are read once, when the first message with an origin id needs them;
//! * in the inbox, sent to a client of this run when it became available: its key is noted
//!   here as it goes out;
//! * in the inbox, its account with no client yet: storing the copy under the same key adds
//!   nothing (queued appends keep the first item with a key), and it is sent once at login.
//!
//! So no message waits for a storage read; this run's own copies are the origin-id module's
//! business. Keys are noted only during the check period, and the set goes when it ends.

use crate::module_api::{Archive, ArchiveQuery, StanzaError, now_micros};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

/// The archive "account" of the delivery record log (not an account name: it starts with a
/// space, which account names cannot). Records are lines of a log under this one name (see
/// `Archive::log_queued`): the records of one commit batch share one row, whose key starts
/// with its time, so each row is appended at the end of every index of the archive table.
/// A row per record cost about a third of the server's CPU in the chat benchmark.
pub(super) const RECORD_LOG: &str = " delivered";

/// Rows of the record log read per query at start (each holds a commit batch's records).
const RECORD_ROWS_PER_READ: usize = 64;

/// The duplicate check's settings (see the module's options).
pub(super) struct Dedup {
    pub check_after_start: Duration,
    pub records_at_start: usize,
    pub window: Duration,
}

pub(super) struct RestartCheck {
    settings: Dedup,
    /// `account/key` of every message known to come from before the start.
    earlier: Mutex<HashSet<String>>,
    /// The previous run's newest records have been added to `earlier`.
    loaded: tokio::sync::OnceCell<()>,
}

impl RestartCheck {
    pub(super) fn new(settings: Dedup) -> RestartCheck {
        RestartCheck { settings, earlier: Mutex::new(HashSet::new()), loaded: tokio::sync::OnceCell::new() }
    }

    /// Whether the check still runs, `uptime` after the start. Past it, the set is dropped.
    pub(super) fn active(&self, uptime: Duration) -> bool {
        let active = uptime < self.settings.check_after_start;
        if !active && self.loaded.initialized() {
            let mut earlier = self.earlier();
            if earlier.capacity() > 0 {
                *earlier = HashSet::new();
            }
        }
        active
    }

    /// Whether the message with `key` to `user` was handled before the start.
    pub(super) async fn seen(&self, records: &Archive, user: &str, key: &str) -> Result<bool, StanzaError> {
        self.loaded.get_or_try_init(|| self.load(records)).await?;
        Ok(self.earlier().contains(&record_entry(user, key)))
    }

    /// Notes that the message with `key`, stored before the start, is on its way to a client.
    pub(super) fn note(&self, uptime: Duration, user: &str, key: &str) {
        if self.active(uptime) {
            self.earlier().insert(record_entry(user, key));
        }
    }

    /// Adds the previous run's newest delivery records: rows of the log, newest first, until
    /// `records_at_start` records are in or the log's rows within the window run out.
    async fn load(&self, records: &Archive) -> Result<(), StanzaError> {
        let window = i64::try_from(self.settings.window.as_micros()).unwrap_or(i64::MAX);
        let mut before = None;
        let mut added = 0;
        while added < self.settings.records_at_start {
            let query = ArchiveQuery {
                start: Some(now_micros().saturating_sub(window)),
                before: before.take(),
                limit: Some(RECORD_ROWS_PER_READ),
                reverse: true,
                ..ArchiveQuery::default()
            };
            let page = records.find(RECORD_LOG, &query).await.map_err(|e| {
                tracing::error!(error = %e, "offline: reading delivery records failed");
                StanzaError::internal_server_error()
            })?;
            // Items come oldest first; the next page ends before this one's oldest.
            let Some(oldest) = page.items.first().map(|item| item.key.clone()) else { break };
            let mut earlier = self.earlier();
            for item in &page.items {
                let Ok(lines) = std::str::from_utf8(&item.value.data) else { continue };
                for entry in lines.lines() {
                    earlier.insert(entry.to_owned());
                    added += 1;
                }
            }
            before = Some(oldest);
        }
        Ok(())
    }

    fn earlier(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.earlier.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How a delivery record names its message: account names and keys hold no `/`.
pub(super) fn record_entry(user: &str, key: &str) -> String {
    format!("{user}/{key}")
}
