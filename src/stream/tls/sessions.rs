//! The server's store of TLS sessions for resumption (RFC 8446 §2.2 tickets of TLS 1.3, whose
//! ids are keys into this store, and TLS 1.2 session ids).
//!
//! A bounded map that forgets the oldest session first. rustls's own memory cache keeps its
//! insertion order in a list that `take` searches from the front, comparing every key on the
//! way: with thousands of sessions held, each resumption attempt compared thousands of keys
//! (3% of the server's CPU per login when clients reconnect with tickets). Here each
//! operation is a hash lookup: the order list may hold entries already taken, recognised by
//! their insertion number and skipped when the oldest is evicted, and it is compacted when
//! such entries make up half of it.

use rustls::server::StoresServerSessions;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Sessions by id, at most `capacity` of them.
#[derive(Debug)]
pub struct SessionStore {
    capacity: usize,
    inner: Mutex<Sessions>,
}

#[derive(Debug, Default)]
struct Sessions {
    /// Session value and insertion number by id.
    by_id: HashMap<Vec<u8>, (u64, Vec<u8>)>,
    /// Ids in insertion order with their insertion number; an entry whose number no longer
    /// matches `by_id` was taken or replaced.
    order: VecDeque<(u64, Vec<u8>)>,
    inserted: u64,
}

impl SessionStore {
    /// A store holding at most `capacity` sessions (at least one).
    pub fn new(capacity: usize) -> SessionStore {
        SessionStore { capacity: capacity.max(1), inner: Mutex::new(Sessions::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many sessions are held.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Sessions {
    fn is_current(&self, number: u64, id: &[u8]) -> bool {
        self.by_id.get(id).is_some_and(|(current, _)| *current == number)
    }

    /// Removes the oldest session; false when there was none to find.
    fn evict_oldest(&mut self) -> bool {
        while let Some((number, id)) = self.order.pop_front() {
            if self.is_current(number, &id) {
                self.by_id.remove(&id);
                return true;
            }
        }
        false
    }

    fn compact(&mut self) {
        let order = std::mem::take(&mut self.order);
        self.order = order.into_iter().filter(|(number, id)| self.is_current(*number, id)).collect();
    }
}

impl StoresServerSessions for SessionStore {
    fn put(&self, id: Vec<u8>, value: Vec<u8>) -> bool {
        let mut sessions = self.lock();
        sessions.inserted += 1;
        let number = sessions.inserted;
        sessions.order.push_back((number, id.clone()));
        sessions.by_id.insert(id, (number, value));
        while sessions.by_id.len() > self.capacity && sessions.evict_oldest() {}
        if sessions.order.len() > 2 * self.capacity {
            sessions.compact();
        }
        true
    }

    fn get(&self, id: &[u8]) -> Option<Vec<u8>> {
        self.lock().by_id.get(id).map(|(_, value)| value.clone())
    }

    fn take(&self, id: &[u8]) -> Option<Vec<u8>> {
        self.lock().by_id.remove(id).map(|(_, value)| value)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> Vec<u8> {
        n.to_be_bytes().to_vec()
    }

    #[test]
    fn the_oldest_session_goes_first() {
        let store = SessionStore::new(3);
        for n in 0..3 {
            store.put(id(n), vec![n as u8]);
        }
        store.put(id(3), vec![3]);
        assert_eq!(store.get(&id(0)), None);
        assert_eq!(store.get(&id(1)), Some(vec![1]));
        // Replacing a session makes it the newest.
        store.put(id(1), vec![11]);
        store.put(id(4), vec![4]);
        assert_eq!(store.get(&id(2)), None);
        assert_eq!(store.get(&id(1)), Some(vec![11]));
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn taken_sessions_are_gone_and_free_their_place() {
        let store = SessionStore::new(2);
        store.put(id(0), vec![0]);
        store.put(id(1), vec![1]);
        assert_eq!(store.take(&id(0)), Some(vec![0]));
        assert_eq!(store.take(&id(0)), None);
        store.put(id(2), vec![2]);
        assert_eq!(store.get(&id(1)), Some(vec![1]), "the taken session's place was used");
        assert_eq!(store.get(&id(2)), Some(vec![2]));
    }

    #[test]
    fn the_order_list_stays_bounded() {
        let store = SessionStore::new(4);
        for n in 0..1000 {
            store.put(id(n), vec![1]);
            if n % 2 == 0 {
                store.take(&id(n));
            }
        }
        assert!(store.lock().order.len() <= 8);
        assert_eq!(store.len(), 4);
        assert_eq!(store.get(&id(999)), Some(vec![1]));
    }
}
