#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
//! The storage contract: one set of behaviours every backend must show.
//!
//! Each contract function in `storage_contract/` takes a freshly opened, empty
//! [`Storage`] and is instantiated below once per backend (a SQLite file, `sqlite::memory:`,
//! and a new PostgreSQL database), so a failure names both the behaviour and the backend.
//! PostgreSQL tests use `STARLING_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) to create and drop a database per test; they
//! skip with a message when it is unreachable, unless `STARLING_REQUIRE_SERVICES=1`.
//!
//! Also here: opening behaviour and the check that both dialects' migrations produce the same
//! tables, columns and indexes.

#[path = "storage_contract/archive.rs"]
mod archive;
#[path = "storage_contract/archive_find.rs"]
mod archive_find;
#[path = "storage_contract/fixture.rs"]
mod fixture;
#[path = "storage_contract/kv.rs"]
mod kv;
#[path = "storage_contract/shapes.rs"]
mod shapes;
#[path = "storage_contract/tickets.rs"]
mod tickets;

use archive::*;
use archive_find::*;
use kv::*;
use shapes::*;
use sqlx::{AnyConnection, Connection, Row};
use starling::storage::{Backend, NewItem, Storage, StorageError, Value};
use std::collections::BTreeSet;
use tickets::*;

/// The virtual host most contract functions use.
const HOST: &str = "example.org";

fn item(key: Option<&str>, when: i64, with: &str, value: Value) -> NewItem {
    NewItem { key: key.map(str::to_owned), when, with: with.to_owned(), value }
}

/// Deterministic ASCII text of `len` characters that does not repeat (so that PostgreSQL
/// cannot shrink it by compression in an index).
fn pseudo_random_text(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            char::from(ALPHABET[(state >> 33) as usize % ALPHABET.len()])
        })
        .collect()
}

/// Instantiates each contract function once per backend, as `<backend>::<function>`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::fixture::run(crate::fixture::sqlite_file().await, crate::$name).await;
                }
            )*
        }
        mod sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::fixture::run(crate::fixture::sqlite_memory().await, crate::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::fixture::run(crate::fixture::postgres().await, crate::$name).await;
                }
            )*
        }
    };
}

/// Instantiates each archive contract function once per table and backend, as
/// `<table>::<function>::<backend>`: items in the `archive` table and in the `queue` table keep
/// the same contract.
macro_rules! archive_contract {
    (@table $table:ident, $layout:ident, $($name:ident),*) => {
        mod $table {
            $(
                mod $name {
                    archive_contract!(@backend $name, $layout, sqlite_file, sqlite_memory, postgres);
                }
            )*
        }
    };
    (@backend $name:ident, $layout:ident, $($backend:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $backend() {
                let storage = crate::fixture::$backend().await;
                crate::fixture::run(storage, |s| crate::$name(s, crate::Layout::$layout)).await;
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        archive_contract!(@table archive_table, Archive, $($name),*);
        archive_contract!(@table queue_table, Queue, $($name),*);
    };
}

contract!(
    keyval_set_get_overwrite_delete,
    keyval_users_sorted,
    map_set_get_overwrite_delete,
    map_insert_new_keeps_the_first_value,
    tls_ticket_keys_agree_across_nodes,
    map_get_all_sorted,
    map_get_all_with_another_store,
    map_users_with_key,
    map_delete_all,
    values_unicode_and_binary,
    long_unique_keys,
    isolation_between_hosts_stores_users,
    delete_user_across_shapes,
    concurrent_writers,
);

archive_contract!(
    archive_find_by_with,
    archive_find_by_time,
    archive_find_after_before,
    archive_find_by_ids,
    archive_paging_forward,
    archive_paging_backward,
    archive_count,
    archive_find_by_empty_with,
    archive_append_and_get,
    archive_append_same_key_replaces,
    archive_delete_by_query,
    archive_delete_by_keys,
    archive_delete_older_than,
    archive_append_many_atomic,
    archive_users,
    archive_queued_writes_commit_in_order,
    archive_queued_write_rejected_by_the_database_is_dropped_alone,
    archive_append_deleted_in_one_batch_is_not_written,
    archive_queued_deletions_across_accounts_remove_only_their_keys,
    archive_log_entries_of_one_batch_share_a_row,
    archive_paging_by_position_survives_removed_items,
);

#[tokio::test]
async fn sqlite_file_is_created_uses_wal_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/starling.db");
    let url = format!("sqlite://{}", path.display());
    let storage = Storage::open(&url).await.unwrap();
    assert_eq!(storage.backend(), Backend::Sqlite);
    assert!(path.exists());
    storage.keyval(HOST, "accounts").set("juliet", Some(&Value::text("x"))).await.unwrap();
    storage.close().await;

    // Reopening runs the (already applied) migrations again and finds the data.
    let storage = Storage::open(&url).await.unwrap();
    let value = storage.keyval(HOST, "accounts").get("juliet").await.unwrap();
    assert_eq!(value, Some(Value::text("x")));
    storage.close().await;

    let mut conn = AnyConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::query("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();
}

/// A database from before the queue table (migrations 1-3) keeps its inbox: the fourth
/// migration moves the `offline` store's items, in order and with their keys, and leaves the
/// other stores where they are.
#[tokio::test]
async fn upgrading_moves_the_inbox_to_the_queue_table() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/upgrade.db", dir.path().display());
    Storage::open(&url).await.unwrap().close().await;
    // Back to the schema of migration 3, holding what that version stored.
    let mut conn = AnyConnection::connect(&url).await.unwrap();
    for statement in [
        "DROP TABLE queue",
        "DELETE FROM _sqlx_migrations WHERE version = 4",
        "INSERT INTO archive (host, username, store, key, \"when\", \"with\", type, value) VALUES \
         ('example.org', 'juliet', 'offline', 'second', 2, '', 'xml', x'3c6d2f3e'), \
         ('example.org', 'juliet', 'mam', 'kept', 1, 'romeo@example.net', 'xml', x'3c6d2f3e'), \
         ('example.org', 'juliet', 'offline', 'first', 1, '', 'xml', x'3c6d2f3e')",
        // Positions out of key order: the move keeps the order of positions.
        "UPDATE archive SET sort_id = 100 WHERE key = 'second'",
    ] {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();

    let storage = Storage::open(&url).await.unwrap();
    let inbox = storage.queue(HOST, "offline").find("juliet", &Default::default()).await.unwrap();
    let keys: Vec<&str> = inbox.items.iter().map(|item| item.key.as_str()).collect();
    assert_eq!(keys, ["first", "second"]);
    let left = storage.archive(HOST, "offline").count("juliet", &Default::default()).await.unwrap();
    assert_eq!(left, 0, "moved, not copied");
    let mam = storage.archive(HOST, "mam").find("juliet", &Default::default()).await.unwrap();
    assert_eq!(mam.items.len(), 1);
    storage.close().await;
}

#[tokio::test]
async fn memory_databases_are_private_to_their_storage() {
    let a = Storage::open("sqlite::memory:").await.unwrap();
    let b = Storage::open("sqlite::memory:").await.unwrap();
    a.keyval(HOST, "s").set("u", Some(&Value::text("a"))).await.unwrap();
    assert_eq!(b.keyval(HOST, "s").get("u").await.unwrap(), None);
    assert_eq!(a.keyval(HOST, "s").get("u").await.unwrap(), Some(Value::text("a")));
}

#[tokio::test]
async fn open_fails_loudly() {
    for url in ["mysql://localhost/starling", "starling.db", "sqlite://"] {
        assert!(matches!(Storage::open(url).await, Err(StorageError::Database(_))), "{url}");
    }
    // A directory that cannot be created.
    let url = "sqlite:///proc/starling-cannot-exist/starling.db";
    assert!(Storage::open(url).await.is_err());
    // Nothing listens on port 1.
    let url = "postgres://postgres@127.0.0.1:1/starling";
    assert!(matches!(Storage::open(url).await, Err(StorageError::Database(_))));
}

/// Tables and their columns, and index names (without the implicit primary-key indexes).
type Schema = (BTreeSet<(String, String)>, BTreeSet<(String, String)>);

async fn sqlite_schema(url: &str) -> Schema {
    let mut conn = AnyConnection::connect(url).await.unwrap();
    let columns = sqlx::query(
        "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite%' AND m.name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let indexes = sqlx::query(
        "SELECT tbl_name, name FROM sqlite_master \
         WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    (pairs(&columns), pairs(&indexes))
}

async fn postgres_schema(url: &str) -> Schema {
    let mut conn = AnyConnection::connect(url).await.unwrap();
    let columns = sqlx::query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let indexes = sqlx::query(
        "SELECT tablename::text, indexname::text FROM pg_indexes \
         WHERE schemaname = 'public' AND indexname NOT LIKE '%\\_pkey'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    (pairs(&columns), pairs(&indexes))
}

fn pairs(rows: &[sqlx::any::AnyRow]) -> BTreeSet<(String, String)> {
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

#[tokio::test]
async fn migrations_do_not_drift() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}/drift.db", dir.path().display());
    Storage::open(&sqlite_url).await.unwrap().close().await;
    let sqlite = sqlite_schema(&sqlite_url).await;
    assert!(sqlite.0.contains(&("archive".into(), "when".into())), "{sqlite:?}");
    assert!(sqlite.1.contains(&("kv".into(), "kv_store_key".into())), "{sqlite:?}");

    let Some((admin_url, name)) = fixture::create_postgres_database().await else {
        return;
    };
    let postgres_url = fixture::database_url(&admin_url, &name);
    let outcome = tokio::spawn(async move {
        Storage::open(&postgres_url).await.unwrap().close().await;
        postgres_schema(&postgres_url).await
    })
    .await;
    fixture::drop_database(&admin_url, &name).await;
    let postgres = outcome.unwrap();
    assert_eq!(sqlite.0, postgres.0, "tables and columns differ between dialects");
    assert_eq!(sqlite.1, postgres.1, "indexes differ between dialects");
}

/// The statement text of a page of one correspondent's items before a position, newest first
/// (a MAM query with `with` and an RSM `before` id), as `Archive::find` writes it with
/// `push_archive_filter` (whose unit test pins that text), with SQLite's placeholders.
const BY_CORRESPONDENT: &str = "SELECT sort_id, key, \"when\", \"with\", type, value FROM archive \
     WHERE host = ? AND username = ? AND store = ? AND \"with\" <> '' AND \"with\" = ? AND sort_id < ? \
     ORDER BY sort_id DESC LIMIT 51";

/// A statement with SQLite's placeholders, given PostgreSQL's numbered ones.
fn numbered_placeholders(statement: &str) -> String {
    let mut parts = statement.split('?');
    let mut out = parts.next().unwrap_or_default().to_owned();
    for (i, part) in parts.enumerate() {
        out.push_str(&format!("${}{part}", i + 1));
    }
    out
}

/// A value bound to a statement whose plan a test reads.
enum Param {
    Text(&'static str),
    Int(i64),
}

/// The steps of a plan, `explain` being an EXPLAIN of a statement, with `params` bound, and
/// `column` the column that describes each step.
async fn plan_of(conn: &mut AnyConnection, explain: String, params: &[Param], column: usize) -> Vec<String> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(explain));
    for param in params {
        query = match param {
            Param::Text(text) => query.bind(*text),
            Param::Int(int) => query.bind(*int),
        };
    }
    let rows = query.fetch_all(conn).await.unwrap();
    rows.iter().map(|row| row.get::<String, _>(column)).collect()
}

/// The plans of `statement` (with SQLite's placeholders) and `params` in a new database of
/// each dialect: SQLite's, and PostgreSQL's when it is reachable.
async fn plans(statement: &'static str, params: &'static [Param]) -> (Vec<String>, Option<Vec<String>>) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}/plan.db", dir.path().display());
    Storage::open(&sqlite_url).await.unwrap().close().await;
    let mut conn = AnyConnection::connect(&sqlite_url).await.unwrap();
    let sqlite = plan_of(&mut conn, format!("EXPLAIN QUERY PLAN {statement}"), params, 3).await;
    conn.close().await.unwrap();

    let Some((admin_url, name)) = fixture::create_postgres_database().await else {
        return (sqlite, None);
    };
    let postgres_url = fixture::database_url(&admin_url, &name);
    let outcome = tokio::spawn(async move {
        Storage::open(&postgres_url).await.unwrap().close().await;
        let mut conn = AnyConnection::connect(&postgres_url).await.unwrap();
        // An empty table is cheaper to scan than to search: make the planner show which
        // index it would take.
        sqlx::query("SET enable_seqscan = off").execute(&mut conn).await.unwrap();
        plan_of(&mut conn, format!("EXPLAIN {}", numbered_placeholders(statement)), params, 0).await
    })
    .await;
    fixture::drop_database(&admin_url, &name).await;
    (sqlite, Some(outcome.unwrap()))
}

/// A page of one correspondent's items is one range read of the partial correspondent index,
/// already in archive order: no sort, and no walk through other correspondents' items. The
/// query states the index's condition, so both planners see that the index covers it.
#[tokio::test]
async fn correspondent_page_is_a_range_read_of_the_partial_index() {
    const PARAMS: &[Param] = &[
        Param::Text(HOST),
        Param::Text("juliet"),
        Param::Text("mam"),
        Param::Text("romeo@example.net"),
        Param::Int(1000),
    ];
    let (sqlite, postgres) = plans(BY_CORRESPONDENT, PARAMS).await;
    assert!(sqlite.iter().any(|step| step.contains("archive_with_sort_id")), "{sqlite:?}");
    assert!(!sqlite.iter().any(|step| step.contains("B-TREE")), "sorted: {sqlite:?}");
    if let Some(plan) = postgres {
        assert!(plan.iter().any(|step| step.contains("archive_with_sort_id")), "{plan:?}");
        assert!(!plan.iter().any(|step| step.contains("Sort")), "sorted: {plan:?}");
    }
}

/// The statement text of a page of a queue's items in order after a position (the inbox's
/// catch-up at login), as `Archive::find` writes it for the queue table, with SQLite's
/// placeholders.
const QUEUE_PAGE: &str = "SELECT sort_id, key, \"when\", \"with\", type, value FROM queue \
     WHERE sort_id IN (SELECT sort_id FROM queue WHERE host = ? AND username = ? AND store = ? AND sort_id > ? \
     ORDER BY sort_id + 0 ASC LIMIT 101) ORDER BY sort_id + 0 ASC";

/// A page of a queue picks the positions of the user's items from the key index alone and
/// then reads only the page's rows: neither planner walks the table in position order through
/// other users' items.
#[tokio::test]
async fn queue_page_reads_the_users_items_through_the_key_index() {
    const PARAMS: &[Param] = &[Param::Text(HOST), Param::Text("juliet"), Param::Text("offline"), Param::Int(1000)];
    let (sqlite, postgres) = plans(QUEUE_PAGE, PARAMS).await;
    assert!(sqlite.iter().any(|step| step.contains("USING COVERING INDEX queue_key")), "{sqlite:?}");
    assert!(!sqlite.iter().any(|step| step.starts_with("SCAN queue")), "{sqlite:?}");
    if let Some(plan) = postgres {
        assert!(plan.iter().any(|step| step.contains("Index Only Scan using queue_key")), "{plan:?}");
    }
}

/// On a SQLite file, single statements run on connections the storage keeps out of the pool.
/// Reads cancelled halfway leave those connections usable, concurrent reads and writes see
/// each other's results, and after closing every handle fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_kept_connections_survive_cancelled_reads_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&format!("sqlite://{}/kept.db", dir.path().display())).await.unwrap();
    let map = storage.map(HOST, "roster");
    for i in 0..200 {
        map.set("juliet", &format!("contact{i:03}"), Some(&Value::text("x"))).await.unwrap();
    }
    // Cancel reads at every stage: before, during and after they reach their connection.
    for round in 0..50u64 {
        let read = map.get_all("juliet");
        let _ = tokio::time::timeout(std::time::Duration::from_micros(round * 20), read).await;
    }
    let mut tasks = Vec::new();
    for i in 0..32 {
        let map = map.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("new{i:02}");
            map.set("romeo", &key, Some(&Value::text(key.as_str()))).await.unwrap();
            assert_eq!(map.get("romeo", &key).await.unwrap(), Some(Value::text(key.as_str())));
            assert_eq!(map.get_all("juliet").await.unwrap().len(), 200);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(map.get_all("romeo").await.unwrap().len(), 32);
    storage.close().await;
    assert!(map.get("romeo", "new00").await.is_err());
    assert!(map.set("romeo", "late", Some(&Value::text("x"))).await.is_err());
}
