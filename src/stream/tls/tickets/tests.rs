//! Sealing and opening tickets across epochs, and keys shared through storage.

use super::*;

/// The start of an epoch, well inside the range of `u32` epochs.
const T0: u64 = 20_000 * EPOCH_SECS;

#[test]
fn a_ticket_opens_for_its_lifetime_and_not_after() {
    let keys = TicketKeys::generated_at(T0);
    let session = b"the session state".to_vec();
    // Sealed in the last second of the epoch: the shortest life a ticket gets.
    let late = T0 + EPOCH_SECS - 1;
    let ticket = keys.seal_at(&session, late).unwrap();
    assert_ne!(&ticket[EPOCH_LEN + NONCE_LEN..][..session.len()], &session[..], "the session is encrypted");
    assert_eq!(keys.open_at(&ticket, late), Some(session.clone()));
    assert_eq!(keys.open_at(&ticket, late + u64::from(LIFETIME_SECS)), Some(session.clone()));
    let expiry = T0 + OPEN_EPOCHS * EPOCH_SECS;
    assert_eq!(keys.open_at(&ticket, expiry - 1), Some(session));
    assert_eq!(keys.open_at(&ticket, expiry), None, "its key no longer opens tickets");
}

#[test]
fn every_ticket_is_sealed_afresh() {
    let keys = TicketKeys::generated_at(T0);
    let a = keys.seal_at(b"same", T0).unwrap();
    let b = keys.seal_at(b"same", T0).unwrap();
    assert_ne!(a, b, "a new nonce each time");
}

#[test]
fn altered_or_foreign_tickets_do_not_open() {
    let keys = TicketKeys::generated_at(T0);
    let ticket = keys.seal_at(b"the session state", T0).unwrap();
    for index in 0..ticket.len() {
        let mut altered = ticket.clone();
        altered[index] ^= 0x01;
        assert_eq!(keys.open_at(&altered, T0), None, "byte {index} altered");
    }
    for len in 0..ticket.len() {
        assert_eq!(keys.open_at(&ticket[..len], T0), None, "cut to {len} bytes");
    }
    assert_eq!(TicketKeys::generated_at(T0).open_at(&ticket, T0), None, "other keys");
    assert_eq!(keys.open_at(&[0xff; 64], T0), None);
}

#[test]
fn without_a_usable_key_no_ticket_is_issued() {
    assert_eq!(TicketKeys::default().seal_at(b"s", T0), None);
    // Keys only for epochs long past: sealing with them would issue dead tickets.
    assert_eq!(TicketKeys::generated_at(T0).seal_at(b"s", T0 + 10 * EPOCH_SECS), None);
}

#[test]
fn a_node_whose_clock_is_ahead_seals_tickets_the_others_open() {
    // Every node holds the current and the next epoch's keys; one node has crossed into the
    // next epoch while another has not.
    let keys = TicketKeys::generated_at(T0);
    let next_epoch = T0 + EPOCH_SECS;
    let from_ahead = keys.seal_at(b"s", next_epoch).unwrap();
    assert_eq!(from_ahead[..EPOCH_LEN], (epoch_of(T0) + 1).to_be_bytes());
    assert_eq!(keys.open_at(&from_ahead, T0), Some(b"s".to_vec()));
    // But no node seals with a key two epochs ahead of its clock.
    assert_eq!(TicketKeys::generated_at(next_epoch).seal_at(b"s", T0 - EPOCH_SECS), None);
}

async fn sqlite_file(dir: &tempfile::TempDir) -> Storage {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("shared.db").display());
    Storage::open(&url).await.unwrap()
}

#[tokio::test]
async fn nodes_on_one_database_open_each_others_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (sqlite_file(&dir).await, sqlite_file(&dir).await);
    let (first, second) =
        (TicketKeys::from_storage(&one).await.unwrap(), TicketKeys::from_storage(&two).await.unwrap());
    let now = unix_now();
    let ticket = first.seal_at(b"session", now).unwrap();
    assert_eq!(second.open_at(&ticket, now), Some(b"session".to_vec()));
    let back = second.seal_at(b"other", now).unwrap();
    assert_eq!(first.open_at(&back, now), Some(b"other".to_vec()));
    one.close().await;
    // A restart reads the same keys back.
    let restarted = TicketKeys::from_storage(&two).await.unwrap();
    assert_eq!(restarted.open_at(&ticket, now), Some(b"session".to_vec()));
}

#[tokio::test]
async fn refreshing_creates_ahead_and_erases_expired_keys() {
    let storage = Storage::open("sqlite::memory:").await.unwrap();
    let store = key_store(&storage);
    let keys = TicketKeys::default();
    keys.refresh(&store, T0).await.unwrap();
    let stored = |entries: Vec<(String, Value)>| entries.into_iter().map(|(name, _)| name).collect::<Vec<_>>();
    let (e0, e1) = (epoch_of(T0), epoch_of(T0) + 1);
    assert_eq!(stored(store.get_all("").await.unwrap()), [key_name(e0), key_name(e1)]);
    let ticket = keys.seal_at(b"s", T0).unwrap();

    // A day and a half later, epoch e0's key is past its last epoch and is erased.
    let later = T0 + OPEN_EPOCHS * EPOCH_SECS;
    keys.refresh(&store, later).await.unwrap();
    let now_stored = stored(store.get_all("").await.unwrap());
    assert!(!now_stored.contains(&key_name(e0)), "{now_stored:?}");
    assert!(now_stored.contains(&key_name(e1)) && now_stored.contains(&key_name(epoch_of(later) + 1)));
    assert_eq!(keys.open_at(&ticket, T0), None, "the erased key is gone from memory too");
    assert!(keys.seal_at(b"s", later).is_some());

    // A node whose clock runs far behind leaves the others' newer keys alone.
    keys.refresh(&store, T0).await.unwrap();
    assert!(store.get("", &key_name(epoch_of(later) + 1)).await.unwrap().is_some());
    assert!(keys.seal_at(b"s", T0).is_some());

    // Entries that are not keys of this format are left alone; broken keys are erased.
    store.set("", "unrelated", Some(&Value::text("x"))).await.unwrap();
    store.set("", &key_name(epoch_of(later)), Some(&Value::bytes(vec![1, 2, 3]))).await.unwrap();
    keys.refresh(&store, later).await.unwrap();
    assert_eq!(store.get("", "unrelated").await.unwrap(), Some(Value::text("x")));
    assert_eq!(store.get("", &key_name(epoch_of(later))).await.unwrap(), None);
}
