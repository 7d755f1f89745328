//! Expiry with a set clock, and the keys of retransmissions.

use super::inbox::{Inbox, OriginKeys};
use super::restart::Dedup;
use super::{DELIVERED, Offline};
use crate::module_api::{Archive, ArchiveQuery, NewItem, ServerHandle, Storage, Value};
use std::sync::Weak;
use std::time::Duration;

const DAY: i64 = 86_400 * 1_000_000;

fn item(key: &str, when: i64) -> NewItem {
    NewItem { key: Some(key.into()), when, with: "romeo@example.net".into(), value: Value::xml(b"<message/>".to_vec()) }
}

async fn keys(archive: &Archive) -> Vec<String> {
    let page = archive.find("juliet", &ArchiveQuery::default()).await.unwrap();
    page.items.into_iter().map(|i| i.key).collect()
}

#[tokio::test]
async fn expiry_removes_old_messages_and_old_delivery_records_by_their_own_periods() {
    let storage = Storage::open("sqlite::memory:").await.unwrap();
    let stored = storage.queue("example.com", "offline");
    let records = storage.archive("example.com", DELIVERED);
    let now = 1_000 * DAY;
    for (key, age) in [("year-old", 366), ("month-old", 30)] {
        stored.append("juliet", &item(key, now - age * DAY)).await.unwrap();
    }
    for (key, age) in [("two-days", 2), ("an-hour", 0)] {
        records.append("juliet", &item(key, now - age * DAY - 3_600_000_000)).await.unwrap();
    }
    let offline = Offline {
        inbox: Inbox::new(
            stored,
            records,
            "example.com",
            10,
            Dedup { check_after_start: Duration::ZERO, records_at_start: 10, window: Duration::from_secs(86_400) },
            storage.keyval("example.com", "inbox_secret"),
            ServerHandle::new(Weak::new()),
        ),
        retention: Duration::from_secs(365 * 86_400),
        dedup_window: Duration::from_secs(86_400),
    };
    offline.expire(now).await;
    assert_eq!(keys(offline.inbox.stored()).await, vec!["month-old"]);
    assert_eq!(keys(offline.inbox.records()).await, vec!["an-hour"]);
    // A year later nothing is left.
    offline.expire(now + 365 * DAY).await;
    assert!(keys(offline.inbox.stored()).await.is_empty());
    assert!(keys(offline.inbox.records()).await.is_empty());
}

#[test]
fn retransmissions_share_a_key_that_depends_on_the_sender_and_the_secret() {
    let key_for_origin = |secret: &[u8], sender, id| OriginKeys::new(secret).unwrap().key(sender, id);
    let key = key_for_origin(b"secret", "romeo@example.net", "abc");
    assert_eq!(key, key_for_origin(b"secret", "romeo@example.net", "abc"));
    assert_ne!(key, key_for_origin(b"secret", "mercutio@example.net", "abc"));
    assert_ne!(key, key_for_origin(b"another secret", "romeo@example.net", "abc"));
    // Stored messages and delivery records carry these keys: they must not change between
    // versions (the first 15 bytes of HMAC-SHA-256 over sender, a zero byte and the id).
    assert_eq!(key, "KxtxUxd9lKEPXAn61Aj0");
}
