//! Contract: the archive shape, appending and deleting (and the helpers the query contracts
//! share).

use super::{HOST, item};
use starling::storage::{Archive, ArchiveQuery, ArchivedId, NewItem, Page, Storage, StorageError, Value};

/// Which table a contract's archives live in: both keep the same contract.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    /// `Storage::archive`.
    Archive,
    /// `Storage::queue`.
    Queue,
}

impl Layout {
    pub fn open(self, s: &Storage, host: &str, store: &str) -> Archive {
        match self {
            Layout::Archive => s.archive(host, store),
            Layout::Queue => s.queue(host, store),
        }
    }
}

pub const ROMEO: &str = "romeo@example.net";
pub const MERCUTIO: &str = "mercutio@example.net";
pub const SECOND: i64 = 1_000_000;

/// Ten items `k00`…`k09` at seconds 1…10, alternately with Romeo (even) and Mercutio (odd),
/// plus noise in another user's archive.
pub async fn fill(archive: &Archive) -> Vec<ArchivedId> {
    let mut ids = Vec::new();
    for i in 0..10 {
        let with = if i % 2 == 0 { ROMEO } else { MERCUTIO };
        let key = format!("k{i:02}");
        let value = Value::text(format!("message {i}"));
        ids.push(archive.append("juliet", &item(Some(&key), (i + 1) * SECOND, with, value)).await.unwrap());
    }
    archive.append("nurse", &item(Some("k00"), SECOND, ROMEO, Value::text("noise"))).await.unwrap();
    ids
}

pub fn keys(page: &Page) -> Vec<&str> {
    page.items.iter().map(|i| i.key.as_str()).collect()
}

pub fn ks(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("k{i:02}")).collect()
}

pub fn q() -> ArchiveQuery {
    ArchiveQuery::default()
}

pub async fn find(archive: &Archive, query: ArchiveQuery) -> Page {
    archive.find("juliet", &query).await.unwrap()
}

pub async fn archive_append_and_get(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "mam");
    let mut previous = None;
    let mut generated = Vec::new();
    for i in 0..3 {
        let id = archive.append("juliet", &item(None, i, ROMEO, Value::text("hi"))).await.unwrap();
        assert_eq!(id.key.len(), 20);
        assert!(id.key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert!(previous.is_none_or(|p| id.sort_id > p), "sort ids grow");
        previous = Some(id.sort_id);
        generated.push(id.key);
    }
    generated.sort();
    generated.dedup();
    assert_eq!(generated.len(), 3);

    let value = Value::xml("<message xmlns='jabber:client'><body>hello</body></message>");
    let id = archive.append("juliet", &item(Some("stanza-1"), 42, ROMEO, value.clone())).await.unwrap();
    assert_eq!(id.key, "stanza-1");
    let stored = archive.get("juliet", "stanza-1").await.unwrap().unwrap();
    assert_eq!((stored.sort_id, stored.key.as_str(), stored.when), (id.sort_id, "stanza-1", 42));
    assert_eq!((stored.with.as_str(), stored.value), (ROMEO, value));
    assert_eq!(archive.get("juliet", "nope").await.unwrap(), None);
    assert_eq!(archive.get("romeo", "stanza-1").await.unwrap(), None);
}

pub async fn archive_append_same_key_replaces(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "pep");
    archive.append("juliet", &item(Some("a"), 1, "", Value::text("a1"))).await.unwrap();
    let b = archive.append("juliet", &item(Some("b"), 2, "", Value::text("b1"))).await.unwrap();
    let a2 = archive.append("juliet", &item(Some("a"), 3, "", Value::text("a2"))).await.unwrap();
    assert!(a2.sort_id > b.sort_id, "a replaced item moves to the end");
    let page = find(&archive, q()).await;
    assert_eq!(keys(&page), ["b", "a"]);
    assert_eq!(page.items[1].value, Value::text("a2"));
    assert_eq!(archive.count("juliet", &q()).await.unwrap(), 2);
}

pub async fn archive_delete_by_query(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "mam");
    fill(&archive).await;
    let with = ArchiveQuery { with: Some(MERCUTIO.into()), limit: Some(1), ..q() };
    assert_eq!(archive.delete("juliet", &with).await.unwrap(), 5, "limit ignored");
    assert_eq!(keys(&find(&archive, q()).await), ["k00", "k02", "k04", "k06", "k08"]);
    let early = ArchiveQuery { end: Some(3 * SECOND), ..q() };
    assert_eq!(archive.delete("juliet", &early).await.unwrap(), 2);
    let after = ArchiveQuery { after: Some("k04".into()), ..q() };
    assert_eq!(archive.delete("juliet", &after).await.unwrap(), 2);
    assert_eq!(keys(&find(&archive, q()).await), ["k04"]);
    assert_eq!(archive.delete("juliet", &q()).await.unwrap(), 1);
    assert_eq!(archive.delete("juliet", &q()).await.unwrap(), 0);
    assert_eq!(archive.count("nurse", &q()).await.unwrap(), 1, "other users untouched");
}

pub async fn archive_delete_by_keys(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "mam");
    fill(&archive).await;
    let gone = ["k01".to_string(), "k03".to_string(), "unknown".to_string()];
    assert_eq!(archive.delete_by_keys("juliet", &gone).await.unwrap(), 2);
    assert_eq!(archive.delete_by_keys("juliet", &[]).await.unwrap(), 0);
    assert_eq!(archive.count("juliet", &q()).await.unwrap(), 8);
    assert_eq!(archive.count("nurse", &q()).await.unwrap(), 1);

    // More keys than one statement binds.
    let batch: Vec<(String, NewItem)> =
        (0..1200).map(|i| ("romeo".to_string(), item(Some(&format!("b{i}")), i, "", Value::text("x")))).collect();
    archive.append_many(&batch).await.unwrap();
    let keys: Vec<String> = (0..1100).map(|i| format!("b{i}")).collect();
    assert_eq!(archive.delete_by_keys("romeo", &keys).await.unwrap(), 1100);
    assert_eq!(archive.count("romeo", &q()).await.unwrap(), 100);
}

pub async fn archive_delete_older_than(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "mam");
    for user in ["juliet", "romeo"] {
        for i in 1..=10 {
            archive.append(user, &item(None, i * SECOND, "", Value::text("x"))).await.unwrap();
        }
    }
    layout.open(&s, HOST, "offline").append("juliet", &item(None, SECOND, "", Value::text("x"))).await.unwrap();
    layout.open(&s, "b.example", "mam").append("juliet", &item(None, SECOND, "", Value::text("x"))).await.unwrap();

    assert_eq!(archive.delete_older_than(5 * SECOND).await.unwrap(), 8, "strictly older only");
    for user in ["juliet", "romeo"] {
        let page = archive.find(user, &q()).await.unwrap();
        assert_eq!(page.items.first().map(|i| i.when), Some(5 * SECOND));
        assert_eq!(page.items.len(), 6);
    }
    assert_eq!(layout.open(&s, HOST, "offline").count("juliet", &q()).await.unwrap(), 1);
    assert_eq!(layout.open(&s, "b.example", "mam").count("juliet", &q()).await.unwrap(), 1);
}

pub async fn archive_append_many_atomic(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "mam");
    assert!(archive.append_many(&[]).await.unwrap().is_empty());

    let batch = vec![
        ("juliet".to_string(), item(None, 1, ROMEO, Value::text("1"))),
        ("romeo".to_string(), item(Some("r1"), 1, "juliet@example.org", Value::text("1"))),
        ("juliet".to_string(), item(Some("keep"), 2, ROMEO, Value::text("original"))),
    ];
    let ids = archive.append_many(&batch).await.unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0].sort_id < w[1].sort_id), "stored in batch order");
    assert_eq!((ids[1].key.as_str(), ids[2].key.as_str()), ("r1", "keep"));
    assert_eq!(archive.count("juliet", &q()).await.unwrap(), 2);
    assert_eq!(archive.get("romeo", "r1").await.unwrap().unwrap().sort_id, ids[1].sort_id);

    // The last item is invalid (empty key): nothing of the batch may remain, including the
    // replacement of "keep" and the item for another user.
    let failing = vec![
        ("juliet".to_string(), item(Some("keep"), 3, ROMEO, Value::text("replaced"))),
        ("romeo".to_string(), item(None, 3, "", Value::text("2"))),
        ("juliet".to_string(), item(Some(""), 3, ROMEO, Value::text("bad"))),
    ];
    assert!(matches!(archive.append_many(&failing).await, Err(StorageError::Database(_))));
    let kept = archive.get("juliet", "keep").await.unwrap().unwrap();
    assert_eq!((kept.sort_id, kept.value), (ids[2].sort_id, Value::text("original")));
    assert_eq!(archive.count("juliet", &q()).await.unwrap(), 2);
    assert_eq!(archive.count("romeo", &q()).await.unwrap(), 1);
    assert!(matches!(
        archive.append("juliet", &item(Some(""), 3, "", Value::text("bad"))).await,
        Err(StorageError::Database(_))
    ));
}

pub async fn archive_users(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "offline");
    assert!(archive.users().await.unwrap().is_empty());
    for user in ["zed", "alice", "bob", "alice"] {
        archive.append(user, &item(None, 1, "", Value::text("x"))).await.unwrap();
    }
    layout.open(&s, HOST, "mam").append("carol", &item(None, 1, "", Value::text("x"))).await.unwrap();
    assert_eq!(archive.users().await.unwrap(), ["alice", "bob", "zed"]);
    archive.delete("alice", &q()).await.unwrap();
    assert_eq!(archive.users().await.unwrap(), ["bob", "zed"]);
}

pub async fn archive_queued_writes_commit_in_order(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "offline");
    let mut last = 0;
    for i in 0..300 {
        let seq = archive.append_queued("juliet", item(Some(&format!("q{i:03}")), i, ROMEO, Value::text("m"))).await;
        assert!(seq > last, "sequence numbers grow");
        last = seq;
    }
    assert_eq!(s.commits().enqueued(), last);
    s.commits().committed(last).await;
    let page = archive.find("juliet", &q()).await.unwrap();
    let keys: Vec<_> = page.items.iter().map(|i| i.key.as_str()).collect();
    let expected: Vec<String> = (0..300).map(|i| format!("q{i:03}")).collect();
    assert_eq!(keys, expected, "all committed, in queue order");
    // The same key again: the first item stays where it was, unchanged.
    archive.append_queued("juliet", item(Some("q001"), 999, ROMEO, Value::text("again"))).await;
    s.commits().flush().await;
    let kept = archive.get("juliet", "q001").await.unwrap().unwrap();
    assert_eq!((kept.when, kept.value), (1, Value::text("m")));
    assert_eq!(archive.count("juliet", &q()).await.unwrap(), 300);
    archive.delete_queued("juliet", vec!["q000".into(), "q299".into()]).await;
    s.commits().flush().await;
    assert_eq!(archive.count("juliet", &q()).await.unwrap(), 298);
}

pub async fn archive_queued_write_rejected_by_the_database_is_dropped_alone(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "offline");
    archive.append_queued("juliet", item(Some("before"), 1, ROMEO, Value::text("a"))).await;
    // An empty key violates the table's check: the database rejects this write for good.
    archive.append_queued("juliet", item(Some(""), 2, ROMEO, Value::text("bad"))).await;
    archive.append_queued("juliet", item(Some("after"), 3, ROMEO, Value::text("b"))).await;
    s.commits().flush().await;
    let page = archive.find("juliet", &q()).await.unwrap();
    let keys: Vec<_> = page.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["before", "after"]);
}

pub async fn archive_append_deleted_in_one_batch_is_not_written(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "offline");
    archive.append("juliet", &item(Some("old"), 1, ROMEO, Value::text("first copy"))).await.unwrap();
    // Queued back to back, these usually share one commit; the outcome must be queue order's.
    archive.append_queued("juliet", item(Some("old"), 5, ROMEO, Value::text("again"))).await;
    archive.append_queued("juliet", item(Some("new"), 6, ROMEO, Value::text("payload"))).await;
    archive.append_queued("juliet", item(Some("kept"), 7, ROMEO, Value::text("stays"))).await;
    archive.delete_queued("juliet", vec!["old".into(), "new".into()]).await;
    archive.append_queued("juliet", item(Some("new"), 8, ROMEO, Value::text("sent again"))).await;
    s.commits().flush().await;
    let left = archive.find("juliet", &q()).await.unwrap().items;
    let left: Vec<_> = left.iter().map(|i| (i.key.as_str(), i.value.data.as_slice())).collect();
    assert_eq!(left, [("kept", b"stays".as_slice()), ("new", b"sent again".as_slice())]);
}

pub async fn archive_queued_deletions_across_accounts_remove_only_their_keys(s: Storage, layout: Layout) {
    let (inbox, records) = (layout.open(&s, HOST, "offline"), layout.open(&s, HOST, "delivered"));
    let users: Vec<String> = (0..150).map(|i| format!("u{i:03}")).collect();
    for user in &users {
        for key in ["a", "b"] {
            inbox.append_queued(user, item(Some(key), 1, ROMEO, Value::text(key))).await;
        }
        records.append_queued(user, item(Some("a"), 1, ROMEO, Value::text("other store"))).await;
    }
    s.commits().flush().await;
    // 300 deletions in one flush: several statements of different sizes, spanning accounts.
    for user in &users {
        inbox.delete_queued(user, vec!["a".into(), "missing".into()]).await;
    }
    s.commits().flush().await;
    for user in &users {
        let left = inbox.find(user, &q()).await.unwrap().items;
        assert_eq!(left.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["b"], "{user}");
        assert!(records.get(user, "a").await.unwrap().is_some(), "{user}: another store keeps its item");
    }
}

pub async fn archive_log_entries_of_one_batch_share_a_row(s: Storage, layout: Layout) {
    let log = layout.open(&s, HOST, "delivered");
    let entries: Vec<String> = (0..200).map(|i| format!("u{i}/k{i}")).collect();
    for entry in &entries {
        log.log_queued(" log", entry.clone()).await;
    }
    // Another account's log and another store stay apart.
    log.log_queued("juliet", "own".into()).await;
    layout.open(&s, HOST, "offline").log_queued(" log", "elsewhere".into()).await;
    s.commits().flush().await;
    let items = log.find(" log", &q()).await.unwrap().items;
    let lines: Vec<&str> = items.iter().flat_map(|i| std::str::from_utf8(&i.value.data).unwrap().lines()).collect();
    assert_eq!(lines, entries, "every entry once, in queue order");
    // Queued back to back, they went in one or a few batches (each of which gathers for a
    // millisecond): rows are shared. Half is a bound a stalled machine still meets.
    assert!(items.len() < entries.len() / 2, "{} rows for {} entries", items.len(), entries.len());
    let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys sort by time: {keys:?}");
    let own = log.find("juliet", &q()).await.unwrap().items;
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].value.data, b"own");
}

pub async fn archive_paging_by_position_survives_removed_items(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "offline");
    for i in 0..5 {
        archive.append("juliet", &item(Some(&format!("k{i}")), i, ROMEO, Value::text("x"))).await.unwrap();
    }
    let first = archive.find("juliet", &ArchiveQuery { limit: Some(2), ..q() }).await.unwrap();
    let position = first.items.last().unwrap().sort_id;
    archive.delete_by_keys("juliet", &["k1".into()]).await.unwrap();
    let rest = archive.find("juliet", &ArchiveQuery { after_position: Some(position), ..q() }).await.unwrap();
    let keys: Vec<_> = rest.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["k2", "k3", "k4"]);
}
