//! Contract: the archive shape, finding, paging and counting.

use super::HOST;
use super::archive::{Layout, ROMEO, SECOND, fill, find, keys, ks, q};
use starling::storage::{ArchiveQuery, Storage, StorageError, Value};

pub async fn archive_find_by_with(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "mam");
    fill(&archive).await;
    let page = find(&archive, ArchiveQuery { with: Some(ROMEO.into()), ..q() }).await;
    assert_eq!(keys(&page), ["k00", "k02", "k04", "k06", "k08"]);
    assert!(page.complete);
    let page = find(&archive, ArchiveQuery { with: Some("nobody@example.net".into()), ..q() }).await;
    assert!(page.items.is_empty() && page.complete);
}

pub async fn archive_find_by_time(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "mam");
    fill(&archive).await;
    let page = find(&archive, ArchiveQuery { start: Some(3 * SECOND), ..q() }).await;
    assert_eq!(keys(&page), ks(2..=9), "start is inclusive");
    let page = find(&archive, ArchiveQuery { end: Some(3 * SECOND), ..q() }).await;
    assert_eq!(keys(&page), ks(0..=2), "end is inclusive");
    let range = ArchiveQuery { start: Some(3 * SECOND), end: Some(5 * SECOND), ..q() };
    assert_eq!(keys(&find(&archive, range).await), ks(2..=4));
    let romeo = ArchiveQuery { with: Some(ROMEO.into()), start: Some(3 * SECOND), end: Some(7 * SECOND), ..q() };
    assert_eq!(keys(&find(&archive, romeo).await), ["k02", "k04", "k06"]);
    let empty = ArchiveQuery { start: Some(5 * SECOND), end: Some(4 * SECOND), ..q() };
    assert!(find(&archive, empty).await.items.is_empty());
}

pub async fn archive_find_after_before(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "mam");
    fill(&archive).await;
    let after = |k: &str| ArchiveQuery { after: Some(k.into()), ..q() };
    let before = |k: &str| ArchiveQuery { before: Some(k.into()), ..q() };
    assert_eq!(keys(&find(&archive, after("k03")).await), ks(4..=9));
    assert_eq!(keys(&find(&archive, before("k03")).await), ks(0..=2));
    let between = ArchiveQuery { after: Some("k02".into()), before: Some("k06".into()), ..q() };
    assert_eq!(keys(&find(&archive, between).await), ks(3..=5));
    let last = find(&archive, after("k09")).await;
    assert!(last.items.is_empty() && last.complete);

    // An id the archive does not hold (here: only in another user's archive) is an error.
    for query in [after("missing"), before("missing")] {
        match archive.find("juliet", &query).await {
            Err(StorageError::ItemNotFound(key)) => assert_eq!(key, "missing"),
            other => panic!("expected ItemNotFound, got {other:?}"),
        }
        assert!(matches!(archive.count("juliet", &query).await, Err(StorageError::ItemNotFound(_))));
        assert!(matches!(archive.delete("juliet", &query).await, Err(StorageError::ItemNotFound(_))));
    }
    assert!(matches!(archive.find("nurse", &after("k05")).await, Err(StorageError::ItemNotFound(_))));
    assert_eq!(archive.count("juliet", &q()).await.unwrap(), 10, "failed deletes removed nothing");
}

pub async fn archive_find_by_ids(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "mam");
    fill(&archive).await;
    let ids = |list: &[&str]| Some(list.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let page = find(&archive, ArchiveQuery { ids: ids(&["k05", "k01", "unknown"]), ..q() }).await;
    assert_eq!(keys(&page), ["k01", "k05"], "chronological, unknown ids ignored");
    let page = find(&archive, ArchiveQuery { ids: ids(&[]), ..q() }).await;
    assert!(page.items.is_empty() && page.complete);
    let page = find(&archive, ArchiveQuery { ids: ids(&["k01", "k02"]), with: Some(ROMEO.into()), ..q() }).await;
    assert_eq!(keys(&page), ["k02"]);
}

pub async fn archive_paging_forward(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "mam");
    let empty = find(&archive, ArchiveQuery { limit: Some(0), ..q() }).await;
    assert!(empty.items.is_empty() && empty.complete);
    fill(&archive).await;

    for limit in [1, 3, 5, 10, 11] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = find(&archive, ArchiveQuery { limit: Some(limit), after: after.clone(), ..q() }).await;
            assert!(page.items.len() <= limit);
            seen.extend(keys(&page).iter().map(|k| k.to_string()));
            after = page.items.last().map(|i| i.key.clone());
            if page.complete {
                break;
            }
            assert_eq!(page.items.len(), limit, "an incomplete page is full");
        }
        assert_eq!(seen, ks(0..=9), "limit {limit}");
    }
    let first = find(&archive, ArchiveQuery { limit: Some(3), ..q() }).await;
    assert_eq!((keys(&first), first.complete), (vec!["k00", "k01", "k02"], false));
    let exact = find(&archive, ArchiveQuery { limit: Some(5), after: Some("k04".into()), ..q() }).await;
    assert_eq!((keys(&exact), exact.complete), (ks(5..=9).iter().map(String::as_str).collect(), true));
    let none = find(&archive, ArchiveQuery { limit: Some(0), ..q() }).await;
    assert!(none.items.is_empty() && !none.complete);
    let romeo =
        find(&archive, ArchiveQuery { limit: Some(2), with: Some(ROMEO.into()), after: Some("k02".into()), ..q() })
            .await;
    assert_eq!((keys(&romeo), romeo.complete), (vec!["k04", "k06"], false));
}

pub async fn archive_paging_backward(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "mam");
    fill(&archive).await;
    let all = find(&archive, ArchiveQuery { reverse: true, ..q() }).await;
    assert_eq!((keys(&all).len(), all.complete), (10, true));
    assert_eq!(keys(&all), ks(0..=9), "reverse still returns chronological order");

    for limit in [1, 3, 5, 10, 11] {
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let query = ArchiveQuery { limit: Some(limit), before: before.clone(), reverse: true, ..q() };
            let page = find(&archive, query).await;
            let mut page_keys: Vec<String> = keys(&page).iter().map(|k| k.to_string()).collect();
            let mut sorted = page_keys.clone();
            sorted.sort();
            assert_eq!(page_keys, sorted, "each page is chronological");
            page_keys.extend(seen);
            seen = page_keys;
            before = page.items.first().map(|i| i.key.clone());
            if page.complete {
                break;
            }
            assert_eq!(page.items.len(), limit);
        }
        assert_eq!(seen, ks(0..=9), "limit {limit}");
    }
    let last = find(&archive, ArchiveQuery { limit: Some(3), reverse: true, ..q() }).await;
    assert_eq!((keys(&last), last.complete), (vec!["k07", "k08", "k09"], false));
    let head = find(&archive, ArchiveQuery { limit: Some(3), before: Some("k01".into()), reverse: true, ..q() }).await;
    assert_eq!((keys(&head), head.complete), (vec!["k00"], true));
}

pub async fn archive_count(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "mam");
    assert_eq!(archive.count("juliet", &q()).await.unwrap(), 0);
    fill(&archive).await;
    let count = |query: ArchiveQuery| {
        let archive = archive.clone();
        async move { archive.count("juliet", &query).await.unwrap() }
    };
    assert_eq!(count(q()).await, 10);
    assert_eq!(count(ArchiveQuery { with: Some(ROMEO.into()), ..q() }).await, 5);
    assert_eq!(count(ArchiveQuery { start: Some(5 * SECOND), ..q() }).await, 6);
    assert_eq!(count(ArchiveQuery { after: Some("k04".into()), ..q() }).await, 5);
    assert_eq!(count(ArchiveQuery { limit: Some(2), reverse: true, ..q() }).await, 10, "limit ignored");
    assert_eq!(archive.count("nurse", &q()).await.unwrap(), 1);
}

/// Items with no correspondent are outside the correspondent index; a query for the empty
/// correspondent still finds them, and queries for others do not see them.
pub async fn archive_find_by_empty_with(s: Storage, layout: Layout) {
    let archive = layout.open(&s, HOST, "mam");
    fill(&archive).await;
    for key in ["n0", "n1"] {
        archive.append("juliet", &super::item(Some(key), 20 * SECOND, "", Value::text("inbox"))).await.unwrap();
    }
    let page = find(&archive, ArchiveQuery { with: Some(String::new()), ..q() }).await;
    assert_eq!(keys(&page), ["n0", "n1"]);
    let page = find(&archive, ArchiveQuery { with: Some(ROMEO.into()), ..q() }).await;
    assert_eq!(keys(&page), ["k00", "k02", "k04", "k06", "k08"]);
    assert_eq!(archive.count("juliet", &q()).await.unwrap(), 12);
    assert_eq!(archive.delete("juliet", &ArchiveQuery { with: Some(String::new()), ..q() }).await.unwrap(), 2);
    assert_eq!(archive.count("juliet", &q()).await.unwrap(), 10);
}
