//! Connections for statements that run alone (reads and single-row writes) and for the group
//! commit, handed out without the pool's round trip on release.
//!
//! The driver's pool pings every connection it takes back, to make sure that whatever the
//! last user left unfinished has run. For SQLite that ping is a round trip to the
//! connection's worker thread: two more thread switches for every statement, measured at
//! about a tenth of a login's server CPU (four reads per login). A SQLite file connection
//! belongs to this process and has no peer that could drop it, and its worker runs commands
//! in the order they were sent, so a statement left unfinished by a cancelled caller still
//! completes before the next one starts. For SQLite files the storage therefore keeps a few
//! connections of its own, taken out of the pool once, and lends them in turn.
//!
//! The group commit's transactions use them too (a transaction dropped unfinished queues its
//! rollback on the worker, ahead of whatever the connection runs next); other transactions
//! go through the pool. PostgreSQL connections stay in the pool (the server or the network
//! may close them while idle), and so does the single connection of `sqlite::memory:`, since
//! another connection would see another database.

use super::error::StorageError;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections kept out of the pool for single statements on a SQLite file: enough for
/// reads to overlap in WAL mode, few enough that each stays warm.
const KEPT_CONNECTIONS: usize = 4;

/// Where single statements get a connection: the pool, or the kept connections.
#[derive(Clone, Debug)]
pub(crate) struct Connections {
    pool: AnyPool,
    kept: Option<Arc<Kept>>,
}

/// The kept connections of one storage.
#[derive(Debug)]
pub(crate) struct Kept {
    idle: Mutex<Vec<AnyConnection>>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
}

impl Connections {
    /// Single statements through `pool`, or, with `keep`, through connections taken from it
    /// and kept.
    pub(crate) fn new(pool: AnyPool, keep: bool) -> Connections {
        let kept = keep.then(|| {
            Arc::new(Kept {
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(KEPT_CONNECTIONS)),
                closed: AtomicBool::new(false),
            })
        });
        Connections { pool, kept }
    }

    /// The pool, for transactions.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection for one statement; it goes back when the lease is dropped.
    pub(crate) async fn lease(&self) -> Result<Lease, StorageError> {
        let Some(kept) = &self.kept else {
            return Ok(Lease::Pooled(self.pool.acquire().await?));
        };
        let permit = kept.permits.clone().acquire_owned().await.map_err(|_| sqlx::Error::PoolClosed)?;
        if kept.closed.load(Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed.into());
        }
        let idle = kept.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            // Opened by the pool, so that it gets the pool's settings (the pragmas), then
            // detached: the pool no longer counts it and may open another in its place.
            None => self.pool.acquire().await?.detach(),
        };
        Ok(Lease::Kept { conn: Some(conn), kept: kept.clone(), _permit: permit })
    }

    /// Closes the kept connections not lent out (those lent out close when returned, and no
    /// more are lent), then the pool, waiting for its connections in use to be returned.
    pub(crate) async fn close(&self) {
        if let Some(kept) = &self.kept {
            kept.closed.store(true, Ordering::Release);
            kept.permits.close();
            let idle = std::mem::take(&mut *kept.idle.lock().unwrap_or_else(|p| p.into_inner()));
            for conn in idle {
                let _ = conn.close().await;
            }
        }
        self.pool.close().await;
    }
}

/// A connection lent for one statement.
pub(crate) enum Lease {
    Pooled(PoolConnection<Any>),
    Kept { conn: Option<AnyConnection>, kept: Arc<Kept>, _permit: OwnedSemaphorePermit },
}

impl Deref for Lease {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Lease::Pooled(conn) => conn,
            Lease::Kept { conn, .. } => conn.as_ref().unwrap_or_else(|| unreachable!("taken only on drop")),
        }
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Lease::Pooled(conn) => conn,
            Lease::Kept { conn, .. } => conn.as_mut().unwrap_or_else(|| unreachable!("taken only on drop")),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Lease::Kept { conn, kept, .. } = self
            && let Some(conn) = conn.take()
            && !kept.closed.load(Ordering::Acquire)
        {
            kept.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        }
    }
}
