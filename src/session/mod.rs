//! The local session table: which full JIDs are connected to this node, their presence state
//! and the channel that carries stanzas to each connection's task.
//!
//! RFC 6120 §7 resource binding: a resource is unique per account. Binding a resource that is
//! already in use replaces the older session, which is closed with the `conflict` stream error
//! (§7.7.2.2, the "override" policy most clients expect after a silent reconnect).

pub mod sm;

use crate::router::bare::ToBare;
use crate::router::stanza::{Stanza, StanzaKind};
use crate::xml::Element;
use jid::{BareJid, FullJid};
use sm::StreamManagement;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// What a connection task is asked to do.
#[derive(Debug)]
pub enum Outbound {
    /// Write this stanza (boxed: the queue and the futures that carry an item stay small).
    Stanza(Box<Stanza>),
    /// Close the stream with this stream error condition (e.g. `conflict`).
    Close(&'static str),
}

/// Presence state of one session (RFC 6121 §4).
#[derive(Debug, Default, Clone)]
pub struct PresenceState {
    /// The last available presence broadcast, `None` while not available.
    pub available: Option<Element>,
    /// The priority from that presence (RFC 6121 §4.7.2.3), -128..=127.
    pub priority: i8,
    /// Whether the client asked for the roster (it then gets roster pushes, §2.1.6).
    pub roster_requested: bool,
    /// Targets of directed presence, who get unavailable presence when the session ends.
    pub directed_to: Vec<jid::Jid>,
    /// Set with initial presence until stored messages have been sent (XEP-0160): meanwhile
    /// live messages to the account stay in the store and come with the rest, in order, once.
    pub catching_up: bool,
}

/// One connected, bound session.
///
/// Its outbound queue is a plain deque plus a wake-up, not a channel: a queue that is empty
/// holds no allocation, which matters for the many sessions that sit idle.
#[derive(Debug)]
pub struct Session {
    /// Unique number of this session on this node.
    pub id: u64,
    /// The bound full JID.
    pub jid: FullJid,
    outbox: Mutex<Outbox>,
    wake: Notify,
    closed: AtomicBool,
    state: Mutex<PresenceState>,
    sm: Mutex<StreamManagement>,
    /// Held by the connection task serving the session; a resuming connection waits for it.
    pub attached: tokio::sync::Mutex<()>,
    /// Bumped by every resumption, so that the serving task (woken through the outbound
    /// queue's wake-up) and a detached one know the session moved on.
    pub generation: AtomicU64,
}

/// Shared handle to a session.
pub type SessionRef = Arc<Session>;

/// What waits to be written, and what client state indication holds back.
#[derive(Debug, Default)]
struct Outbox {
    queue: VecDeque<Outbound>,
    /// Held while the client is inactive (XEP-0352): presence (the latest per sender) and
    /// messages carrying only chat states.
    held: VecDeque<Box<Stanza>>,
    inactive: bool,
}

/// XEP-0085 chat states.
const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";

/// Whether an inactive client can do without this stanza until it is active or something
/// important arrives (XEP-0352 §5: presence updates and chat states are the usual noise).
fn holdable(stanza: &Stanza) -> bool {
    let el = stanza.el();
    match stanza.kind {
        StanzaKind::Presence => matches!(stanza.type_attr(), None | Some("unavailable")),
        StanzaKind::Message => {
            el.child_elements().next().is_some()
                && el.child_elements().all(|c| c.ns == NS_CHATSTATES || c.name == "thread")
        }
        StanzaKind::Iq => false,
    }
}

impl Outbox {
    /// Queues or holds an item; returns whether the writer must be woken.
    fn enqueue(&mut self, item: Outbound) -> bool {
        let item = match item {
            Outbound::Stanza(stanza) if self.inactive && holdable(&stanza) => {
                // Only the latest presence, and the latest chat state, of each sender matters once
                // the client looks again (a held chat-state message is holdable, a presence too).
                let from = stanza.from_ref();
                self.held.retain(|h| h.kind != stanza.kind || h.from_ref() != from);
                self.held.push_back(stanza);
                return false;
            }
            item => item,
        };
        self.flush_held();
        self.queue.push_back(item);
        true
    }

    fn flush_held(&mut self) {
        while let Some(stanza) = self.held.pop_front() {
            self.queue.push_back(Outbound::Stanza(stanza));
        }
    }
}

impl Session {
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues (or, while inactive, holds) an item; gives it back when the connection is gone.
    /// The closed flag is read under the lock that `mark_closed` also takes, so nothing slips
    /// in after the queue was drained.
    fn offer(&self, item: Outbound) -> Result<(), Outbound> {
        let mut outbox = self.outbox();
        if self.closed.load(Ordering::Acquire) {
            return Err(item);
        }
        let wake = outbox.enqueue(item);
        drop(outbox);
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    fn push(&self, item: Outbound) -> bool {
        self.offer(item).is_ok()
    }

    /// Queues a stanza for this session. Returns false when the connection is gone.
    pub fn send(&self, stanza: Stanza) -> bool {
        self.push(Outbound::Stanza(Box::new(stanza)))
    }

    /// Queues a stanza the server built as an element (roster pushes, presence, replies).
    /// Returns false when the connection is gone or the element is not a stanza.
    pub fn send_element(&self, el: Element) -> bool {
        Stanza::built(el).is_some_and(|stanza| self.send(stanza))
    }

    /// Queues a stanza, or gives it back when the connection is gone (so that the router can
    /// deliver it elsewhere).
    pub fn try_send(&self, stanza: Stanza) -> Result<(), Stanza> {
        self.offer(Outbound::Stanza(Box::new(stanza))).map_err(|refused| match refused {
            Outbound::Stanza(stanza) => *stanza,
            Outbound::Close(_) => unreachable!("only a stanza was offered"),
        })
    }

    /// Client state indication (XEP-0352): while inactive, noise is held back; becoming
    /// active releases it, in order.
    pub fn set_inactive(&self, inactive: bool) {
        let mut outbox = self.outbox();
        outbox.inactive = inactive;
        if !inactive && !outbox.held.is_empty() {
            outbox.flush_held();
            drop(outbox);
            self.wake.notify_one();
        }
    }

    /// Asks the connection to close with a stream error.
    pub fn close(&self, condition: &'static str) {
        self.push(Outbound::Close(condition));
    }

    /// The next queued item, without waiting.
    pub fn try_next_outbound(&self) -> Option<Outbound> {
        self.outbox().queue.pop_front()
    }

    /// Waits for the next queued item; `None` once a resumption has taken the session over
    /// from the connection that serves `generation`. Cancel-safe: nothing is taken from the
    /// queue unless the future completes.
    pub async fn next_outbound(&self, generation: u64) -> Option<Outbound> {
        loop {
            if self.generation.load(Ordering::Acquire) != generation {
                return None;
            }
            if let Some(item) = self.try_next_outbound() {
                return Some(item);
            }
            self.wake.notified().await;
        }
    }

    /// A resuming connection takes the session over (XEP-0198 §5): the connection serving it,
    /// if it still runs, learns it from its next wait for outbound items and lets go. The
    /// wake-up is stored if that task is busy, so it is not missed. One wake-up serves both,
    /// which keeps every session (and its task) smaller by a second one.
    pub fn take_over(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// Marks the connection gone: later sends fail. Returns what was queued and never written,
    /// so that the caller can route it elsewhere.
    pub fn mark_closed(&self) -> Vec<Outbound> {
        let mut outbox = self.outbox();
        self.closed.store(true, Ordering::Release);
        outbox.flush_held();
        outbox.queue.drain(..).collect()
    }

    /// Locks the presence state. Poisoning is ignored: the state is plain data.
    pub fn state(&self) -> MutexGuard<'_, PresenceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the stream-management state.
    pub fn sm(&self) -> MutexGuard<'_, StreamManagement> {
        self.sm.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the session was unbound.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether the session has sent available presence.
    pub fn is_available(&self) -> bool {
        self.state().available.is_some()
    }

    /// Whether the session is available and done catching up with stored messages: the
    /// sessions that take live messages to the bare JID.
    pub fn takes_live_messages(&self) -> bool {
        let state = self.state();
        state.available.is_some() && !state.catching_up
    }

    /// Whether stored messages are still being sent to this session.
    pub fn is_catching_up(&self) -> bool {
        self.state().catching_up
    }

    /// The current priority (0 when unavailable).
    pub fn priority(&self) -> i8 {
        self.state().priority
    }
}

/// All sessions on this node, by bare JID.
#[derive(Default)]
pub struct SessionTable {
    by_account: Mutex<HashMap<AccountKey, Vec<SessionRef>>>,
    resumable: Mutex<HashMap<String, SessionRef>>,
    next_id: AtomicU64,
}

/// The table's key: an account's bare JID, found by its text, so that looking up the sessions
/// of a full JID needs no copy of the bare part (it is done for every stanza delivered).
#[derive(Clone, PartialEq, Eq, Hash)]
struct AccountKey(BareJid);

// The derived `Hash` and `Eq` are those of the JID's text (the jid crate hashes and compares
// the normalised string), as `Borrow` requires.
impl std::borrow::Borrow<str> for AccountKey {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

/// The bare part of a full JID's text: everything before the first `/` (RFC 7622 §3.1; a
/// domain or local part holds no `/`).
fn bare_text(full: &FullJid) -> &str {
    let text = full.as_str();
    text.split_once('/').map_or(text, |(bare, _)| bare)
}

impl SessionTable {
    fn table(&self) -> MutexGuard<'_, HashMap<AccountKey, Vec<SessionRef>>> {
        self.by_account.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Binds `jid` to a new session. A session already holding the same full JID is removed
    /// from the table and returned, so that the caller closes it with `conflict`.
    pub fn bind(&self, jid: FullJid) -> (SessionRef, Option<SessionRef>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let session = Arc::new(Session {
            id,
            jid: jid.clone(),
            outbox: Mutex::default(),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            state: Mutex::default(),
            sm: Mutex::default(),
            attached: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        });
        let mut table = self.table();
        let list = table.entry(AccountKey(jid.bare())).or_default();
        let replaced = list.iter().position(|s| s.jid == jid).map(|i| list.swap_remove(i));
        list.push(session.clone());
        (session, replaced)
    }

    /// Removes a session (only if it is still the one bound to its JID) and marks it closed;
    /// returns what was queued for it and never written.
    pub fn unbind(&self, session: &Session) -> Vec<Outbound> {
        let unwritten = session.mark_closed();
        if let Some(id) = session.sm().resume_id() {
            self.resumable.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        }
        let mut table = self.table();
        let bare = bare_text(&session.jid);
        if let Some(list) = table.get_mut(bare) {
            list.retain(|s| s.id != session.id);
            if list.is_empty() {
                table.remove(bare);
            }
        }
        unwritten
    }

    /// Registers a session for resumption under `id` (XEP-0198 §5).
    pub fn register_resumable(&self, id: &str, session: &SessionRef) {
        self.resumable.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), session.clone());
    }

    /// The session resumable under `id`, if it is still bound.
    pub fn resumable(&self, id: &str) -> Option<SessionRef> {
        let found = self.resumable.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        found.filter(|s| !s.is_closed())
    }

    /// The sessions of an account.
    pub fn of_account(&self, account: &BareJid) -> Vec<SessionRef> {
        self.table().get(account.as_str()).cloned().unwrap_or_default()
    }

    /// The session bound to a full JID.
    pub fn get(&self, jid: &FullJid) -> Option<SessionRef> {
        self.table().get(bare_text(jid))?.iter().find(|s| &s.jid == jid).cloned()
    }

    /// Whether a resource is in use.
    pub fn resource_in_use(&self, jid: &FullJid) -> bool {
        self.get(jid).is_some()
    }

    /// Number of bound sessions.
    pub fn count(&self) -> usize {
        self.table().values().map(Vec::len).sum()
    }

    /// Every session (shutdown, diagnostics).
    pub fn all(&self) -> Vec<SessionRef> {
        self.table().values().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_the_same_resource_replaces_the_older_session() {
        let table = SessionTable::default();
        let jid = FullJid::new("juliet@example.com/balcony").unwrap();
        let (first, replaced) = table.bind(jid.clone());
        assert!(replaced.is_none());
        let (second, replaced) = table.bind(jid.clone());
        assert_eq!(replaced.map(|s| s.id), Some(first.id));
        assert_eq!(table.count(), 1);
        table.unbind(&first);
        assert_eq!(table.get(&jid).map(|s| s.id), Some(second.id));
        table.unbind(&second);
        assert_eq!(table.count(), 0);
        assert!(!second.send_element(Element::new("message", "jabber:client")), "a closed session takes nothing");
    }

    #[test]
    fn sessions_are_found_by_the_bare_part_of_their_address() {
        let table = SessionTable::default();
        let slashed = FullJid::new("juliet@example.com/phone/2").unwrap();
        let (phone, _) = table.bind(slashed.clone());
        let (desk, _) = table.bind(FullJid::new("juliet@example.com/desk").unwrap());
        table.bind(FullJid::new("romeo@example.com/phone").unwrap());
        assert_eq!(table.get(&slashed).map(|s| s.id), Some(phone.id));
        assert!(table.get(&FullJid::new("juliet@example.com/phone").unwrap()).is_none());
        let juliet = BareJid::new("juliet@example.com").unwrap();
        assert_eq!(table.of_account(&juliet).len(), 2);
        table.unbind(&phone);
        table.unbind(&desk);
        assert!(table.of_account(&juliet).is_empty());
        assert_eq!(table.count(), 1);
    }

    /// A session bound in a table of its own.
    fn balcony() -> SessionRef {
        SessionTable::default().bind(FullJid::new("juliet@example.com/balcony").unwrap()).0
    }

    fn stanza(xml: &str) -> Stanza {
        Stanza::from_element(Element::parse(xml.as_bytes()).unwrap()).unwrap()
    }

    fn drain(session: &Session) -> Vec<String> {
        std::iter::from_fn(|| session.try_next_outbound())
            .filter_map(|o| match o {
                Outbound::Stanza(el) => Some(el.to_string()),
                Outbound::Close(_) => None,
            })
            .collect()
    }

    #[test]
    fn an_inactive_client_gets_only_the_latest_presence_and_chat_state_and_only_when_it_matters() {
        let session = balcony();
        session.set_inactive(true);
        for show in ["away", "xa", "dnd"] {
            session.send(stanza(&format!(
                "<presence xmlns='jabber:client' from='romeo@example.net/a'><show>{show}</show></presence>"
            )));
        }
        session.send(stanza("<message xmlns='jabber:client' from='romeo@example.net/a'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>"));
        session.send(stanza("<message xmlns='jabber:client' from='romeo@example.net/a'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"));
        assert!(drain(&session).is_empty(), "noise is held");
        session.send(stanza("<message xmlns='jabber:client' from='romeo@example.net/a'><body>hi</body></message>"));
        let out = drain(&session);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[0].contains("dnd") && out[1].contains("composing") && out[2].contains("hi"), "{out:?}");
        session.send(stanza("<presence xmlns='jabber:client' from='romeo@example.net/a'/>"));
        assert!(drain(&session).is_empty());
        session.set_inactive(false);
        assert_eq!(drain(&session).len(), 1);
    }

    #[tokio::test]
    async fn a_takeover_wakes_the_serving_connection_and_leaves_the_queue_to_the_next() {
        let session = balcony();
        let serving = tokio::spawn({
            let session = session.clone();
            async move { session.next_outbound(0).await.is_none() }
        });
        tokio::task::yield_now().await;
        session.take_over();
        let woken = tokio::time::timeout(std::time::Duration::from_secs(5), serving).await;
        assert!(woken.expect("woken").unwrap(), "the old connection learns that it was taken over");
        // Taken over while busy: the stored wake-up and the generation still tell it.
        session.take_over();
        assert!(session.next_outbound(1).await.is_none());
        assert!(session.send_element(Element::new("message", "jabber:client").with_attr("id", "1")));
        let next = session.next_outbound(2).await;
        assert!(matches!(next, Some(Outbound::Stanza(s)) if s.id() == Some("1")), "the resuming connection writes it");
    }

    #[tokio::test]
    async fn queued_items_come_out_in_order_and_waiting_wakes_on_send() {
        let session = balcony();
        let waiter = tokio::spawn({
            let session = session.clone();
            async move {
                let mut names = Vec::new();
                for _ in 0..3 {
                    if let Some(Outbound::Stanza(el)) = session.next_outbound(0).await {
                        names.push(el.id().unwrap_or_default().to_owned());
                    }
                }
                names
            }
        });
        for id in ["1", "2", "3"] {
            tokio::task::yield_now().await;
            assert!(session.send_element(Element::new("message", "jabber:client").with_attr("id", id)));
        }
        assert_eq!(waiter.await.unwrap(), vec!["1", "2", "3"]);
    }
}
