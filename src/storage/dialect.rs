//! Everything that differs between SQLite and PostgreSQL, in one place.
//!
//! The statements in the store handles are written once: both databases accept `$N`
//! placeholders, `INSERT … ON CONFLICT … DO UPDATE`, `RETURNING` and `LIMIT`, and the `Any`
//! driver maps `i64`, `String` and `Vec<u8>` onto both. What remains is here:
//!
//! - URL handling: which backend a URL selects, creating a SQLite file and its directory, and
//!   the in-memory SQLite database;
//! - connection set-up: SQLite's pragmas, which its `Any` URL cannot carry;
//! - pool sizing, because each connection to `sqlite::memory:` is a separate database;
//! - the migration set, whose DDL differs (`INTEGER PRIMARY KEY AUTOINCREMENT` against
//!   `GENERATED ALWAYS AS IDENTITY`, `BLOB` against `BYTEA`, byte-order collation);
//! - the placeholders of statements assembled at run time with many values (`?` for SQLite,
//!   see the `sql` module for why).

use super::error::StorageError;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use std::path::PathBuf;
use std::time::Duration;

/// SQLite schema, embedded at build time.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("src/storage/migrations/sqlite");
/// PostgreSQL schema, embedded at build time. Must describe the same tables and columns as the
/// SQLite set (a test compares them).
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("src/storage/migrations/postgres");

/// How long to wait for a connection, at start-up as later: the pool retries refused
/// connections until then, which covers a database that comes up a moment after the server
/// but still fails start-up promptly when it is not there.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a SQLite connection waits for another connection's write lock before failing.
const SQLITE_BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 5000";

/// Pragmas for a SQLite file. WAL lets readers run beside the single writer; NORMAL
/// synchronisation is durable across process crashes in WAL mode and only risks the last
/// transactions on power loss, which is the usual trade for a server database.
///
/// Each pooled connection keeps a page cache of its own, SQLite's default being 2 MiB, so the
/// same hot pages can be held ten times over once the load spreads across the pool; the
/// operating system's page cache holds the file once for all of them. With 19,000 accounts
/// logged in, SQLite's heap measured 22.5 MB at the default and 4.0 MB at 256 KiB per
/// connection (about 1 KiB per session), with the same login and archive throughput.
const SQLITE_FILE_PRAGMAS: &[&str] = &[
    SQLITE_BUSY_TIMEOUT,
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA cache_size = -256",
];

/// Pragmas for the in-memory database (journal settings mean nothing there).
const SQLITE_MEMORY_PRAGMAS: &[&str] = &[SQLITE_BUSY_TIMEOUT, "PRAGMA foreign_keys = ON"];

/// The database engine behind a [`Storage`](super::Storage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite, embedded in the process (a file, or memory for tests).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// A short lowercase name for logs: `"sqlite"` or `"postgres"`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// The migrations for this backend's dialect.
    pub(crate) fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A storage URL, classified and ready to connect.
#[derive(Debug)]
pub(crate) enum Target {
    /// A SQLite database file; `url` asks SQLite to create the file when missing.
    SqliteFile { url: String, path: PathBuf },
    /// A private in-memory SQLite database.
    SqliteMemory { url: String },
    /// A PostgreSQL database.
    Postgres { url: String },
}

impl Target {
    /// Classifies `url` by scheme. Anything but SQLite or PostgreSQL is refused.
    pub(crate) fn parse(url: &str) -> Result<Target, StorageError> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            // sqlx accepts both `sqlite:path` and `sqlite://path`.
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let (database, params) = match rest.split_once('?') {
                Some((database, params)) => (database, Some(params)),
                None => (rest, None),
            };
            let memory = database == ":memory:" || params.is_some_and(|p| p.split('&').any(|kv| kv == "mode=memory"));
            if memory {
                return Ok(Target::SqliteMemory { url: url.to_owned() });
            }
            if database.is_empty() {
                return Err(config_error("a sqlite storage URL needs a file path"));
            }
            let path = PathBuf::from(percent_decode(database)?);
            // Without an explicit mode SQLite refuses to create a missing file; a first run
            // must start from nothing.
            let url = match params {
                Some(p) if p.split('&').any(|kv| kv.starts_with("mode=")) => url.to_owned(),
                Some(_) => format!("{url}&mode=rwc"),
                None => format!("{url}?mode=rwc"),
            };
            return Ok(Target::SqliteFile { url, path });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Target::Postgres { url: url.to_owned() });
        }
        Err(config_error("unsupported storage URL: expected sqlite://…, sqlite::memory: or postgres://…"))
    }

    /// The backend this target selects.
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Target::SqliteFile { .. } | Target::SqliteMemory { .. } => Backend::Sqlite,
            Target::Postgres { .. } => Backend::Postgres,
        }
    }

    /// The URL handed to the driver.
    pub(crate) fn url(&self) -> &str {
        match self {
            Target::SqliteFile { url, .. } | Target::SqliteMemory { url } | Target::Postgres { url } => url,
        }
    }

    /// Work needed before the first connection: the directory of a SQLite file.
    pub(crate) async fn prepare(&self) -> Result<(), StorageError> {
        if let Target::SqliteFile { path, .. } = self
            && let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent).await.map_err(|e| StorageError::Database(sqlx::Error::Io(e)))?;
        }
        Ok(())
    }

    /// Pool settings for this target, including per-connection set-up.
    ///
    /// SQLite connections are not pinged when taken from the pool: a connection to a file in
    /// this process cannot have been dropped by a peer, and the driver's ping is a round trip
    /// to the connection's worker thread, one more for every statement or transaction (a
    /// group commit, each read of a login). PostgreSQL connections are, since the server or
    /// the network may have closed them while they sat idle.
    /// Whether single statements use connections kept out of the pool (see `lease.rs`): for
    /// SQLite files only.
    pub(crate) fn keeps_connections(&self) -> bool {
        matches!(self, Target::SqliteFile { .. })
    }

    pub(crate) fn pool_options(&self) -> AnyPoolOptions {
        let options = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        let sqlite = || options.clone().test_before_acquire(false);
        match self {
            Target::SqliteFile { .. } => with_pragmas(sqlite(), SQLITE_FILE_PRAGMAS),
            // Every connection the `Any` driver opens to `sqlite::memory:` gets a database of
            // its own, so the pool must hold exactly one connection, forever: closing it would
            // throw the data away.
            Target::SqliteMemory { .. } => with_pragmas(
                sqlite().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None),
                SQLITE_MEMORY_PRAGMAS,
            ),
            Target::Postgres { .. } => options,
        }
    }
}

/// Runs `pragmas` on every new connection.
fn with_pragmas(options: AnyPoolOptions, pragmas: &'static [&'static str]) -> AnyPoolOptions {
    options.after_connect(move |conn, _meta| {
        Box::pin(async move {
            for pragma in pragmas {
                sqlx::query(*pragma).execute(&mut *conn).await?;
            }
            Ok(())
        })
    })
}

fn config_error(message: &'static str) -> StorageError {
    StorageError::Database(sqlx::Error::Configuration(message.into()))
}

/// Decodes `%XX` escapes in the path of a SQLite URL, as the driver does, so that the directory
/// created is the one the driver opens.
fn percent_decode(input: &str) -> Result<String, StorageError> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = input.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| config_error("the sqlite file path is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_urls() {
        let cases: &[(&str, Option<Backend>)] = &[
            ("sqlite::memory:", Some(Backend::Sqlite)),
            ("sqlite://data/starling.db", Some(Backend::Sqlite)),
            ("sqlite:///var/lib/starling/starling.db", Some(Backend::Sqlite)),
            ("postgres://postgres@127.0.0.1/starling", Some(Backend::Postgres)),
            ("postgresql://localhost/starling", Some(Backend::Postgres)),
            ("mysql://localhost/starling", None),
            ("sqlite://", None),
            ("starling.db", None),
        ];
        for (url, backend) in cases {
            assert_eq!(Target::parse(url).ok().map(|t| t.backend()), *backend, "{url}");
        }
    }

    #[test]
    fn sqlite_files_are_created_when_missing() {
        let Ok(Target::SqliteFile { url, path }) = Target::parse("sqlite://data/my%20db.db") else {
            panic!("not a file target");
        };
        assert_eq!(url, "sqlite://data/my%20db.db?mode=rwc");
        assert_eq!(path, PathBuf::from("data/my db.db"));

        let Ok(target) = Target::parse("sqlite:///tmp/a.db?cache=shared") else {
            panic!("not parsed");
        };
        assert_eq!(target.url(), "sqlite:///tmp/a.db?cache=shared&mode=rwc");
        let Ok(target) = Target::parse("sqlite:///tmp/a.db?mode=ro") else {
            panic!("not parsed");
        };
        assert_eq!(target.url(), "sqlite:///tmp/a.db?mode=ro");
    }

    #[tokio::test]
    async fn pooled_sqlite_file_connections_get_the_pragmas() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let Ok(target) = Target::parse(&format!("sqlite://{}", dir.path().join("p.db").display())) else {
            panic!("not parsed");
        };
        let pool = target.pool_options().connect(target.url()).await.unwrap();
        let cache: i64 = sqlx::query_scalar("PRAGMA cache_size").fetch_one(&pool).await.unwrap();
        assert_eq!(cache, -256, "a small page cache per connection");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&pool).await.unwrap();
        assert_eq!(mode, "wal");
        pool.close().await;
    }

    #[test]
    fn memory_urls() {
        for url in ["sqlite::memory:", "sqlite://:memory:", "sqlite://x?mode=memory"] {
            assert!(matches!(Target::parse(url), Ok(Target::SqliteMemory { .. })), "{url}");
        }
    }
}
