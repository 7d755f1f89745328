//! Statements assembled at run time, for the archive queries whose filters are optional.
//!
//! [`Sql`] only accepts `&'static str` fragments, and every value goes through a placeholder,
//! so no caller can format a value into the SQL text.
//!
//! Placeholders are numbered (`$N`) for PostgreSQL and anonymous (`?`, bound in order) for
//! SQLite. The anonymous form matters for the group commit's multi-row statements: for every
//! bound value the SQLite driver asks the statement for the parameter's name, and SQLite finds
//! a numbered parameter's name by a linear scan of all of them, so binding N numbered values
//! costs O(N²). Measured on 256-value INSERTs, that lookup alone was 9% of the server's CPU in
//! the chat benchmark; anonymous parameters have no names to scan.

use super::archive::ArchiveQuery;
use super::dialect::Backend;
use super::error::StorageError;
use sqlx::any::{Any, AnyArguments};
use sqlx::query::Query;
use std::fmt::Write;

/// A value bound to a placeholder.
enum Bind {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
}

/// A statement under construction: fixed text plus bound values.
pub(crate) struct Sql {
    text: String,
    binds: Vec<Bind>,
    backend: Backend,
}

impl Sql {
    /// Starts a statement for `backend`'s placeholder style.
    pub(crate) fn new(backend: Backend, start: &'static str) -> Sql {
        Sql { text: start.to_owned(), binds: Vec::new(), backend }
    }

    /// Appends fixed SQL text.
    pub(crate) fn push(&mut self, fragment: &'static str) -> &mut Sql {
        self.text.push_str(fragment);
        self
    }

    /// Appends a placeholder for a text value.
    pub(crate) fn text(&mut self, value: impl Into<String>) -> &mut Sql {
        self.placeholder(Bind::Text(value.into()))
    }

    /// Appends an integer as SQL text, not as a bound value. For `LIMIT`: SQLite's planner
    /// reads a bound limit's value, and a statement whose plan read a bound value is prepared
    /// again every time that value is bound, which is every time the driver runs it.
    pub(crate) fn int_literal(&mut self, value: u64) -> &mut Sql {
        self.text.push_str(&value.to_string());
        self
    }

    /// Appends a placeholder for an integer value.
    pub(crate) fn int(&mut self, value: i64) -> &mut Sql {
        self.placeholder(Bind::Int(value))
    }

    /// Appends a placeholder for a binary value.
    pub(crate) fn bytes(&mut self, value: Vec<u8>) -> &mut Sql {
        self.placeholder(Bind::Bytes(value))
    }

    fn placeholder(&mut self, bind: Bind) -> &mut Sql {
        self.binds.push(bind);
        match self.backend {
            Backend::Sqlite => self.text.push('?'),
            // Writing into a String cannot fail; the number is ours, never a caller's value.
            Backend::Postgres => {
                let _ = write!(self.text, "${}", self.binds.len());
            }
        }
        self
    }

    /// The finished statement with its values bound, ready to execute.
    pub(crate) fn build(self) -> Query<'static, Any, AnyArguments> {
        // The text is made only of static fragments and placeholders (see `push`).
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.text));
        for bind in self.binds {
            query = match bind {
                Bind::Text(value) => query.bind(value),
                Bind::Int(value) => query.bind(value),
                Bind::Bytes(value) => query.bind(value),
            };
        }
        query
    }
}

/// Positions resolved from an [`ArchiveQuery`]'s `after`/`before` keys.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Bounds {
    /// Only items with a greater sort id.
    pub(crate) after: Option<i64>,
    /// Only items with a smaller sort id.
    pub(crate) before: Option<i64>,
}

/// Appends ` WHERE …` selecting the items of one archive that match `query` (all filters but
/// `limit` and `reverse`).
pub(crate) fn push_archive_filter(
    sql: &mut Sql,
    host: &str,
    user: &str,
    store: &str,
    query: &ArchiveQuery,
    bounds: Bounds,
) {
    sql.push(" WHERE host = ").text(host).push(" AND username = ").text(user).push(" AND store = ").text(store);
    if let Some(with) = &query.with {
        if !with.is_empty() {
            // The condition of the partial index archive_with_sort_id, which holds only items
            // with a correspondent: both databases use a partial index only for queries that
            // state its condition (or imply it in ways a bound value cannot).
            sql.push(" AND \"with\" <> ''");
        }
        sql.push(" AND \"with\" = ").text(with.as_str());
    }
    if let Some(start) = query.start {
        sql.push(" AND \"when\" >= ").int(start);
    }
    if let Some(end) = query.end {
        sql.push(" AND \"when\" <= ").int(end);
    }
    if let Some(after) = bounds.after {
        sql.push(" AND sort_id > ").int(after);
    }
    if let Some(before) = bounds.before {
        sql.push(" AND sort_id < ").int(before);
    }
    if let Some(ids) = &query.ids {
        if ids.is_empty() {
            // An empty id list selects nothing (and `IN ()` is not valid SQL).
            sql.push(" AND 1 = 0");
        } else {
            sql.push(" AND key IN (");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.text(id.as_str());
            }
            sql.push(")");
        }
    }
}

/// Length in bytes of the randomness behind a generated key: 120 bits, 20 characters.
const KEY_BYTES: usize = 15;

/// The URL-safe base64 alphabet (RFC 4648 §5).
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A fresh random item key: 20 characters of URL-safe base64, safe to use as an XMPP
/// stanza-id or RSM id as is.
pub(crate) fn random_key() -> Result<String, StorageError> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| {
        StorageError::Database(sqlx::Error::Io(std::io::Error::other(format!("no randomness for an archive key: {e}"))))
    })?;
    let mut key = String::with_capacity(KEY_BYTES / 3 * 4);
    for chunk in bytes.chunks_exact(3) {
        let group = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            key.push(char::from(URL_SAFE[(group >> shift & 0x3f) as usize]));
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut sql = Sql::new(Backend::Postgres, "SELECT 1 FROM archive");
        push_archive_filter(
            &mut sql,
            "example.org",
            "juliet",
            "archive",
            &ArchiveQuery {
                with: Some("romeo@example.net".into()),
                start: Some(1),
                ids: Some(vec!["a".into(), "b".into()]),
                ..ArchiveQuery::default()
            },
            Bounds { after: Some(7), before: None },
        );
        assert_eq!(
            sql.text,
            "SELECT 1 FROM archive WHERE host = $1 AND username = $2 AND store = $3 \
             AND \"with\" <> '' AND \"with\" = $4 AND \"when\" >= $5 AND sort_id > $6 AND key IN ($7, $8)"
        );
        assert_eq!(sql.binds.len(), 8);
    }

    #[test]
    fn sqlite_placeholders_are_anonymous() {
        let mut sql = Sql::new(Backend::Sqlite, "SELECT 1 FROM archive");
        let query = ArchiveQuery { ids: Some(vec!["a".into(), "b".into()]), ..ArchiveQuery::default() };
        push_archive_filter(&mut sql, "h", "u", "s", &query, Bounds::default());
        assert_eq!(sql.text, "SELECT 1 FROM archive WHERE host = ? AND username = ? AND store = ? AND key IN (?, ?)");
        assert_eq!(sql.binds.len(), 5);
    }

    #[test]
    fn empty_id_list_matches_nothing() {
        let mut sql = Sql::new(Backend::Sqlite, "SELECT 1 FROM archive");
        let query = ArchiveQuery { ids: Some(Vec::new()), ..ArchiveQuery::default() };
        push_archive_filter(&mut sql, "h", "u", "s", &query, Bounds::default());
        assert!(sql.text.ends_with(" AND 1 = 0"));
    }

    #[test]
    fn random_keys_are_url_safe_and_distinct() {
        let a = random_key().unwrap();
        let b = random_key().unwrap();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
