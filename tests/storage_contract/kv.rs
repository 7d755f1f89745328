//! Contract: the keyval and map shapes.

use super::HOST;
use serde_json::json;
use starling::storage::{Storage, Value};

pub async fn keyval_set_get_overwrite_delete(s: Storage) {
    let kv = s.keyval(HOST, "accounts");
    assert_eq!(kv.get("juliet").await.unwrap(), None);

    let first = Value::json(&json!({"password": "x", "n": 1})).unwrap();
    kv.set("juliet", Some(&first)).await.unwrap();
    assert_eq!(kv.get("juliet").await.unwrap(), Some(first.clone()));
    assert_eq!(kv.get("juliet").await.unwrap().unwrap().to_json::<serde_json::Value>().unwrap()["n"], 1);

    // Overwriting may change the kind as well as the bytes.
    let second = Value::text("plain");
    kv.set("juliet", Some(&second)).await.unwrap();
    assert_eq!(kv.get("juliet").await.unwrap(), Some(second));

    kv.set("juliet", None).await.unwrap();
    assert_eq!(kv.get("juliet").await.unwrap(), None);
    // Deleting what is not there is not an error.
    kv.set("juliet", None).await.unwrap();
    assert!(kv.users().await.unwrap().is_empty());
}

pub async fn keyval_users_sorted(s: Storage) {
    let kv = s.keyval(HOST, "vcard");
    let mut names = vec!["zoë", "alice", "Bob", "émile", "a b", "Z", "ümlaut", "0"];
    for name in &names {
        kv.set(name, Some(&Value::text(*name))).await.unwrap();
    }
    kv.set("gone", Some(&Value::text("x"))).await.unwrap();
    kv.set("gone", None).await.unwrap();
    // Other stores and hosts do not leak in.
    s.keyval(HOST, "other").set("intruder", Some(&Value::text("x"))).await.unwrap();
    s.keyval("other.example", "vcard").set("intruder", Some(&Value::text("x"))).await.unwrap();

    names.sort(); // Rust's order on str is bytewise, as promised.
    assert_eq!(kv.users().await.unwrap(), names);
}

pub async fn map_set_get_overwrite_delete(s: Storage) {
    let map = s.map(HOST, "roster");
    assert_eq!(map.get("juliet", "romeo@example.net").await.unwrap(), None);

    let item = Value::json(&json!({"subscription": "both"})).unwrap();
    map.set("juliet", "romeo@example.net", Some(&item)).await.unwrap();
    assert_eq!(map.get("juliet", "romeo@example.net").await.unwrap(), Some(item));

    let changed = Value::json(&json!({"subscription": "to"})).unwrap();
    map.set("juliet", "romeo@example.net", Some(&changed)).await.unwrap();
    assert_eq!(map.get("juliet", "romeo@example.net").await.unwrap(), Some(changed));
    assert_eq!(map.get("juliet", "nurse@example.net").await.unwrap(), None);
    assert_eq!(map.get("romeo", "romeo@example.net").await.unwrap(), None);

    map.set("juliet", "romeo@example.net", None).await.unwrap();
    assert_eq!(map.get("juliet", "romeo@example.net").await.unwrap(), None);
    map.set("juliet", "romeo@example.net", None).await.unwrap();
}

pub async fn map_insert_new_keeps_the_first_value(s: Storage) {
    let map = s.map("", "secrets");
    let first = Value::bytes(vec![1; 32]);
    assert_eq!(map.insert_new("", "key-1", &first).await.unwrap(), Some(first.clone()));
    let later = Value::bytes(vec![2; 32]);
    assert_eq!(map.insert_new("", "key-1", &later).await.unwrap(), Some(first.clone()), "not replaced");
    assert_eq!(map.get("", "key-1").await.unwrap(), Some(first));

    // Writers racing for one free key all come back with the same, single winner.
    let racers = (0..8u8).map(|n| {
        let map = map.clone();
        tokio::spawn(async move { map.insert_new("", "key-2", &Value::bytes(vec![n; 32])).await.unwrap() })
    });
    let mut results = Vec::new();
    for racer in racers.collect::<Vec<_>>() {
        results.push(racer.await.unwrap().unwrap());
    }
    assert!(results.windows(2).all(|pair| pair[0] == pair[1]), "{results:?}");
    assert_eq!(map.get("", "key-2").await.unwrap().as_ref(), results.first());
}

pub async fn map_get_all_sorted(s: Storage) {
    let map = s.map(HOST, "roster");
    assert!(map.get_all("juliet").await.unwrap().is_empty());
    let mut keys = vec!["b", "a", "é", "Z", "a b", "☃", "aa"];
    for key in &keys {
        map.set("juliet", key, Some(&Value::text(format!("v-{key}")))).await.unwrap();
    }
    map.set("romeo", "not-juliets", Some(&Value::text("x"))).await.unwrap();
    s.map(HOST, "other").set("juliet", "not-this-store", Some(&Value::text("x"))).await.unwrap();

    keys.sort();
    let all = map.get_all("juliet").await.unwrap();
    let expected: Vec<(String, Value)> = keys.iter().map(|k| (k.to_string(), Value::text(format!("v-{k}")))).collect();
    assert_eq!(all, expected);
}

pub async fn map_get_all_with_another_store(s: Storage) {
    let roster = s.map(HOST, "roster");
    let pending = s.map(HOST, "pending");
    assert_eq!(roster.get_all_with(&pending, "juliet").await.unwrap(), (Vec::new(), Vec::new()));
    for key in ["b", "a", "☃"] {
        roster.set("juliet", key, Some(&Value::text(format!("item-{key}")))).await.unwrap();
    }
    pending.set("juliet", "z", Some(&Value::text("request-z"))).await.unwrap();
    pending.set("juliet", "c", Some(&Value::text("request-c"))).await.unwrap();
    // Neither another user's, another store's nor another host's entries come along.
    pending.set("romeo", "x", Some(&Value::text("x"))).await.unwrap();
    s.map(HOST, "other").set("juliet", "x", Some(&Value::text("x"))).await.unwrap();
    s.map("other.example", "pending").set("juliet", "x", Some(&Value::text("x"))).await.unwrap();

    let (items, requests) = roster.get_all_with(&pending, "juliet").await.unwrap();
    assert_eq!(items, roster.get_all("juliet").await.unwrap());
    assert_eq!(items.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["a", "b", "☃"]);
    assert_eq!(requests, vec![("c".into(), Value::text("request-c")), ("z".into(), Value::text("request-z"))]);
    // The other way round, each side still holds its own store's entries.
    let (requests_first, items_second) = pending.get_all_with(&roster, "juliet").await.unwrap();
    assert_eq!((requests_first, items_second), (requests, items.clone()));
    // A store of another host, or the same store, is read on its own.
    let elsewhere = s.map("other.example", "pending");
    let (mine, theirs) = roster.get_all_with(&elsewhere, "juliet").await.unwrap();
    assert_eq!((mine, theirs), (items.clone(), vec![("x".into(), Value::text("x"))]));
    let (first, second) = roster.get_all_with(&roster, "juliet").await.unwrap();
    assert_eq!((first, second), (items.clone(), items));
}

pub async fn map_users_with_key(s: Storage) {
    let map = s.map(HOST, "push");
    let v = Value::text("registration");
    for user in ["romeo", "juliet", "benvolio"] {
        map.set(user, "device-1", Some(&v)).await.unwrap();
    }
    map.set("nurse", "device-2", Some(&v)).await.unwrap();
    map.set("benvolio", "device-1", None).await.unwrap();
    s.map(HOST, "other").set("tybalt", "device-1", Some(&v)).await.unwrap();
    s.map("other.example", "push").set("mercutio", "device-1", Some(&v)).await.unwrap();

    assert_eq!(map.users_with_key("device-1").await.unwrap(), vec!["juliet", "romeo"]);
    assert_eq!(map.users_with_key("device-2").await.unwrap(), vec!["nurse"]);
    assert!(map.users_with_key("device-3").await.unwrap().is_empty());
}

pub async fn map_delete_all(s: Storage) {
    let map = s.map(HOST, "roster");
    let v = Value::text("x");
    for key in ["a", "b", "c"] {
        map.set("juliet", key, Some(&v)).await.unwrap();
    }
    map.set("romeo", "a", Some(&v)).await.unwrap();
    s.map(HOST, "other").set("juliet", "a", Some(&v)).await.unwrap();

    assert_eq!(map.delete_all("juliet").await.unwrap(), 3);
    assert!(map.get_all("juliet").await.unwrap().is_empty());
    assert_eq!(map.delete_all("juliet").await.unwrap(), 0);
    assert_eq!(map.get("romeo", "a").await.unwrap(), Some(v.clone()));
    assert_eq!(s.map(HOST, "other").get("juliet", "a").await.unwrap(), Some(v));
}
