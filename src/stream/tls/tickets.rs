//! Stateless TLS session tickets whose keys live in storage, so that every node of a cluster,
//! and the same node after a restart, can resume a session that any of them started.
//!
//! # Why stateless
//!
//! A TLS 1.3 server hands the client a ticket after each handshake (RFC 8446 §4.6.1); the
//! client offers it as a pre-shared key identity when it reconnects (§4.2.11) and both sides
//! skip the certificate signature, the costliest part of a handshake. A stateful server keeps
//! the session under the ticket's id; a bounded store then forgets sessions once more clients
//! hold tickets than it has room for, and a node never knows the sessions another node or its
//! own previous run issued. Here the ticket *is* the session state, sealed with AES-256-GCM
//! under a key that every node reads from the shared database: a reconnecting client resumes
//! whichever node it reaches, however many clients there are, and a node restart no longer
//! turns every reconnection into a full handshake at once.
//!
//! # Keys and their lifetime
//!
//! Time is cut into epochs of [`EPOCH_SECS`]; each epoch has one random 256-bit key, stored
//! under its number in the server-wide `tls` map store. The first node to need a key inserts
//! it; a node that loses that race reads the winner's ([`Map::insert_new`]), so all nodes seal
//! with the same key. The next epoch's key is created ahead of time, so that a node whose
//! clock is slightly ahead seals with a key the others already hold.
//!
//! A ticket is sealed with the key of the epoch it is issued in and opened only while that
//! epoch is one of the last [`OPEN_EPOCHS`]; older keys are deleted from storage and memory.
//! rustls asks for exactly this: a ticket's lifetime enforced by erasing its key, not by a
//! time written in the ticket. The lifetime announced to clients ([`LIFETIME_SECS`]) is the
//! shortest a ticket lives under that rule.
//!
//! The keys are as secret as the SCRAM server keys next to them in the same database: who
//! reads the database can open the tickets of the last epochs and so pose as the server to a
//! client resuming one of them (though not read the traffic of those connections: TLS 1.3
//! resumption here always adds a fresh (EC)DHE exchange, RFC 8446 §4.2.9 `psk_dhe_ke`).
//!
//! # Ticket format
//!
//! `epoch (4 bytes, big-endian) ‖ nonce (12 random bytes) ‖ AES-256-GCM(session) ‖ tag`, with
//! the epoch bytes as the additional authenticated data. Random nonces are safe here: one key
//! seals at most one epoch's handshakes, far below the 2^32 messages that bound random
//! 96-bit nonces under one key (NIST SP 800-38D §8.3).

use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rustls::server::ProducesTickets;

use crate::storage::{Map, Storage, StorageError, Value};

/// Length of an epoch: how long one key seals new tickets.
pub const EPOCH_SECS: u64 = 12 * 60 * 60;
/// Epochs whose keys still open tickets: the current one and the two before it.
pub const OPEN_EPOCHS: u64 = 3;
/// The lifetime announced in each ticket (RFC 8446 §4.6.1 `ticket_lifetime`): a ticket
/// sealed at the very end of an epoch opens for two more epochs, so at least this long.
pub const LIFETIME_SECS: u32 = (EPOCH_SECS * (OPEN_EPOCHS - 1)) as u32;
/// How often each node re-reads the keys (and creates the next epoch's).
const REFRESH_EVERY: Duration = Duration::from_secs(10 * 60);

const KEY_LEN: usize = 32;
const EPOCH_LEN: usize = 4;
const TAG_LEN: usize = 16;
/// The storage that holds the keys: server-wide (no host, no user), one entry per epoch.
const STORE: &str = "tls";
const KEY_PREFIX: &str = "ticket-key-";

/// The ticket keys this node holds; rustls's ticketer for every incoming TLS connection.
#[derive(Default)]
pub struct TicketKeys {
    keys: RwLock<Vec<EpochKey>>,
}

struct EpochKey {
    epoch: u32,
    key: LessSafeKey,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let epochs: Vec<u32> = self.read().iter().map(|k| k.epoch).collect();
        f.debug_struct("TicketKeys").field("epochs", &epochs).finish()
    }
}

impl TicketKeys {
    /// Keys read from (and, where missing, created in) `storage`, shared with every node and
    /// every later run on the same database.
    pub async fn from_storage(storage: &Storage) -> Result<Arc<TicketKeys>, StorageError> {
        let keys = Arc::new(TicketKeys::default());
        keys.refresh(&key_store(storage), unix_now()).await?;
        Ok(keys)
    }

    /// Keys that live in this process only, for a TLS listener without storage; tickets
    /// from them open only in this process.
    pub fn in_process() -> Arc<TicketKeys> {
        Arc::new(TicketKeys::generated_at(unix_now()))
    }

    /// Fresh random keys for the epoch of `now` and the next one.
    fn generated_at(now: u64) -> TicketKeys {
        let keys = TicketKeys::default();
        let current = epoch_of(now);
        keys.install((current..=current + 1).filter_map(|epoch| Some((epoch, random_key()?))).collect());
        keys
    }

    /// Re-reads the keys every few minutes for as long as the keys are in use; a failed
    /// read keeps the keys held so far and is retried at the next turn.
    pub async fn keep_fresh(keys: Weak<TicketKeys>, storage: Storage) {
        let store = key_store(&storage);
        loop {
            tokio::time::sleep(REFRESH_EVERY).await;
            let Some(keys) = keys.upgrade() else { return };
            if let Err(error) = keys.refresh(&store, unix_now()).await {
                tracing::warn!(%error, "cannot refresh the TLS ticket keys; keeping the current ones");
            }
        }
    }

    /// Makes sure the current and the next epoch have keys, deletes keys that no longer
    /// open tickets, and holds the rest.
    async fn refresh(&self, store: &Map, now: u64) -> Result<(), StorageError> {
        let current = epoch_of(now);
        for epoch in [current, current + 1] {
            // Without randomness this node makes no key; it still reads those of the others.
            if let Some(key) = random_key() {
                store.insert_new("", &key_name(epoch), &Value::bytes(key.to_vec())).await?;
            }
        }
        let mut held = Vec::new();
        for (name, value) in store.get_all("").await? {
            let Some(epoch) = name.strip_prefix(KEY_PREFIX).and_then(|e| e.parse::<u32>().ok()) else {
                continue;
            };
            match <[u8; KEY_LEN]>::try_from(value.data.as_slice()) {
                Ok(key) if opens_at(epoch, current) => held.push((epoch, key)),
                // Made by a node whose clock runs ahead of ours: not expired, not ours to erase.
                Ok(_) if epoch > current => {}
                // Expired (or unusable): erasing the key is what ends its tickets' lives.
                _ => store.set("", &name, None).await?,
            }
        }
        self.install(held);
        Ok(())
    }

    /// Replaces the held keys.
    fn install(&self, keys: Vec<(u32, [u8; KEY_LEN])>) {
        let mut keys: Vec<EpochKey> = keys
            .into_iter()
            .filter_map(|(epoch, bytes)| {
                let key = UnboundKey::new(&AES_256_GCM, &bytes).ok()?;
                Some(EpochKey { epoch, key: LessSafeKey::new(key) })
            })
            .collect();
        keys.sort_unstable_by_key(|k| k.epoch);
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<EpochKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Seals `session` with the newest key that is not from the future at `now`.
    fn seal_at(&self, session: &[u8], now: u64) -> Option<Vec<u8>> {
        let current = epoch_of(now);
        let keys = self.read();
        let sealer = keys.iter().rev().find(|k| k.epoch <= current && opens_at(k.epoch, current))?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(EPOCH_LEN + NONCE_LEN + session.len() + TAG_LEN);
        ticket.extend_from_slice(&sealer.epoch.to_be_bytes());
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(session);
        let (header, body) = ticket.split_at_mut(EPOCH_LEN + NONCE_LEN);
        let tag = sealer
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&header[..EPOCH_LEN]), body)
            .ok()?;
        ticket.extend_from_slice(tag.as_ref());
        Some(ticket)
    }

    /// The session inside `ticket`, if a held key that still opens tickets at `now` sealed it.
    fn open_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() < EPOCH_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (epoch_bytes, rest) = ticket.split_at(EPOCH_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let epoch = u32::from_be_bytes(epoch_bytes.try_into().ok()?);
        if !opens_at(epoch, epoch_of(now)) {
            return None;
        }
        let keys = self.read();
        let opener = keys.iter().find(|k| k.epoch == epoch)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain = opener.key.open_in_place(nonce, Aad::from(epoch_bytes), &mut body).ok()?;
        let len = plain.len();
        body.truncate(len);
        Some(body)
    }
}

impl ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal_at(plain, unix_now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open_at(cipher, unix_now())
    }
}

/// Whether a key of `epoch` still opens tickets during epoch `current`; keys of the next
/// epoch do too, for nodes whose clocks run slightly ahead.
fn opens_at(epoch: u32, current: u32) -> bool {
    u64::from(epoch) + OPEN_EPOCHS > u64::from(current) && epoch <= current.saturating_add(1)
}

fn epoch_of(unix_secs: u64) -> u32 {
    u32::try_from(unix_secs / EPOCH_SECS).unwrap_or(u32::MAX)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn key_name(epoch: u32) -> String {
    format!("{KEY_PREFIX}{epoch}")
}

fn key_store(storage: &Storage) -> Map {
    storage.map("", STORE)
}

/// A fresh key, or `None` if the system's random number generator fails.
fn random_key() -> Option<[u8; KEY_LEN]> {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).ok()?;
    Some(key)
}

#[cfg(test)]
mod tests;
