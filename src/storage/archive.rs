//! The archive shape: append-only, ordered lists of items per user and store.
//!
//! Items live in one of two tables with the same columns, chosen per store when its handle is
//! made ([`Table`]): `archive`, indexed for long histories searched by position, correspondent
//! and time, or `queue`, indexed by key only, for items that each user keeps a short time and
//! reads back in order (an inbox). Every operation works on both; what differs is its cost.

use super::commit::{GroupCommit, Write};
use super::dialect::Backend;
use super::error::StorageError;
use super::keyval::decode_value;
use super::lease::Connections;
use super::sql::{Bounds, Sql, push_archive_filter, random_key};
use super::value::Value;
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::sync::Arc;

/// The item columns, in the order [`decode_item`] reads them (followed by the table's name).
const ITEM_COLUMNS: &str = "SELECT sort_id, key, \"when\", \"with\", type, value FROM ";

/// The table an archive's items live in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    /// `archive`: indexes on key, position (`sort_id`), correspondent and time, so that long
    /// histories page, search and expire without scanning (message archives, room history).
    Archive,
    /// `queue`: the key index only. An item costs two B-tree entries to write and two to
    /// delete instead of four, which is most of what storing and removing it costs: measured,
    /// 10-13% of the server's CPU per message in the durable chat benchmark. A page of a
    /// user's items in order sorts the positions of all of that user's items (read from the
    /// key index), and expiry scans the table: cheap while each user holds few items for a
    /// short time, as an inbox does.
    Queue,
}

impl Table {
    /// Both tables: what touches every archive (a batch's writes, account deletion,
    /// statistics) goes through each.
    pub(crate) const ALL: [Table; 2] = [Table::Archive, Table::Queue];

    /// The table's name in SQL.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Archive => "archive",
            Table::Queue => "queue",
        }
    }
}

/// Keys per statement in [`Archive::delete_items`]: a power of two, under SQLite's limit of
/// 500 parts in a compound `SELECT` and far under both databases' limits on bound parameters.
const KEYS_PER_STATEMENT: usize = 64;

/// An item to append to an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewItem {
    /// The item's id, unique within its archive (host, user and store), e.g. a stanza-id or a
    /// PEP item id. `None` generates a random URL-safe id. Appending with a key the archive
    /// already holds replaces that item: the old one is removed and the new one goes to the
    /// end. The empty string is not a valid key.
    pub key: Option<String>,
    /// When the item was created, in Unix microseconds.
    pub when: i64,
    /// The other party (a bare JID for MAM); empty when not applicable. Items with an empty
    /// `with` are left out of the correspondent index, so a store never searched by
    /// correspondent is cheaper to write when it leaves `with` empty; a query for `with` = ""
    /// still finds them, by scanning the user's items.
    pub with: String,
    /// The payload.
    pub value: Value,
}

/// One row of a multi-row INSERT (see `Archive::insert_rows`): the item in `user`'s archive
/// of `host` and `store`.
pub(crate) struct ArchiveRow<'a> {
    pub table: Table,
    pub host: &'a str,
    pub store: &'a str,
    pub user: &'a str,
    pub item: &'a NewItem,
}

/// An item by its key in `user`'s archive of `host` and `store` (see `Archive::delete_items`).
/// Hashed by account and key only: host and store take few values, and items of one account
/// with one key in different stores are rare, so they seldom share a hash.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct ItemKey<'a> {
    pub table: Table,
    pub host: &'a str,
    pub store: &'a str,
    pub user: &'a str,
    pub key: &'a str,
}

impl std::hash::Hash for ItemKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.user, self.key).hash(state);
    }
}

/// Where an appended item landed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArchivedId {
    /// Position in insertion order across the archive's whole table; grows with every append.
    pub sort_id: i64,
    /// The item's key (generated when none was given).
    pub key: String,
}

/// An item read from an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedItem {
    /// Position in insertion order, the paging order.
    pub sort_id: i64,
    /// The item's id within its archive.
    pub key: String,
    /// When the item was created, in Unix microseconds.
    pub when: i64,
    /// The other party, as given on append.
    pub with: String,
    /// The payload.
    pub value: Value,
}

/// Which items of one archive to find, count or delete. Every filter that is set must match;
/// the default selects the whole archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Only items with exactly this `with`.
    pub with: Option<String>,
    /// Only items at or after this time (Unix microseconds, inclusive).
    pub start: Option<i64>,
    /// Only items at or before this time (Unix microseconds, inclusive).
    pub end: Option<i64>,
    /// Only items appended after the item with this key (RSM `<after/>`). An unknown key is
    /// [`StorageError::ItemNotFound`].
    pub after: Option<String>,
    /// Only items appended before the item with this key (RSM `<before/>`). An unknown key is
    /// [`StorageError::ItemNotFound`].
    pub before: Option<String>,
    /// Only items after this position (a `sort_id` seen earlier). Unlike `after`, the item at
    /// that position need not exist any more, so a reader paging through a store while other
    /// writers remove items keeps its place.
    pub after_position: Option<i64>,
    /// Only items with one of these keys; unknown keys are ignored and an empty list selects
    /// nothing. Meant for short lists (each key is one bound parameter).
    pub ids: Option<Vec<String>>,
    /// At most this many items (used by [`Archive::find`] only).
    pub limit: Option<usize>,
    /// Take the last `limit` matching items instead of the first (RSM `<before/>` paging).
    /// Items still come back in chronological order. Used by [`Archive::find`] only.
    pub reverse: bool,
}

/// One page of a [`Archive::find`] result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The items, oldest first, whatever the query's direction.
    pub items: Vec<ArchivedItem>,
    /// No further matching items lie beyond this page in the direction of the query (after the
    /// last item when forward, before the first when `reverse`).
    pub complete: bool,
}

/// One archive store of one host: per user, items in insertion order.
///
/// Paging goes by `sort_id`, never by offset. On PostgreSQL, sort ids are taken when a
/// transaction inserts and become visible when it commits, so concurrent writers to one
/// archive can commit slightly out of order; a single writer per archive (such as a group
/// commit queue) keeps the order exact.
#[derive(Clone, Debug)]
pub struct Archive {
    db: Connections,
    backend: Backend,
    table: Table,
    // Shared, not copied: every queued write carries a clone of its archive.
    host: Arc<str>,
    store: Arc<str>,
    commits: Arc<GroupCommit>,
}

impl Archive {
    pub(crate) fn new(
        db: Connections,
        backend: Backend,
        commits: Arc<GroupCommit>,
        table: Table,
        host: &str,
        store: &str,
    ) -> Archive {
        Archive { db, backend, table, host: host.into(), store: store.into(), commits }
    }

    /// The table this handle's items live in.
    pub(crate) fn table(&self) -> Table {
        self.table
    }

    /// The host this handle is scoped to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The store name this handle is scoped to.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// Appends `item` to `user`'s archive.
    pub async fn append(&self, user: &str, item: &NewItem) -> Result<ArchivedId, StorageError> {
        if item.key.is_none() {
            // A fresh random key cannot replace anything: one statement, no transaction.
            let mut conn = self.db.lease().await?;
            return self.insert(&mut conn, user, item).await;
        }
        let mut tx = self.db.pool().begin().await?;
        let id = self.insert(&mut tx, user, item).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Appends a batch of `(user, item)` pairs in one transaction: either all are stored or,
    /// on error, none. Returns their ids in the order given.
    pub async fn append_many(&self, items: &[(String, NewItem)]) -> Result<Vec<ArchivedId>, StorageError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.pool().begin().await?;
        let mut ids = Vec::with_capacity(items.len());
        for (user, item) in items {
            ids.push(self.insert(&mut tx, user, item).await?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Inserts items into their archives, all in `table`, on `conn` with one statement,
    /// skipping those whose key is taken (see [`append_queued`](Self::append_queued)). Rows go
    /// in in the order given.
    ///
    /// On SQLite the statement is `INSERT OR IGNORE`, which skips a row that breaks any
    /// constraint (also the check against an empty key) instead of failing. A statement that
    /// can fail halfway needs a statement journal inside a transaction, a copy of every page
    /// it touches: measured, that was a tenth of SQLite's work in the durable chat benchmark.
    /// PostgreSQL skips taken keys only (`ON CONFLICT … DO NOTHING`) and fails the batch on
    /// other violations, which the group commit then drops write by write.
    pub(crate) async fn insert_rows(
        conn: &mut AnyConnection,
        backend: Backend,
        table: Table,
        rows: &[&ArchiveRow<'_>],
    ) -> Result<(), StorageError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (start, on_conflict) = match backend {
            Backend::Sqlite => ("INSERT OR IGNORE INTO ", ""),
            Backend::Postgres => ("INSERT INTO ", " ON CONFLICT (host, username, store, key) DO NOTHING"),
        };
        let mut sql = Sql::new(backend, start);
        sql.push(table.name()).push(" (host, username, store, key, \"when\", \"with\", type, value) VALUES ");
        for (i, row) in rows.iter().enumerate() {
            let item = row.item;
            let key = match &item.key {
                Some(key) => key.clone(),
                None => random_key()?,
            };
            sql.push(if i == 0 { "(" } else { ", (" });
            sql.text(row.host).push(", ").text(row.user).push(", ").text(row.store);
            sql.push(", ").text(key).push(", ").int(item.when).push(", ").text(item.with.as_str());
            sql.push(", ").text(item.value.kind.as_str()).push(", ").bytes(item.value.data.clone()).push(")");
        }
        sql.push(on_conflict);
        sql.build().execute(&mut *conn).await?;
        Ok(())
    }

    /// Inserts one item on `conn`, removing an earlier item with the same key first.
    pub(crate) async fn insert(
        &self,
        conn: &mut AnyConnection,
        user: &str,
        item: &NewItem,
    ) -> Result<ArchivedId, StorageError> {
        let key = match &item.key {
            Some(key) => {
                let mut sql = Sql::new(self.backend, "DELETE FROM ");
                sql.push(self.table.name());
                self.push_item_key(&mut sql, user, key);
                sql.build().execute(&mut *conn).await?;
                key.clone()
            }
            None => random_key()?,
        };
        let mut sql = Sql::new(self.backend, "INSERT INTO ");
        sql.push(self.table.name()).push(" (host, username, store, key, \"when\", \"with\", type, value) VALUES (");
        sql.text(&*self.host).push(", ").text(user).push(", ").text(&*self.store).push(", ").text(key.as_str());
        sql.push(", ").int(item.when).push(", ").text(item.with.as_str()).push(", ").text(item.value.kind.as_str());
        sql.push(", ").bytes(item.value.data.clone()).push(") RETURNING sort_id");
        let row = sql.build().fetch_one(&mut *conn).await?;
        Ok(ArchivedId { sort_id: row.try_get(0)?, key })
    }

    /// The items of `user`'s archive matching `query`, at most `limit` of them, from the start
    /// of the match (or from its end when `reverse`), oldest first.
    pub async fn find(&self, user: &str, query: &ArchiveQuery) -> Result<Page, StorageError> {
        let bounds = self.bounds(user, query).await?;
        let mut sql = Sql::new(self.backend, ITEM_COLUMNS);
        sql.push(self.table.name());
        match self.table {
            Table::Archive => {
                push_archive_filter(&mut sql, &self.host, user, &self.store, query, bounds);
                sql.push(if query.reverse { " ORDER BY sort_id DESC" } else { " ORDER BY sort_id ASC" });
                push_page_limit(&mut sql, query.limit);
            }
            Table::Queue => {
                // The queue has no position index: the page's positions are picked from the
                // key index alone (it holds the position: SQLite's rowid, and PostgreSQL's
                // index includes it), then only the page's rows are read. Reading whole rows
                // to sort them would read all of the user's remaining items for every page.
                // Ordering by an expression keeps both planners from walking the table in
                // position order in search of the user's items.
                let by_expression =
                    if query.reverse { " ORDER BY sort_id + 0 DESC" } else { " ORDER BY sort_id + 0 ASC" };
                sql.push(" WHERE sort_id IN (SELECT sort_id FROM ").push(self.table.name());
                push_archive_filter(&mut sql, &self.host, user, &self.store, query, bounds);
                sql.push(by_expression);
                push_page_limit(&mut sql, query.limit);
                sql.push(")").push(by_expression);
            }
        }
        let rows = sql.build().fetch_all(&mut *self.db.lease().await?).await?;
        let mut items = rows.iter().map(decode_item).collect::<Result<Vec<_>, _>>()?;
        let complete = match query.limit {
            Some(limit) if items.len() > limit => {
                items.truncate(limit);
                false
            }
            _ => true,
        };
        if query.reverse {
            items.reverse();
        }
        Ok(Page { items, complete })
    }

    /// How many items of `user`'s archive match `query`. `limit` and `reverse` are ignored;
    /// `after` and `before` are not (clear them for an RSM total).
    pub async fn count(&self, user: &str, query: &ArchiveQuery) -> Result<usize, StorageError> {
        let bounds = self.bounds(user, query).await?;
        let mut sql = Sql::new(self.backend, "SELECT COUNT(*) FROM ");
        sql.push(self.table.name());
        push_archive_filter(&mut sql, &self.host, user, &self.store, query, bounds);
        let row = sql.build().fetch_one(&mut *self.db.lease().await?).await?;
        let count: i64 = row.try_get(0)?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    /// The item with `key` in `user`'s archive, or `None`.
    pub async fn get(&self, user: &str, key: &str) -> Result<Option<ArchivedItem>, StorageError> {
        let mut sql = Sql::new(self.backend, ITEM_COLUMNS);
        sql.push(self.table.name());
        self.push_item_key(&mut sql, user, key);
        let row = sql.build().fetch_optional(&mut *self.db.lease().await?).await?;
        row.as_ref().map(decode_item).transpose()
    }

    /// Deletes the items of `user`'s archive matching `query` (`limit` and `reverse` are
    /// ignored); returns how many were removed.
    pub async fn delete(&self, user: &str, query: &ArchiveQuery) -> Result<u64, StorageError> {
        let bounds = self.bounds(user, query).await?;
        let mut sql = Sql::new(self.backend, "DELETE FROM ");
        sql.push(self.table.name());
        push_archive_filter(&mut sql, &self.host, user, &self.store, query, bounds);
        Ok(sql.build().execute(&mut *self.db.lease().await?).await?.rows_affected())
    }

    /// Deletes the items with these keys from `user`'s archive, atomically; unknown keys are
    /// ignored. Returns how many were removed.
    pub async fn delete_by_keys(&self, user: &str, keys: &[String]) -> Result<u64, StorageError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db.pool().begin().await?;
        let removed = self.delete_keys_on(&mut tx, user, keys).await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// [`delete_by_keys`](Self::delete_by_keys) on a given connection or transaction.
    pub(crate) async fn delete_keys_on(
        &self,
        conn: &mut AnyConnection,
        user: &str,
        keys: &[impl AsRef<str>],
    ) -> Result<u64, StorageError> {
        let (table, host, store) = (self.table, &*self.host, &*self.store);
        let items: Vec<ItemKey<'_>> =
            keys.iter().map(|key| ItemKey { table, host, store, user, key: key.as_ref() }).collect();
        Archive::delete_items(conn, self.backend, &items).await
    }

    /// Deletes these items, of any archives and accounts, on `conn`; returns how many were
    /// removed.
    ///
    /// Up to [`KEYS_PER_STATEMENT`] keys share one statement: `sort_id IN` a `UNION ALL` of
    /// one lookup per key by (host, account, store, key). Both databases look each part up in
    /// the key index; a plain `OR` of the same conditions makes SQLite search by host alone,
    /// and row values `IN (VALUES …)` make it scan the table (checked with `EXPLAIN QUERY
    /// PLAN`). A statement's part count is padded to a power of two by repeating its last
    /// key, so that there are only a few statement texts and the driver's prepared-statement
    /// cache keeps them: preparing a new text for every batch cost more than it saved.
    ///
    /// The group commit deletes for every recipient that took messages in a batch: one
    /// statement per account was one round trip to the database's worker thread per message
    /// in the chat benchmark.
    pub(crate) async fn delete_items(
        conn: &mut AnyConnection,
        backend: Backend,
        items: &[ItemKey<'_>],
    ) -> Result<u64, StorageError> {
        let mut removed = 0;
        for table in Table::ALL {
            let of_table: Vec<ItemKey<'_>> = items.iter().copied().filter(|item| item.table == table).collect();
            for chunk in of_table.chunks(KEYS_PER_STATEMENT) {
                let padded = chunk.len().next_power_of_two();
                let last = chunk.len() - 1;
                let mut sql = Sql::new(backend, "DELETE FROM ");
                sql.push(table.name()).push(" WHERE sort_id IN (");
                for i in 0..padded {
                    let item = chunk[i.min(last)];
                    sql.push(if i == 0 { "SELECT sort_id FROM " } else { " UNION ALL SELECT sort_id FROM " });
                    sql.push(table.name()).push(" WHERE host = ").text(item.host);
                    sql.push(" AND username = ").text(item.user).push(" AND store = ").text(item.store);
                    sql.push(" AND key = ").text(item.key);
                }
                sql.push(")");
                removed += sql.build().execute(&mut *conn).await?.rows_affected();
            }
        }
        Ok(removed)
    }

    /// Queues the append of `item` to `user`'s archive on the group commit; returns the write's
    /// sequence number, durable once [`GroupCommit::committed`] of it resolves. Unlike
    /// [`append`](Self::append), an item whose key the archive already holds is left as it is
    /// and the new one dropped: a queued append is idempotent, so that a message stored twice
    /// under the same key (a retransmission) keeps its first place.
    pub async fn append_queued(&self, user: &str, item: NewItem) -> u64 {
        let write = Write::Append { archive: self.clone(), user: user.to_owned(), item };
        self.commits.enqueue(write).await
    }

    /// Queues the deletion of these keys from `user`'s archive on the group commit.
    pub async fn delete_queued(&self, user: &str, keys: Vec<String>) -> u64 {
        let write = Write::Delete { archive: self.clone(), user: user.to_owned(), keys };
        self.commits.enqueue(write).await
    }

    /// Queues `entry` (one line, no `\n`) for a log kept in `user`'s archive. The entries of
    /// one commit batch share one item: its value is the entries in queue order, one per
    /// line, its `when` the commit's time and its key that time in hexadecimal followed by a
    /// random part, so that items sort by time and each lands at the end of the indexes.
    /// A record per event costs a row with all of the table's index entries; this costs one
    /// row per batch. Readers split each item's value into lines.
    pub async fn log_queued(&self, user: &str, entry: String) -> u64 {
        let write = Write::Log { archive: self.clone(), user: user.to_owned(), entry };
        self.commits.enqueue(write).await
    }

    /// The group commit this archive's queued writes go through.
    pub fn commits(&self) -> &GroupCommit {
        &self.commits
    }

    /// Deletes, for every user of this host and store, the items created strictly before
    /// `when` (Unix microseconds); returns how many were removed. This is the expiry job's
    /// call.
    pub async fn delete_older_than(&self, when: i64) -> Result<u64, StorageError> {
        let mut sql = Sql::new(self.backend, "DELETE FROM ");
        sql.push(self.table.name()).push(" WHERE host = ").text(&*self.host).push(" AND store = ").text(&*self.store);
        sql.push(" AND \"when\" < ").int(when);
        let done = sql.build().execute(&mut *self.db.lease().await?).await?;
        Ok(done.rows_affected())
    }

    /// The users with at least one item in this store, sorted (bytewise).
    pub async fn users(&self) -> Result<Vec<String>, StorageError> {
        let mut sql = Sql::new(self.backend, "SELECT DISTINCT username FROM ");
        sql.push(self.table.name()).push(" WHERE host = ").text(&*self.host).push(" AND store = ").text(&*self.store);
        sql.push(" ORDER BY username");
        let rows = sql.build().fetch_all(&mut *self.db.lease().await?).await?;
        rows.iter().map(|row| Ok(row.try_get::<String, _>(0)?)).collect()
    }

    /// Appends ` WHERE …` selecting `user`'s item with `key` in this archive.
    fn push_item_key(&self, sql: &mut Sql, user: &str, key: &str) {
        sql.push(" WHERE host = ").text(&*self.host).push(" AND username = ").text(user);
        sql.push(" AND store = ").text(&*self.store).push(" AND key = ").text(key);
    }

    /// Resolves the query's `after`/`before` keys to sort ids.
    async fn bounds(&self, user: &str, query: &ArchiveQuery) -> Result<Bounds, StorageError> {
        let mut bounds = Bounds { after: query.after_position, before: None };
        if let Some(key) = &query.after {
            let position = self.position(user, key).await?;
            bounds.after = Some(bounds.after.map_or(position, |p| p.max(position)));
        }
        if let Some(key) = &query.before {
            bounds.before = Some(self.position(user, key).await?);
        }
        Ok(bounds)
    }

    /// The sort id of the item with `key`, or [`StorageError::ItemNotFound`].
    async fn position(&self, user: &str, key: &str) -> Result<i64, StorageError> {
        let mut sql = Sql::new(self.backend, "SELECT sort_id FROM ");
        sql.push(self.table.name());
        self.push_item_key(&mut sql, user, key);
        let row = sql.build().fetch_optional(&mut *self.db.lease().await?).await?;
        match row {
            Some(row) => Ok(row.try_get(0)?),
            None => Err(StorageError::ItemNotFound(key.to_owned())),
        }
    }
}

/// Appends the `LIMIT` of a page of at most `limit` items: one row more than asked, which
/// tells whether the page is the last one.
fn push_page_limit(sql: &mut Sql, limit: Option<usize>) {
    if let Some(limit) = limit {
        let fetch = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1).min(i64::MAX as u64);
        sql.push(" LIMIT ").int_literal(fetch);
    }
}

/// Reads the columns of [`ITEM_COLUMNS`].
fn decode_item(row: &AnyRow) -> Result<ArchivedItem, StorageError> {
    Ok(ArchivedItem {
        sort_id: row.try_get(0)?,
        key: row.try_get(1)?,
        when: row.try_get(2)?,
        with: row.try_get(3)?,
        value: decode_value(row, 4)?,
    })
}
