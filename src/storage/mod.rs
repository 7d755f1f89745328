//! Durable state, in the three shapes Prosody proved sufficient for an XMPP server.
//!
//! - [`KeyVal`]: one document per user and store (an account, a vCard, a room's
//!   configuration).
//! - [`Map`]: many keyed values per user and store (roster items, push registrations), with a
//!   lookup of which users hold a key.
//! - [`Archive`]: an append-only, ordered list per user and store (MAM, offline messages, PEP
//!   items), queryable by time, correspondent and id, paged RSM-style by position, and expired
//!   by age. An archive whose items each user keeps a short time and reads back in order (the
//!   inbox) is opened with [`Storage::queue`]: the same operations on a table with fewer
//!   indexes, so that writing and removing an item costs half the index work.
//!
//! A module asks [`Storage`] for a handle naming its host and store, for example
//! `storage.map("example.org", "roster")`, and never sees SQL. Values are bytes with a declared
//! encoding ([`Value`]); timestamps are Unix microseconds as `i64`.
//!
//! Everything lives in three tables, `kv` (keyval and map), `archive` and `queue` (archives),
//! with the same columns on SQLite and PostgreSQL. Keyval is the map entry with the empty key,
//! so a store name should be used with one shape only. Dialect differences are confined to
//! `dialect.rs` and the migration folders `migrations/sqlite` and `migrations/postgres`.
//!
//! Opening is strict: if the database cannot be reached or migrated, [`Storage::open`] fails
//! and the server does not start. There is no fallback store.

pub mod accounts;
mod archive;
mod commit;
mod dialect;
mod error;
mod keyval;
mod lease;
mod map;
mod sql;
mod value;

pub use archive::{Archive, ArchiveQuery, ArchivedId, ArchivedItem, NewItem, Page};
pub use commit::GroupCommit;
pub use dialect::Backend;
pub use error::{CodecError, StorageError};
pub use keyval::KeyVal;
pub use map::{Entries, Map};
pub use value::{Value, ValueKind};

use archive::Table;
use dialect::Target;
use sql::Sql;

/// The current time in microseconds since the Unix epoch (storage timestamps).
pub fn now_micros() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}
use lease::Connections;

/// An open database: its connections (a pool, and on a SQLite file a few kept out of it, see
/// `lease.rs`) and the backend behind them.
///
/// Cloning is cheap (the connections are shared), so every part of the server can keep its own copy.
#[derive(Clone, Debug)]
pub struct Storage {
    db: Connections,
    backend: Backend,
    commits: std::sync::Arc<GroupCommit>,
}

impl Storage {
    /// Opens (creating if needed) and migrates the database at `url`.
    ///
    /// Accepted URLs:
    /// - `sqlite://path/to/starling.db` (relative) or `sqlite:///var/lib/starling/starling.db`
    ///   (absolute): the file and its directory are created when missing; connections use WAL,
    ///   a busy timeout, foreign keys and `synchronous = NORMAL`;
    /// - `sqlite::memory:`: a private in-memory database that lives as long as this
    ///   [`Storage`], served by a single connection (for tests);
    /// - `postgres://user@host:port/database` (or `postgresql://`): the database must exist.
    ///
    /// Fails with [`StorageError::Database`] when the URL is not one of these or the database
    /// cannot be reached (connection attempts are retried for ten seconds), and with [`StorageError::Migrate`] when the schema cannot be brought
    /// up to date.
    pub async fn open(url: &str) -> Result<Storage, StorageError> {
        sqlx::any::install_default_drivers();
        let target = Target::parse(url)?;
        let backend = target.backend();
        target.prepare().await?;
        let pool = target.pool_options().connect(target.url()).await?;
        if let Err(e) = backend.migrator().run(&pool).await {
            pool.close().await;
            return Err(e.into());
        }
        tracing::info!(backend = backend.name(), "storage opened");
        let db = Connections::new(pool, target.keeps_connections());
        let commits = GroupCommit::start(db.clone(), backend);
        Ok(Storage { db, backend, commits })
    }

    /// Which database engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The group commit that queued archive writes go through (XEP-0198 acks wait on it).
    pub fn commits(&self) -> &GroupCommit {
        &self.commits
    }

    /// The keyval store `store` of virtual host `host`.
    pub fn keyval(&self, host: &str, store: &str) -> KeyVal {
        KeyVal::new(self.db.clone(), host, store)
    }

    /// The map store `store` of virtual host `host`.
    pub fn map(&self, host: &str, store: &str) -> Map {
        Map::new(self.db.clone(), host, store)
    }

    /// The archive store `store` of virtual host `host`, for long histories (message
    /// archives, room history): indexed for paging, search by correspondent and time, and
    /// expiry.
    pub fn archive(&self, host: &str, store: &str) -> Archive {
        Archive::new(self.db.clone(), self.backend, self.commits.clone(), Table::Archive, host, store)
    }

    /// The archive store `store` of virtual host `host`, kept as a queue: the same operations
    /// as [`archive`](Self::archive), for items each user holds a short time and reads back
    /// in order (an inbox). Its items cost half the index work to write and to delete; reads
    /// in order sort the user's items, and expiry scans all queued items (see `Table`). A
    /// store is one or the other: the same name opened both ways names two stores.
    pub fn queue(&self, host: &str, store: &str) -> Archive {
        Archive::new(self.db.clone(), self.backend, self.commits.clone(), Table::Queue, host, store)
    }

    /// Removes everything `user` of `host` has in any store of any shape, in one transaction:
    /// what account deletion needs.
    pub async fn delete_user(&self, host: &str, user: &str) -> Result<(), StorageError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query("DELETE FROM kv WHERE host = $1 AND username = $2").bind(host).bind(user).execute(&mut *tx).await?;
        for table in Table::ALL {
            let mut delete = Sql::new(self.backend, "DELETE FROM ");
            delete.push(table.name()).push(" WHERE host = ").text(host).push(" AND username = ").text(user);
            delete.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Closes every connection, waiting for those in use to be returned. Handles obtained
    /// earlier fail from then on. For `sqlite::memory:` this discards the data.
    pub async fn close(&self) {
        self.commits.close();
        self.commits.flush().await;
        self.db.close().await;
    }
}
