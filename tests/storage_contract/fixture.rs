//! Databases for the contract suite: a SQLite file, SQLite in memory, and a fresh PostgreSQL
//! database per test.

use sqlx::{AnyConnection, Connection};
use starling::storage::Storage;
use std::future::Future;
use std::time::Duration;

/// Used when `STARLING_TEST_POSTGRES` is not set.
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// An opened [`Storage`] and what must be cleaned up after the test.
pub struct Fixture {
    pub storage: Storage,
    cleanup: Cleanup,
}

enum Cleanup {
    /// Deleted on drop.
    TempDir {
        _dir: tempfile::TempDir,
    },
    Nothing,
    /// Dropped through the administrative connection.
    PostgresDatabase {
        admin_url: String,
        name: String,
    },
}

impl Fixture {
    /// Closes the storage and removes its database.
    pub async fn finish(self) {
        self.storage.close().await;
        if let Cleanup::PostgresDatabase { admin_url, name } = self.cleanup {
            drop_database(&admin_url, &name).await;
        }
    }
}

/// A SQLite file in a fresh temporary directory, below directories that do not exist yet.
pub async fn sqlite_file() -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/not/yet/there/starling.db", dir.path().display());
    let storage = Storage::open(&url).await.expect("open sqlite file");
    Some(Fixture { storage, cleanup: Cleanup::TempDir { _dir: dir } })
}

/// `sqlite::memory:`.
pub async fn sqlite_memory() -> Option<Fixture> {
    let storage = Storage::open("sqlite::memory:").await.expect("open sqlite memory");
    Some(Fixture { storage, cleanup: Cleanup::Nothing })
}

/// A new PostgreSQL database with a random name, or `None` (after a message) when the server
/// is unreachable and services are not required.
pub async fn postgres() -> Option<Fixture> {
    let (admin_url, name) = create_postgres_database().await?;
    let storage = Storage::open(&database_url(&admin_url, &name)).await.expect("open postgres");
    Some(Fixture { storage, cleanup: Cleanup::PostgresDatabase { admin_url, name } })
}

/// Creates an empty database; returns the administrative URL and the new database's name.
pub async fn create_postgres_database() -> Option<(String, String)> {
    sqlx::any::install_default_drivers();
    let admin_url = std::env::var("STARLING_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
    let mut conn = match admin_connection(&admin_url).await {
        Ok(conn) => conn,
        Err(error) => {
            if std::env::var("STARLING_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("PostgreSQL is required (STARLING_REQUIRE_SERVICES=1) but unreachable: {error}");
            }
            eprintln!(
                "skipping PostgreSQL test: server unreachable ({error}); \
                 set STARLING_TEST_POSTGRES to run it"
            );
            return None;
        }
    };
    let name = format!("starling_test_{:016x}", getrandom::u64().expect("randomness"));
    // The name is ours (hex digits only); identifiers cannot be bound as parameters.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    Some((admin_url, name))
}

async fn admin_connection(admin_url: &str) -> Result<AnyConnection, String> {
    match tokio::time::timeout(Duration::from_secs(10), AnyConnection::connect(admin_url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("connection timed out".to_owned()),
    }
}

/// Drops a database created by [`create_postgres_database`].
pub async fn drop_database(admin_url: &str, name: &str) {
    let mut conn = admin_connection(admin_url).await.expect("reconnect to drop the test database");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut conn)
        .await
        .expect("drop test database");
    let _ = conn.close().await;
}

/// `admin_url` with its database name replaced by `name`.
pub fn database_url(admin_url: &str, name: &str) -> String {
    let (base, params) = match admin_url.split_once('?') {
        Some((base, params)) => (base, Some(params)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..path_start]);
    if let Some(params) = params {
        url.push('?');
        url.push_str(params);
    }
    url
}

/// Runs one contract function against a fixture, then cleans up even if it panicked.
pub async fn run<F, Fut>(fixture: Option<Fixture>, body: F)
where
    F: FnOnce(Storage) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(fixture) = fixture else {
        return;
    };
    // A separate task, so that a failed assertion comes back as a value and the database is
    // still dropped.
    let outcome = tokio::spawn(body(fixture.storage.clone())).await;
    fixture.finish().await;
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("contract task failed: {error}"),
        }
    }
}

#[test]
fn database_url_replaces_the_path() {
    assert_eq!(
        database_url("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        database_url("postgres://u:p@db/postgres?sslmode=disable", "t2"),
        "postgres://u:p@db/t2?sslmode=disable"
    );
    assert_eq!(database_url("postgres://db", "t3"), "postgres://db/t3");
}
