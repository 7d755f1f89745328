//! Contract: what spans every shape (awkward values and keys, isolation, account removal,
//! concurrency).

use super::{HOST, item, pseudo_random_text};
use serde_json::json;
use starling::storage::{ArchiveQuery, Storage, Value, ValueKind};

/// Every kind of value, with text outside ASCII and bytes that are not UTF-8, in every shape.
pub async fn values_unicode_and_binary(s: Storage) {
    let all_bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let values = [
        Value::json(&json!({"name": "Ælfgifu ☃ 🐦", "nul": "a\u{0}b", "list": [1, 2.5, null]})).unwrap(),
        Value::xml("<message xmlns='jabber:client' to='ромео@пример.рф'><body>Ünïcødé 日本語 🐦</body></message>"),
        Value::text("right-to-left: שלום, combining: e\u{301}, emoji: 👩‍👩‍👧"),
        Value::bytes(all_bytes),
        Value::bytes(Vec::new()),
        Value::text(""),
    ];
    let kv = s.keyval(HOST, "blobs");
    let map = s.map(HOST, "blobs-map");
    let archive = s.archive(HOST, "blobs-archive");
    for (i, value) in values.iter().enumerate() {
        let user = format!("user-ü-{i}");
        kv.set(&user, Some(value)).await.unwrap();
        assert_eq!(kv.get(&user).await.unwrap().as_ref(), Some(value));

        let key = format!("ключ-{i}-🔑");
        map.set("juliet", &key, Some(value)).await.unwrap();
        assert_eq!(map.get("juliet", &key).await.unwrap().as_ref(), Some(value));

        let id = archive.append("juliet", &item(Some(&key), i as i64, "ромео@пример.рф", value.clone())).await.unwrap();
        let stored = archive.get("juliet", &id.key).await.unwrap().unwrap();
        assert_eq!(&stored.value, value);
        assert_eq!(stored.with, "ромео@пример.рф");
    }
    let page = archive
        .find("juliet", &ArchiveQuery { with: Some("ромео@пример.рф".into()), ..Default::default() })
        .await
        .unwrap();
    let found: Vec<Value> = page.items.into_iter().map(|i| i.value).collect();
    assert_eq!(found, values);
    assert_eq!(values[3].kind, ValueKind::Bytes);
}

/// Keys and names well past 1000 characters stay distinct when they differ only at the end.
pub async fn long_unique_keys(s: Storage) {
    let stem = pseudo_random_text(1500, 7);
    let key_a = format!("{stem}A");
    let key_b = format!("{stem}B");
    let user = pseudo_random_text(300, 11);
    let with = pseudo_random_text(1000, 13);

    let map = s.map(HOST, "long");
    map.set(&user, &key_a, Some(&Value::text("a"))).await.unwrap();
    map.set(&user, &key_b, Some(&Value::text("b"))).await.unwrap();
    assert_eq!(map.get(&user, &key_a).await.unwrap(), Some(Value::text("a")));
    assert_eq!(map.get(&user, &key_b).await.unwrap(), Some(Value::text("b")));
    assert_eq!(map.users_with_key(&key_b).await.unwrap(), vec![user.clone()]);

    let kv = s.keyval(HOST, "long-kv");
    kv.set(&user, Some(&Value::text("doc"))).await.unwrap();
    assert_eq!(kv.users().await.unwrap(), vec![user.clone()]);

    let archive = s.archive(HOST, "long");
    let a = archive.append(&user, &item(Some(&key_a), 1, &with, Value::text("a"))).await.unwrap();
    let b = archive.append(&user, &item(Some(&key_b), 2, &with, Value::text("b"))).await.unwrap();
    assert_eq!(a.key, key_a);
    assert_ne!(a.sort_id, b.sort_id);
    assert_eq!(archive.get(&user, &key_b).await.unwrap().unwrap().value, Value::text("b"));
    let query = ArchiveQuery { with: Some(with.clone()), after: Some(key_a.clone()), ..Default::default() };
    let page = archive.find(&user, &query).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].key, key_b);
}

/// Hosts, stores and users never see each other's data, in any shape.
pub async fn isolation_between_hosts_stores_users(s: Storage) {
    let scopes = [(HOST, "s1", "alice"), (HOST, "s1", "bob"), (HOST, "s2", "alice"), ("b.example", "s1", "alice")];
    for (i, (host, store, user)) in scopes.iter().enumerate() {
        let v = Value::text(format!("v{i}"));
        s.keyval(host, &format!("{store}-kv")).set(user, Some(&v)).await.unwrap();
        s.map(host, store).set(user, "k", Some(&v)).await.unwrap();
        s.archive(host, store).append(user, &item(Some("same-key"), 10, "w", v)).await.unwrap();
    }
    for (i, (host, store, user)) in scopes.iter().enumerate() {
        let v = Value::text(format!("v{i}"));
        assert_eq!(s.keyval(host, &format!("{store}-kv")).get(user).await.unwrap(), Some(v.clone()));
        assert_eq!(s.map(host, store).get(user, "k").await.unwrap(), Some(v.clone()));
        let archive = s.archive(host, store);
        let page = archive.find(user, &ArchiveQuery::default()).await.unwrap();
        assert_eq!(page.items.len(), 1, "{host} {store} {user}");
        assert_eq!(page.items[0].value, v);
        assert_eq!(archive.count(user, &ArchiveQuery::default()).await.unwrap(), 1);
    }
    assert_eq!(s.map(HOST, "s1").users_with_key("k").await.unwrap(), vec!["alice", "bob"]);
    assert_eq!(s.archive(HOST, "s1").users().await.unwrap(), vec!["alice", "bob"]);
    assert_eq!(s.keyval(HOST, "s2-kv").users().await.unwrap(), vec!["alice"]);
    // Expiry in one store of one host touches nothing else.
    assert_eq!(s.archive(HOST, "s1").delete_older_than(i64::MAX).await.unwrap(), 2);
    assert_eq!(s.archive(HOST, "s2").count("alice", &ArchiveQuery::default()).await.unwrap(), 1);
    assert_eq!(s.archive("b.example", "s1").count("alice", &ArchiveQuery::default()).await.unwrap(), 1);
}

/// Account removal clears every store of every shape for that user on that host only.
pub async fn delete_user_across_shapes(s: Storage) {
    let v = Value::text("x");
    for (host, user) in [(HOST, "alice"), (HOST, "bob"), ("b.example", "alice")] {
        for store in ["one", "two"] {
            s.keyval(host, store).set(user, Some(&v)).await.unwrap();
            s.map(host, &format!("{store}-map")).set(user, "k", Some(&v)).await.unwrap();
            s.archive(host, store).append(user, &item(None, 1, "w", v.clone())).await.unwrap();
            s.queue(host, &format!("{store}-queue")).append(user, &item(None, 1, "w", v.clone())).await.unwrap();
        }
    }
    s.delete_user(HOST, "alice").await.unwrap();

    for store in ["one", "two"] {
        assert_eq!(s.keyval(HOST, store).get("alice").await.unwrap(), None);
        assert!(s.map(HOST, &format!("{store}-map")).get_all("alice").await.unwrap().is_empty());
        assert_eq!(s.archive(HOST, store).count("alice", &ArchiveQuery::default()).await.unwrap(), 0);
        let queue = s.queue(HOST, &format!("{store}-queue"));
        assert_eq!(queue.count("alice", &ArchiveQuery::default()).await.unwrap(), 0);
        assert_eq!(queue.count("bob", &ArchiveQuery::default()).await.unwrap(), 1);

        assert_eq!(s.keyval(HOST, store).get("bob").await.unwrap(), Some(v.clone()));
        assert_eq!(s.archive(HOST, store).count("bob", &ArchiveQuery::default()).await.unwrap(), 1);
        assert_eq!(s.keyval("b.example", store).get("alice").await.unwrap(), Some(v.clone()));
        assert_eq!(s.archive("b.example", store).count("alice", &ArchiveQuery::default()).await.unwrap(), 1);
    }
    // Removing a user with nothing stored is fine.
    s.delete_user(HOST, "nobody").await.unwrap();
}

/// Writers in parallel tasks neither fail (locking, busy database) nor lose rows.
pub async fn concurrent_writers(s: Storage) {
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let archive = s.archive(HOST, "parallel");
            let kv = s.keyval(HOST, "parallel");
            for i in 0..20 {
                archive.append("juliet", &item(None, i, "w", Value::text("x"))).await.unwrap();
                kv.set(&format!("user{t}"), Some(&Value::text(format!("{i}")))).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let page = s.archive(HOST, "parallel").find("juliet", &ArchiveQuery::default()).await.unwrap();
    assert_eq!(page.items.len(), 160);
    let mut ids: Vec<i64> = page.items.iter().map(|i| i.sort_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 160);
    assert_eq!(s.keyval(HOST, "parallel").users().await.unwrap().len(), 8);
}
