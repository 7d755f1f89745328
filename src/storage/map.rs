//! The map shape: many keyed values per user and store.

use super::error::StorageError;
use super::keyval::{Existing, decode_value, insert, upsert};
use super::lease::Connections;
use super::value::Value;
use sqlx::Row;

/// A user's entries of one map store: key and value, sorted by key.
pub type Entries = Vec<(String, Value)>;

/// One map store of one host: per user, a set of keys each holding a [`Value`].
///
/// The empty key is where a [`KeyVal`](super::KeyVal) handle on the same store name keeps its
/// document; use each store name with one shape.
#[derive(Clone, Debug)]
pub struct Map {
    db: Connections,
    host: String,
    store: String,
}

impl Map {
    pub(crate) fn new(db: Connections, host: &str, store: &str) -> Map {
        Map { db, host: host.to_owned(), store: store.to_owned() }
    }

    /// The host this handle is scoped to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The store name this handle is scoped to.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// The value under `key` for `user`, or `None`.
    pub async fn get(&self, user: &str, key: &str) -> Result<Option<Value>, StorageError> {
        let row = sqlx::query(
            "SELECT type, value FROM kv \
             WHERE host = $1 AND username = $2 AND store = $3 AND key = $4",
        )
        .bind(self.host.as_str())
        .bind(user)
        .bind(self.store.as_str())
        .bind(key)
        .fetch_optional(&mut *self.db.lease().await?)
        .await?;
        row.map(|row| decode_value(&row, 0)).transpose()
    }

    /// Stores `value` under `key` for `user`, replacing any previous value; `None` deletes the
    /// key.
    pub async fn set(&self, user: &str, key: &str, value: Option<&Value>) -> Result<(), StorageError> {
        upsert(&self.db, &self.host, user, &self.store, key, value).await
    }

    /// Stores `value` under `key` for `user` unless the key already holds a value, and
    /// returns the value the key holds afterwards: `value` when it was free, the earlier one
    /// otherwise. Of writers racing for a free key exactly one wins and all of them get the
    /// winner's value (for example, nodes agreeing on a shared secret). `None` only when
    /// someone deleted the key in between.
    pub async fn insert_new(&self, user: &str, key: &str, value: &Value) -> Result<Option<Value>, StorageError> {
        insert(&self.db, [&self.host, user, &self.store, key], value, Existing::Keep).await?;
        self.get(user, key).await
    }

    /// All of `user`'s entries, sorted by key (bytewise).
    pub async fn get_all(&self, user: &str) -> Result<Entries, StorageError> {
        let rows = sqlx::query(
            "SELECT key, type, value FROM kv \
             WHERE host = $1 AND username = $2 AND store = $3 ORDER BY key",
        )
        .bind(self.host.as_str())
        .bind(user)
        .bind(self.store.as_str())
        .fetch_all(&mut *self.db.lease().await?)
        .await?;
        rows.iter().map(|row| Ok((row.try_get::<String, _>(0)?, decode_value(row, 1)?))).collect()
    }

    /// All of `user`'s entries in this store and in `other`, each sorted by key (bytewise), in
    /// one read when both stores are on the same host (two otherwise): one statement instead of two where a
    /// module needs both at the same moment (at initial presence: the roster and the pending
    /// subscription requests). `other` must come from the same storage.
    pub async fn get_all_with(&self, other: &Map, user: &str) -> Result<(Entries, Entries), StorageError> {
        if other.host != self.host {
            return Ok((self.get_all(user).await?, other.get_all(user).await?));
        }
        let rows = sqlx::query(
            "SELECT store, key, type, value FROM kv \
             WHERE host = $1 AND username = $2 AND store IN ($3, $4) ORDER BY store, key",
        )
        .bind(self.host.as_str())
        .bind(user)
        .bind(self.store.as_str())
        .bind(other.store.as_str())
        .fetch_all(&mut *self.db.lease().await?)
        .await?;
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        for row in &rows {
            let entry = (row.try_get::<String, _>(1)?, decode_value(row, 2)?);
            if row.try_get::<String, _>(0)? == self.store { mine.push(entry) } else { theirs.push(entry) }
        }
        // The same store named twice: its rows came once, and are both halves.
        if other.store == self.store {
            theirs = mine.clone();
        }
        Ok((mine, theirs))
    }

    /// The users that have `key` in this store, sorted (bytewise).
    pub async fn users_with_key(&self, key: &str) -> Result<Vec<String>, StorageError> {
        let rows = sqlx::query(
            "SELECT username FROM kv WHERE host = $1 AND store = $2 AND key = $3 \
             ORDER BY username",
        )
        .bind(self.host.as_str())
        .bind(self.store.as_str())
        .bind(key)
        .fetch_all(&mut *self.db.lease().await?)
        .await?;
        rows.iter().map(|row| Ok(row.try_get::<String, _>(0)?)).collect()
    }

    /// Deletes every key `user` has in this store; returns how many there were.
    pub async fn delete_all(&self, user: &str) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM kv WHERE host = $1 AND username = $2 AND store = $3")
            .bind(self.host.as_str())
            .bind(user)
            .bind(self.store.as_str())
            .execute(&mut *self.db.lease().await?)
            .await?;
        Ok(done.rows_affected())
    }
}
