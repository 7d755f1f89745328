//! The inbox operations; the flow is described in the module documentation.

use super::policy;
use super::restart::{Dedup, RECORD_LOG, RestartCheck, record_entry};
use crate::module_api::{
    Archive, ArchiveQuery, BareJid, Element, Flow, Jid, KeyVal, NewItem, ServerHandle, SessionRef, Stanza, StanzaError,
    StanzaKind, ToBare, Value, add_stanza_id, datetime, now_micros, ns, random_id, stanza_id_by,
};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Messages sent per storage read when catching up.
const CATCH_UP_PAGE: usize = 100;

type AccountLock = tokio::sync::Mutex<()>;

pub(super) struct Inbox {
    /// Messages not yet delivered, per account.
    stored: Archive,
    /// The log of delivered messages that carried an origin id, one item per message under
    /// [`RECORD_LOG`], naming the account and the message's key.
    records: Archive,
    /// Recognises messages sent again from before the start.
    restart: RestartCheck,
    domain: String,
    max: usize,
    server: ServerHandle,
    /// One lock per account with a message or catch-up in progress.
    locks: Mutex<HashMap<String, Weak<AccountLock>>>,
    /// Messages held for accounts with no client online, counted once from storage and then
    /// kept up to date here, so that the quota check is not a count per message. An entry
    /// goes when a client of the account comes or takes messages, and at every expiry run.
    held: Mutex<HashMap<String, usize>>,
    /// Where the domain's key secret is kept, and the keys made from it once it is loaded.
    secrets: KeyVal,
    origin_keys: tokio::sync::OnceCell<OriginKeys>,
}

/// The keyval entry holding the secret (not an account name: it has no `@` and cannot be
/// registered, since account names are nodeprep'd and this one starts with a space).
const SECRET_USER: &str = " inbox-key";

impl Inbox {
    pub(super) fn new(
        stored: Archive,
        records: Archive,
        domain: &str,
        max: usize,
        dedup: Dedup,
        secrets: KeyVal,
        server: ServerHandle,
    ) -> Inbox {
        Inbox {
            stored,
            records,
            restart: RestartCheck::new(dedup),
            domain: domain.to_owned(),
            max,
            server,
            locks: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            secrets,
            origin_keys: tokio::sync::OnceCell::new(),
        }
    }

    /// The keys of messages with an origin id, made with the domain's secret. The secret is
    /// created on first use and kept in storage, so that keys stay the same across restarts.
    async fn origin_keys(&self) -> Result<&OriginKeys, StanzaError> {
        self.origin_keys
            .get_or_try_init(|| async {
                let secret = match self.secrets.get(SECRET_USER).await.map_err(internal)? {
                    Some(value) => value.data,
                    None => {
                        let value = Value::bytes(random_id(32).into_bytes());
                        self.secrets.set(SECRET_USER, Some(&value)).await.map_err(internal)?;
                        value.data
                    }
                };
                OriginKeys::new(&secret)
            })
            .await
    }

    pub(super) fn stored(&self) -> &Archive {
        &self.stored
    }

    pub(super) fn records(&self) -> &Archive {
        &self.records
    }

    /// Step 1a: the message gets its id (before archiving and carbons, which show it). A
    /// retransmission of a message stored before a restart is dropped here.
    pub(super) async fn stamp(&self, stanza: &mut Stanza, to: &Jid, redelivery: bool) -> Flow {
        if redelivery || !kept(stanza) {
            return Flow::Continue;
        }
        let account = to.bare();
        let Some(user) = account.node().map(|n| n.as_str().to_owned()) else { return Flow::Continue };
        let origin_key = match self.origin_key(stanza).await {
            Ok(key) => key,
            Err(error) => return self.refuse(stanza, error).await,
        };
        if let Some(key) = &origin_key
            && self.restart.active(self.server.uptime())
        {
            match self.restart.seen(&self.records, &user, key).await {
                Ok(false) => {}
                Ok(true) => {
                    tracing::debug!(%account, key, "retransmitted message dropped");
                    return Flow::Handled;
                }
                Err(error) => return self.refuse(stanza, error).await,
            }
        }
        let key = origin_key.unwrap_or_else(|| random_id(15));
        add_stanza_id(stanza, account.as_str(), &key);
        Flow::Continue
    }

    /// Steps 1b and 2: store (unless it is a redelivery, already stored), then deliver.
    pub(super) async fn accept(&self, stanza: &Stanza, to: &Jid, redelivery: bool) -> Flow {
        if !kept(stanza) {
            return Flow::Continue;
        }
        let account = to.bare();
        let (Some(user), Some(key)) = (account.node().map(|n| n.as_str().to_owned()), stored_key(stanza, &account))
        else {
            return Flow::Continue;
        };
        let lock = self.lock_for(&user);
        let _guard = lock.lock().await;
        if !redelivery && let Err(error) = self.store(stanza, &user, key, &account, to).await {
            return self.refuse(stanza, error).await;
        }
        self.server.deliver_local(stanza.clone(), to).await;
        Flow::Handled
    }

    async fn refuse(&self, stanza: &Stanza, error: StanzaError) -> Flow {
        if let Some(reply) = error.reply_to(stanza) {
            self.server.route(reply).await;
        }
        Flow::Handled
    }

    /// Queues the stamped message into the inbox, unless the account is offline and full.
    async fn store(
        &self,
        stanza: &Stanza,
        user: &str,
        key: String,
        account: &BareJid,
        to: &Jid,
    ) -> Result<(), StanzaError> {
        let offline = !self.online(account, to);
        if offline && self.held(user).await? >= self.max {
            return Err(StanzaError::service_unavailable().with_text("offline storage is full"));
        }
        let item = inbox_item(key, stanza.to_document());
        self.stored.append_queued(user, item).await;
        if offline && let Some(held) = self.held_counts().get_mut(user) {
            *held += 1;
        }
        Ok(())
    }

    /// How many messages `user`'s inbox holds (called under the account's lock).
    async fn held(&self, user: &str) -> Result<usize, StanzaError> {
        if let Some(held) = self.held_counts().get(user) {
            return Ok(*held);
        }
        // Writes still queued are not counted: the quota may be passed by the few in flight
        // (waiting for them here would hold this sender up while storage is down).
        let held = self.stored.count(user, &ArchiveQuery::default()).await.map_err(internal)?;
        self.held_counts().insert(user.to_owned(), held);
        Ok(held)
    }

    fn held_counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the held count of `user`, or of every account (`None`): counted again when
    /// next needed.
    pub(super) fn recount(&self, user: Option<&str>) {
        match user {
            Some(user) => drop(self.held_counts().remove(user)),
            None => self.held_counts().clear(),
        }
    }

    /// Whether a client of the account takes this message live right now.
    fn online(&self, account: &BareJid, to: &Jid) -> bool {
        if let Ok(full) = to.try_as_full()
            && self.server.session(full).is_some_and(|s| !s.is_catching_up())
        {
            return true;
        }
        self.server.sessions_of(account).iter().any(|s| s.takes_live_messages() && s.priority() >= 0)
    }

    /// A message no resource took: stored already (step 1b), or not worth keeping, or (when a
    /// module delivered it directly) stored now.
    pub(super) async fn undeliverable(&self, stanza: &Stanza, to: &BareJid) -> Flow {
        let Some(user) = to.node().map(|n| n.as_str().to_owned()) else { return Flow::Continue };
        if stored_key(stanza, to).is_some() || !kept(stanza) {
            return Flow::Handled;
        }
        // A message that came around the inbox (delivered directly by a module): kept now.
        let mut stanza = stanza.clone();
        let key = random_id(15);
        add_stanza_id(&mut stanza, to.as_str(), &key);
        if let Err(error) = self.store(&stanza, &user, key, to, &Jid::from(to.clone())).await {
            return self.refuse(&stanza, error).await;
        }
        Flow::Handled
    }

    /// Queues a message another module keeps for the account (see `OfflineStore`) and sends
    /// it to the account's available clients, as for a message to the bare JID. A
    /// `<stanza-id/>` naming the account, with the same key, makes step 3 find it.
    pub(super) async fn keep(&self, account: &BareJid, message: &Stanza, key: &str) {
        let Some(user) = account.node().map(|n| n.as_str()) else { return };
        let mut stanza = message.clone();
        stanza.set_to(Jid::from(account.clone()));
        add_stanza_id(&mut stanza, account.as_str(), key);
        let item = inbox_item(key.to_owned(), stanza.to_document());
        let lock = self.lock_for(user);
        let _guard = lock.lock().await;
        self.stored.append_queued(user, item).await;
        if let Some(held) = self.held_counts().get_mut(user) {
            *held += 1;
        }
        for session in self.server.sessions_of(account) {
            if session.takes_live_messages() && session.priority() >= 0 {
                let mut copy = stanza.clone();
                copy.set_to(Jid::from(session.jid.clone()));
                session.send(copy);
            }
        }
    }

    /// Step 3: messages a client has leave the inbox; a record stays of each with an origin id,
    /// whose key is then the one a retransmission would get. A message with an origin id that
    /// another module stored under a key of its own leaves a record no retransmission matches
    /// (its key is not a keyed hash of the origin id): a line of storage, where telling the two
    /// apart would cost a keyed hash per delivered message.
    pub(super) async fn delivered(&self, session: &SessionRef, messages: &[Stanza]) {
        let account = session.jid.bare();
        let Some(user) = account.node().map(|n| n.as_str()) else { return };
        let mut keys = Vec::new();
        for message in messages {
            let Some(key) = stored_key(message, &account) else { continue };
            if origin_id(message).is_some() {
                self.record_delivery(user, &key).await;
            }
            keys.push(key);
        }
        self.recount(Some(user));
        if !keys.is_empty() {
            self.stored.delete_queued(user, keys).await;
        }
    }

    /// The inbox key of a message with an origin id: the same for every retransmission.
    async fn origin_key(&self, message: &Stanza) -> Result<Option<String>, StanzaError> {
        let Some(id) = origin_id(message) else { return Ok(None) };
        let sender = message.from_ref().map(|f| f.bare().to_string()).unwrap_or_default();
        Ok(Some(self.origin_keys().await?.key(&sender, id)))
    }

    /// Queues the record that `user` has the message with `key`: a line of the record log
    /// (the records of one commit batch share one row).
    async fn record_delivery(&self, user: &str, key: &str) {
        self.records.log_queued(RECORD_LOG, record_entry(user, key)).await;
    }

    /// Step 4: sends the stored messages to a session that just became available.
    pub(super) async fn catch_up(&self, session: &SessionRef) {
        let Some(user) = session.jid.node().map(|n| n.as_str().to_owned()) else { return };
        let lock = self.lock_for(&user);
        let _guard = lock.lock().await;
        self.recount(Some(&user));
        if session.priority() >= 0 {
            // What was queued before the lock was taken must be readable.
            self.stored.commits().flush().await;
            self.send_stored(session, &user).await;
        }
        session.state().catching_up = false;
    }

    async fn send_stored(&self, session: &SessionRef, user: &str) {
        let mut position = None;
        loop {
            let query =
                ArchiveQuery { limit: Some(CATCH_UP_PAGE), after_position: position, ..ArchiveQuery::default() };
            let page = match self.stored.find(user, &query).await {
                Ok(page) => page,
                Err(e) => return tracing::error!(error = %e, "offline: reading stored messages failed"),
            };
            for item in &page.items {
                position = Some(item.sort_id);
                self.restart.note(self.server.uptime(), user, &item.key);
                let Ok(mut el) = Element::parse(&item.value.data) else {
                    tracing::warn!(key = %item.key, "offline: skipping an unreadable stored message");
                    continue;
                };
                el.set_attr("to", session.jid.as_str());
                el.push_child(
                    Element::new("delay", ns::DELAY)
                        .with_attr("from", self.domain.as_str())
                        .with_attr("stamp", datetime(item.when))
                        .with_text("Offline Storage"),
                );
                if !session.send_element(el) {
                    return; // gone; the rest stays stored
                }
            }
            if page.complete || page.items.is_empty() {
                return;
            }
        }
    }

    fn lock_for(&self, user: &str) -> Arc<AccountLock> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = locks.get(user).and_then(Weak::upgrade) {
            return lock;
        }
        if locks.len() >= 1024 && locks.len().is_power_of_two() {
            locks.retain(|_, lock| lock.strong_count() > 0);
        }
        let lock = Arc::new(AccountLock::new(()));
        locks.insert(user.to_owned(), Arc::downgrade(&lock));
        lock
    }
}

/// The inbox key of a message this module stored for `account`: its `<stanza-id/>` by the
/// account. Clients cannot forge one: the origin-id module strips such elements from what
/// they send.
pub(super) fn stored_key(stanza: &Stanza, account: &BareJid) -> Option<String> {
    stanza_id_by(stanza, account.as_str()).map(str::to_owned)
}

/// The inbox item of a message, stamped now. Its `with` stays empty: the inbox is read by
/// key and in order, never by correspondent (the sender is in the stored stanza).
fn inbox_item(key: String, document: Vec<u8>) -> NewItem {
    NewItem { key: Some(key), when: now_micros(), with: String::new(), value: Value::xml(document) }
}

/// Whether the inbox keeps this message (chat and normal messages worth storing).
fn kept(stanza: &Stanza) -> bool {
    stanza.kind == StanzaKind::Message
        && !matches!(stanza.type_attr(), Some("error" | "groupchat" | "headline"))
        && policy::worth_storing(stanza.el())
}

fn origin_id(stanza: &Stanza) -> Option<&str> {
    stanza.el().get_child("origin-id", ns::SID).and_then(|o| o.attr("id")).filter(|id| !id.is_empty())
}

/// Makes the key of a message with an origin id: the same for every retransmission by the same
/// sender, and unpredictable without the domain's secret (XEP-0313 §3.1 wants archive ids
/// nobody can guess; the archive reuses this key).
pub(super) struct OriginKeys {
    /// HMAC-SHA-256 keyed with the secret: cloned per key, so that the two blocks of the keyed
    /// pads are hashed once, not for every message.
    keyed: hmac::Hmac<Sha256>,
}

impl OriginKeys {
    pub(super) fn new(secret: &[u8]) -> Result<OriginKeys, StanzaError> {
        use hmac::KeyInit;
        // HMAC takes keys of any length: this does not fail.
        let keyed = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(internal)?;
        Ok(OriginKeys { keyed })
    }

    /// The key of the message `sender` marked with `origin_id`.
    pub(super) fn key(&self, sender: &str, origin_id: &str) -> String {
        use base64::Engine;
        use hmac::Mac;
        let mut mac = self.keyed.clone();
        mac.update(sender.as_bytes());
        mac.update(&[0]);
        mac.update(origin_id.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..15])
    }
}

fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "offline storage failed");
    StanzaError::internal_server_error()
}
