//! Expiry with a set clock.

use super::Mam;
use super::prefs::{DefaultRule, Prefs};
use crate::module_api::{ArchiveQuery, NewItem, Storage, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DAY: i64 = 86_400 * 1_000_000;

#[tokio::test]
async fn expiry_enforces_the_retention_cap() {
    let storage = Storage::open("sqlite::memory:").await.unwrap();
    let archive = storage.archive("example.com", "mam");
    let now = 20_000 * DAY;
    for (key, age) in [("old", 91), ("recent", 89), ("today", 0)] {
        let item = NewItem {
            key: Some(key.into()),
            when: now - age * DAY,
            with: "romeo@example.net".into(),
            value: Value::xml(b"<message/>".to_vec()),
        };
        archive.append("juliet", &item).await.unwrap();
    }
    let roster = super::super::roster::Roster::new(
        storage.map("example.com", "roster"),
        storage.keyval("example.com", "roster_version"),
        crate::module_api::ServerHandle::new(std::sync::Weak::new()),
    );
    let mam = Mam {
        archive: archive.clone(),
        prefs: storage.keyval("example.com", "mam_prefs"),
        roster: Arc::new(roster),
        default: DefaultRule::Never,
        max_retention: Duration::from_secs(90 * 86_400),
        cache: Mutex::new(HashMap::new()),
    };
    mam.expire(now).await;
    let keys: Vec<String> =
        archive.find("juliet", &ArchiveQuery::default()).await.unwrap().items.into_iter().map(|i| i.key).collect();
    assert_eq!(keys, ["recent", "today"]);
    mam.expire(now + 90 * DAY).await;
    let left = archive.find("juliet", &ArchiveQuery::default()).await.unwrap().items.len();
    assert_eq!(left, 1, "only today's item is within 90 days of the later clock");
    assert_eq!(mam.prefs_of("juliet").await.unwrap().as_ref(), &Prefs::with_default(DefaultRule::Never));
}
