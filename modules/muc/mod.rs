//! Multi-user chat (XEP-0045) as a component on its own domain, `conference.<domain>` by
//! default, with WhatsApp-style groups: in a members-only room, a member who is not in the
//! room still gets every message, through the inbox (live to available clients, stored for
//! the next login).
//!
//! Flow: the router hands every stanza addressed to the service domain to [`Muc`] (a
//! [`Component`]). Stanzas to the service itself are disco and ping; stanzas to a room are
//! handled under that room's lock, one at a time, so that every occupant sees the same order:
//! - presence to `room/nick` enters, updates, changes nick or leaves ([`presence`]);
//!   presence from a client that disconnects arrives as unavailable (the presence module
//!   sends it to every target of directed presence, RFC 6121 §4.6.3);
//! - messages to the room are broadcast, archived and kept for history and absent members;
//!   messages to `room/nick` are private messages; invitations are mediated ([`message`]);
//! - IQs to the room are disco, the admin and owner protocols and archive queries ([`admin`],
//!   [`owner`], [`archive`]) and moderation ([`moderate`], XEP-0425); IQs to `room/nick` are
//!   self-pings (XEP-0410).
//!
//! Stanzas for local sessions are written while the room's lock is held; anything that
//! must be routed (other servers, the service itself) goes after the lock is released, so a
//! room never waits on itself. A broadcast is built once: one body with its wire bytes,
//! copied per recipient with only `to` changed. Each occupant's presence is built when it changes and kept, so an entering
//! occupant gets the others' presence without rebuilding it: a join costs O(occupants).
//!
//! Persistent rooms (configuration, affiliations, subject) are kept in the `muc_rooms` store
//! and loaded when first addressed; their history is reloaded from the room archive.

mod admin;
mod archive;
mod form;
mod message;
mod moderate;
mod occupant;
mod owner;
mod presence;
mod room;
mod room_iq;
#[cfg(test)]
mod tests;

use crate::module_api::{
    Archive, BareJid, BoxFuture, Component, ConfigDuration, Element, ErrorType, FullJid, Jid, KeyVal, ModuleDescriptor,
    ModuleError, PeriodicTask, Registrar, ServerHandle, Stanza, StanzaError, StanzaKind, ToBare, Value, check_section,
    expire_archive, iq_reply, now_micros, ns,
};
use room::{Room, Saved};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "muc",
    xeps: &["XEP-0045", "XEP-0249", "XEP-0410", "XEP-0421", "XEP-0425"],
    depends: &["offline", "mam", "presence"],
    default_enabled: true,
    check_config: check_section::<Options>,
    build,
};

/// `[modules.muc]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct Options {
    /// The service's domain; `{domain}` stands for the served domain.
    pub domain: String,
    /// The service's name in disco.
    pub name: String,
    /// The most occupants a room may be configured for (and the default for new rooms).
    pub max_occupants: usize,
    /// Messages of history a new room keeps for people who enter.
    pub history_length: usize,
    /// Whether new members-only rooms keep messages for absent members (rooms can change it).
    pub offline_members: bool,
    /// Room archive messages older than this are deleted.
    pub archive_retention: ConfigDuration,
    /// How often the expiry job runs.
    pub expiry_interval: ConfigDuration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            domain: "conference.{domain}".into(),
            name: "Chatrooms".into(),
            max_occupants: 1024,
            history_length: 20,
            offline_members: true,
            archive_retention: ConfigDuration(Duration::from_secs(365 * 86_400)),
            expiry_interval: ConfigDuration(Duration::from_secs(3600)),
        }
    }
}

/// `http://jabber.org/protocol/muc`
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
/// `http://jabber.org/protocol/muc#user`
pub const NS_USER: &str = "http://jabber.org/protocol/muc#user";
/// `http://jabber.org/protocol/muc#admin`
pub const NS_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
/// `http://jabber.org/protocol/muc#owner`
pub const NS_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// XEP-0421 occupant identifiers.
pub const NS_OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";

type RoomLock = Arc<tokio::sync::Mutex<Room>>;

/// What [`Muc::deliver_local`] could not deliver itself.
#[derive(Default)]
struct Delivered {
    to_route: Vec<Stanza>,
    ghosts: Vec<FullJid>,
}

impl Delivered {
    /// Adds what a later delivery of the same operation left over.
    fn absorb(&mut self, later: Delivered) {
        self.to_route.extend(later.to_route);
        self.ghosts.extend(later.ghosts);
        self.ghosts.dedup();
    }
}

/// A room could not be read from storage: the stanza is answered with this, never treated as
/// if the room did not exist (someone could otherwise create it afresh and overwrite it).
struct StorageFailed;

/// The service: its rooms in memory and its stores.
pub struct Muc {
    server: ServerHandle,
    /// The service domain.
    service: String,
    name: String,
    options: Options,
    rooms: Mutex<HashMap<String, RoomLock>>,
    /// Held while a room is read from storage, so that one room is never loaded twice.
    loading: tokio::sync::Mutex<()>,
    saved: KeyVal,
    archive: Archive,
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let options: Options = r.config()?;
    if options.max_occupants == 0 {
        return Err(ModuleError::Config("modules.muc.max_occupants must be at least 1".into()));
    }
    let service = options.domain.replace("{domain}", r.domain());
    if jid::BareJid::new(&service).map(|j| j.node().is_some()).unwrap_or(true) {
        return Err(ModuleError::Config(format!("modules.muc.domain: '{service}' is not a domain")));
    }
    let muc = Arc::new(Muc {
        server: r.server(),
        service: service.clone(),
        name: options.name.clone(),
        rooms: Mutex::new(HashMap::new()),
        loading: tokio::sync::Mutex::new(()),
        saved: r.keyval("muc_rooms"),
        archive: r.archive("muc_archive"),
        options,
    });
    let name = muc.name.clone();
    r.every(muc.options.expiry_interval.get(), muc.clone());
    r.component(service, &name, muc);
    Ok(())
}

impl Component for Muc {
    fn stanza(&self, stanza: Stanza) -> BoxFuture<'_, ()> {
        Box::pin(self.handle(stanza))
    }
}

impl PeriodicTask for Muc {
    fn run(&self) -> BoxFuture<'_, ()> {
        Box::pin(expire_archive(&self.archive, now_micros(), self.options.archive_retention.get()))
    }
}

impl Muc {
    async fn handle(&self, stanza: Stanza) {
        let (Some(to), Some(from)) = (stanza.to(), stanza.from()) else { return };
        let Some(node) = to.node().map(|n| n.as_str().to_owned()) else {
            return self.to_service(stanza).await;
        };
        let room_jid = to.bare();
        let nick = to.resource().map(|r| r.as_str().to_owned());
        match stanza.kind {
            StanzaKind::Presence => match (nick, from.try_into_full()) {
                (Some(nick), Ok(from)) => self.presence(&node, room_jid, nick, from, stanza).await,
                // §7.2.1: entering needs a nick.
                _ => self.refuse(&stanza, StanzaError::jid_malformed().with_text("a nick is needed")).await,
            },
            StanzaKind::Message => self.message(&node, nick, stanza).await,
            StanzaKind::Iq => self.iq(&node, nick, stanza).await,
        }
    }

    /// Sends an error reply (nothing for an error stanza).
    async fn refuse(&self, stanza: &Stanza, error: StanzaError) {
        if let Some(reply) = error.reply_to(stanza) {
            self.server.route(reply).await;
        }
    }

    /// Sends what a room operation produced, in order, while the room's lock is held: straight
    /// to local sessions (the room already decided; no account policy applies to groupchat
    /// traffic). Returns what must be routed instead (other servers, the service itself),
    /// which the caller sends after releasing the lock, since routing may come back to a
    /// room; and the occupant sessions of this server that no longer exist (ghosts, XEP-0045
    /// §17.3), which the caller removes.
    fn deliver_local(&self, out: Vec<Stanza>) -> Delivered {
        let mut delivered = Delivered::default();
        for stanza in out {
            let Some(Ok(full)) = stanza.to_ref().map(Jid::try_as_full) else {
                delivered.to_route.push(stanza);
                continue;
            };
            match self.server.session(full) {
                Some(session) => {
                    session.send(stanza);
                }
                None if self.server.is_local_domain(full.domain().as_str()) => {
                    if stanza.kind != StanzaKind::Iq && !stanza.is_error() {
                        delivered.ghosts.push(full.clone());
                    }
                }
                None => delivered.to_route.push(stanza),
            }
        }
        delivered.ghosts.dedup();
        delivered
    }

    /// Routes stanzas for elsewhere, after the room's lock is released.
    async fn route_all(&self, stanzas: Vec<Stanza>) {
        for stanza in stanzas {
            self.server.route(stanza).await;
        }
    }

    /// The room with this node name: in memory, or loaded if it is persistent.
    async fn room(&self, node: &str) -> Result<Option<RoomLock>, StorageFailed> {
        if let Some(room) = self.loaded(node) {
            return Ok(Some(room));
        }
        let _loading = self.loading.lock().await;
        if let Some(room) = self.loaded(node) {
            return Ok(Some(room)); // loaded while this task waited
        }
        let Some(saved) = self.load_saved(node).await? else { return Ok(None) };
        let Ok(jid) = BareJid::new(&format!("{node}@{}", self.service)) else { return Ok(None) };
        let mut room = Room::new(jid, saved);
        room.history = self.load_history(node, room.config()).await;
        Ok(Some(self.create(node, room).0))
    }

    fn loaded(&self, node: &str) -> Option<RoomLock> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner()).get(node).cloned()
    }

    /// A persistent room's saved state.
    async fn load_saved(&self, node: &str) -> Result<Option<Saved>, StorageFailed> {
        match self.saved.get(node).await {
            Ok(Some(value)) => match value.to_json::<Saved>() {
                Ok(saved) => Ok(Some(saved)),
                Err(e) => {
                    tracing::error!(room = node, error = %e, "muc: unreadable saved room");
                    Err(StorageFailed)
                }
            },
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::error!(room = node, error = %e, "muc: loading a room failed");
                Err(StorageFailed)
            }
        }
    }

    /// Puts a room in memory, or gives the one another stanza put there meanwhile; true when
    /// this one was put there.
    fn create(&self, node: &str, room: Room) -> (RoomLock, bool) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let mut inserted = false;
        let lock = rooms
            .entry(node.to_owned())
            .or_insert_with(|| {
                inserted = true;
                Arc::new(tokio::sync::Mutex::new(room))
            })
            .clone();
        (lock, inserted)
    }

    /// Deletes a room's archive, after the writes still queued for it.
    async fn delete_archive(&self, node: &str) {
        self.archive.commits().flush().await;
        if let Err(e) = self.archive.delete(node, &crate::module_api::ArchiveQuery::default()).await {
            tracing::error!(room = node, error = %e, "muc: deleting a room's archive failed");
        }
    }

    /// Forgets a room in memory (it is empty; a persistent one is loaded again when needed).
    fn unload(&self, node: &str) {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner()).remove(node);
    }

    /// Writes a persistent room's configuration, affiliations and subject; removes a room that
    /// is no longer persistent.
    async fn save(&self, room: &Room) -> Result<(), StanzaError> {
        let node = room.jid.node().map(|n| n.as_str()).unwrap_or_default();
        let value = if room.config().persistent { Some(Value::json(&room.saved).map_err(internal)?) } else { None };
        self.saved.set(node, value.as_ref()).await.map_err(internal)
    }

    /// Whether `account` may create rooms here: accounts of the domains this server serves.
    fn may_create(&self, account: &BareJid) -> bool {
        account.node().is_some() && self.server.is_local_domain(account.domain().as_str())
    }

    async fn to_service(&self, stanza: Stanza) {
        match stanza.kind {
            StanzaKind::Iq => {
                let outcome = self.service_iq(&stanza).await;
                if let Some(reply) = iq_reply(&stanza, outcome) {
                    self.server.route(reply).await;
                }
            }
            StanzaKind::Message if !matches!(stanza.type_attr(), Some("error")) => {
                self.refuse(&stanza, StanzaError::service_unavailable()).await;
            }
            _ => {}
        }
    }

    /// disco#info, disco#items (the public rooms) and ping on the service (XEP-0045 §6.1–6.3).
    async fn service_iq(&self, stanza: &Stanza) -> Result<Option<Element>, StanzaError> {
        let Some(payload) = stanza.el().first_child_element() else { return Err(StanzaError::bad_request()) };
        match (stanza.type_attr(), payload.name.as_str(), payload.ns.as_str()) {
            (Some("get"), "query", ns::DISCO_INFO) if payload.attr("node").is_none() => {
                let mut query = Element::new("query", ns::DISCO_INFO).with_child(
                    Element::new("identity", ns::DISCO_INFO)
                        .with_attr("category", "conference")
                        .with_attr("type", "text")
                        .with_attr("name", self.name.as_str()),
                );
                for feature in [NS_MUC, ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PING, NS_OCCUPANT_ID, ns::SID] {
                    query.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature));
                }
                Ok(Some(query))
            }
            (Some("get"), "query", ns::DISCO_ITEMS) if payload.attr("node").is_none() => {
                Ok(Some(self.public_rooms().await))
            }
            (Some("get"), "ping", ns::PING) => Ok(None),
            (Some("get" | "set"), _, _) => Err(StanzaError::service_unavailable()),
            _ => Ok(None),
        }
    }

    /// The public rooms: those in memory as they are now, the others as saved (read without
    /// loading them).
    async fn public_rooms(&self) -> Element {
        let loaded: Vec<(String, RoomLock)> = {
            let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
            rooms.iter().map(|(node, room)| (node.clone(), room.clone())).collect()
        };
        let mut listed: Vec<(String, String)> = Vec::new();
        for (node, room) in &loaded {
            let room = room.lock().await;
            if room.config().public && !room.locked && !room.gone {
                listed.push((node.clone(), room.config().name.clone()));
            }
        }
        for node in self.saved.users().await.unwrap_or_default() {
            if loaded.iter().any(|(n, _)| *n == node) {
                continue;
            }
            if let Ok(Some(saved)) = self.load_saved(&node).await
                && saved.config.public
            {
                listed.push((node, saved.config.name));
            }
        }
        listed.sort();
        let mut query = Element::new("query", ns::DISCO_ITEMS);
        for (node, name) in listed {
            let name = if name.is_empty() { node.clone() } else { name };
            let jid = format!("{node}@{}", self.service);
            query.push_child(Element::new("item", ns::DISCO_ITEMS).with_attr("jid", jid).with_attr("name", name));
        }
        query
    }
}

fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "muc: storage failed");
    StanzaError::internal_server_error()
}

/// `<error type='auth'><registration-required/></error>` (XEP-0045 §7.2.5).
fn registration_required() -> StanzaError {
    StanzaError::new(ErrorType::Auth, "registration-required")
}
