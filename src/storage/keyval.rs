//! The keyval shape: one document per user and store.

use super::error::StorageError;
use super::lease::Connections;
use super::value::{Value, ValueKind};
use sqlx::Row;

/// One keyval store of one host: a single [`Value`] per user.
///
/// Stored as the `kv` row with the empty key, so a map handle on the same store name sees the
/// document under key `""`.
#[derive(Clone, Debug)]
pub struct KeyVal {
    db: Connections,
    host: String,
    store: String,
}

impl KeyVal {
    pub(crate) fn new(db: Connections, host: &str, store: &str) -> KeyVal {
        KeyVal { db, host: host.to_owned(), store: store.to_owned() }
    }

    /// The host this handle is scoped to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The store name this handle is scoped to.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// `user`'s document, or `None` if there is none.
    pub async fn get(&self, user: &str) -> Result<Option<Value>, StorageError> {
        let row = sqlx::query(
            "SELECT type, value FROM kv \
             WHERE host = $1 AND username = $2 AND store = $3 AND key = ''",
        )
        .bind(self.host.as_str())
        .bind(user)
        .bind(self.store.as_str())
        .fetch_optional(&mut *self.db.lease().await?)
        .await?;
        row.map(|row| decode_value(&row, 0)).transpose()
    }

    /// Replaces `user`'s document with `value`, or deletes it when `value` is `None`.
    pub async fn set(&self, user: &str, value: Option<&Value>) -> Result<(), StorageError> {
        upsert(&self.db, &self.host, user, &self.store, "", value).await
    }

    /// The users that have a document in this store, sorted (bytewise).
    pub async fn users(&self) -> Result<Vec<String>, StorageError> {
        let rows = sqlx::query(
            "SELECT username FROM kv WHERE host = $1 AND store = $2 AND key = '' \
             ORDER BY username",
        )
        .bind(self.host.as_str())
        .bind(self.store.as_str())
        .fetch_all(&mut *self.db.lease().await?)
        .await?;
        rows.iter().map(|row| Ok(row.try_get::<String, _>(0)?)).collect()
    }
}

/// Writes (or with `None`, deletes) one `kv` row. Shared by keyval and map.
pub(crate) async fn upsert(
    db: &Connections,
    host: &str,
    user: &str,
    store: &str,
    key: &str,
    value: Option<&Value>,
) -> Result<(), StorageError> {
    match value {
        Some(value) => insert(db, [host, user, store, key], value, Existing::Replace).await,
        None => {
            sqlx::query("DELETE FROM kv WHERE host = $1 AND username = $2 AND store = $3 AND key = $4")
                .bind(host)
                .bind(user)
                .bind(store)
                .bind(key)
                .execute(&mut *db.lease().await?)
                .await?;
            Ok(())
        }
    }
}

/// What [`insert`] does with a row that already holds the key.
pub(crate) enum Existing {
    Replace,
    Keep,
}

/// Inserts one `kv` row under `[host, user, store, key]`.
pub(crate) async fn insert(
    db: &Connections,
    [host, user, store, key]: [&str; 4],
    value: &Value,
    existing: Existing,
) -> Result<(), StorageError> {
    let statement = match existing {
        Existing::Replace => {
            "INSERT INTO kv (host, username, store, key, type, value) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (host, username, store, key) DO UPDATE SET type = excluded.type, value = excluded.value"
        }
        Existing::Keep => {
            "INSERT INTO kv (host, username, store, key, type, value) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (host, username, store, key) DO NOTHING"
        }
    };
    sqlx::query(statement)
        .bind(host)
        .bind(user)
        .bind(store)
        .bind(key)
        .bind(value.kind.as_str())
        .bind(value.data.as_slice())
        .execute(&mut *db.lease().await?)
        .await?;
    Ok(())
}

/// Reads a value from the `type` column at `index` and the `value` column after it.
pub(crate) fn decode_value(row: &sqlx::any::AnyRow, index: usize) -> Result<Value, StorageError> {
    let kind: String = row.try_get(index)?;
    let data: Vec<u8> = row.try_get(index + 1)?;
    Ok(Value { kind: ValueKind::from_column(&kind)?, data })
}
