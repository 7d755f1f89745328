//! Presence to `room/nick`: entering (XEP-0045 §7.2), presence changes (§7.7), nick changes
//! (§7.6) and leaving (§7.14), and room creation on first entry (§10.1).
//!
//! Entering, in the order the XEP requires: the presence of each occupant already there, the
//! newcomer's presence to the others, the newcomer's own presence (status 110 and the codes
//! that describe the room), the discussion history with `<delay/>`, and last the subject,
//! which tells the client that the history is over. A client that enters without the MUC
//! element (groupchat 1.0, still used by simple bots) is let in the same way; if it creates
//! the room, the room is instant (unlocked), as §10.1.3 suggests.

use super::occupant::{ItemInfo, occupant_id, presence_of, user_x};
use super::room::{Affiliation, HistoryItem, Occupant, Role, Room, RoomConfig, Saved, Visit, Whois};
use super::{Muc, NS_MUC, NS_USER, StorageFailed, registration_required};
use crate::module_api::{
    BareJid, Element, ErrorType, FullJid, Jid, NS_CLIENT, Stanza, StanzaError, StanzaKind, ToBare, now_micros,
    parse_datetime, random_id,
};

/// The codes of an occupant's own presence on entering (§7.2.3, §7.2.12, §10.1.1).
fn entry_codes(room: &Room, created: bool) -> Vec<u16> {
    let mut codes = vec![110];
    if room.config().whois == Whois::Anyone {
        codes.push(100);
    }
    if room.config().archive {
        codes.push(170);
    }
    if created {
        codes.push(201);
    }
    codes
}

impl Muc {
    pub(super) async fn presence(&self, node: &str, room_jid: BareJid, nick: String, from: FullJid, stanza: Stanza) {
        let entering = stanza.type_attr().is_none();
        for _ in 0..3 {
            let (lock, created) = match self.room(node).await {
                Err(StorageFailed) => return self.refuse(&stanza, StanzaError::internal_server_error()).await,
                Ok(Some(lock)) => (lock, false),
                Ok(None) if !entering => return,
                Ok(None) if !self.may_create(&from.bare()) => {
                    let error = StanzaError::not_allowed().with_text("rooms are created by local users only");
                    return self.refuse(&stanza, error).await;
                }
                Ok(None) => {
                    let instant = !stanza.el().has_child("x", NS_MUC);
                    let fresh = self.new_room(room_jid.clone(), &from.bare(), instant);
                    self.create(node, fresh)
                }
            };
            let mut room = lock.lock().await;
            if room.gone {
                continue; // destroyed or unloaded meanwhile: look again
            }
            let out = self.presence_in(&mut room, nick, from.clone(), &stanza, created).await;
            return self.finish(room, Some(&from), out).await;
        }
    }

    fn new_room(&self, jid: BareJid, creator: &BareJid, instant: bool) -> Room {
        let config = RoomConfig {
            max_occupants: self.options.max_occupants,
            history_length: self.options.history_length,
            offline_members: self.options.offline_members,
            ..RoomConfig::default()
        };
        let saved = Saved { config, occupant_id_secret: random_id(24), ..Saved::default() };
        let mut room = Room::new(jid, saved);
        room.set_affiliation(creator, Affiliation::Owner);
        room.locked = !instant;
        room
    }

    /// An empty room leaves memory: a temporary one is gone for good, with its archive (a
    /// room created later under the same name must not see it); a persistent one is loaded
    /// again when next addressed.
    async fn release_if_empty(&self, room: &mut Room) {
        if !room.occupants.is_empty() || room.gone {
            return;
        }
        room.gone = true;
        let node = room.jid.node().map(|n| n.as_str().to_owned()).unwrap_or_default();
        self.unload(&node);
        if !room.config().persistent {
            self.delete_archive(&node).await;
        }
    }

    /// Ends a room operation: `out` goes to local sessions in order while the lock is held
    /// (every occupant sees the room's order), sessions found gone leave the room, an empty
    /// room is released; then the lock is dropped and the rest is routed.
    ///
    /// When the operation made the `actor` session's occupant leave (an exit, §7.14, or the
    /// unavailable half of a nick change, §7.6), the stanzas for that session go out after
    /// everyone else's have had their turn to be written. The operation runs on the actor's
    /// own connection task, which writes what it queued for itself as soon as this returns,
    /// ahead of the other sessions' tasks that the delivery merely woke. Clients take their
    /// own presence (status 110) as the sign that the room has told everyone: one that leaves
    /// right after its nick change must not have its exit reach another client before the
    /// nick change did. Entries are left as they are: waking every occupant's task to write
    /// the newcomer's presence before the entering session goes on cost a fifth more server
    /// CPU for 1024 entries (BENCHMARKS.md, "Room departures in order").
    pub(super) async fn finish(
        &self,
        mut room: tokio::sync::MutexGuard<'_, Room>,
        actor: Option<&FullJid>,
        out: Vec<Stanza>,
    ) {
        let addressed_to =
            |stanza: &Stanza, jid: &FullJid| stanza.to_ref().and_then(|to| to.try_as_full().ok()) == Some(jid);
        let leaving = actor.filter(|actor| out.iter().any(|s| is_own_departure(s) && addressed_to(s, actor)));
        let (own, others): (Vec<Stanza>, Vec<Stanza>) = match leaving {
            Some(actor) => out.into_iter().partition(|s| addressed_to(s, actor)),
            None => (Vec::new(), out),
        };
        let others_sent = !others.is_empty();
        let mut delivered = self.deliver_local(others);
        if !own.is_empty() {
            if others_sent {
                // Runs the connection tasks just woken before this one goes on to write.
                tokio::task::yield_now().await;
            }
            delivered.absorb(self.deliver_local(own));
        }
        let mut more = Vec::new();
        for ghost in std::mem::take(&mut delivered.ghosts) {
            self.leave(&mut room, &ghost, &Element::new("presence", NS_CLIENT), &mut more);
        }
        if !more.is_empty() {
            // One round: sessions found gone while announcing these are left for the next.
            delivered.to_route.extend(self.deliver_local(more).to_route);
        }
        self.release_if_empty(&mut room).await;
        drop(room);
        self.route_all(delivered.to_route).await;
    }

    async fn presence_in(
        &self,
        room: &mut Room,
        nick: String,
        from: FullJid,
        stanza: &Stanza,
        created: bool,
    ) -> Vec<Stanza> {
        let kind = stanza.type_attr().map(str::to_owned);
        let mut out = Vec::new();
        if let Some(current) = room.by_session.get(&from).cloned() {
            match kind.as_deref() {
                Some("unavailable" | "error") => self.leave(room, &from, stanza.el(), &mut out),
                // §7.2 (business rules): entering again is a request for the whole state.
                None if current == nick && stanza.el().has_child("x", NS_MUC) => {
                    update(room, &from, stanza.el(), &mut out);
                    out.retain(|s| s.to_ref().is_none_or(|to| to.try_as_full() != Ok(&from)));
                    send_state(room, &nick, &from, stanza, false, &mut out);
                }
                None if current == nick => update(room, &from, stanza.el(), &mut out),
                None => change_nick(room, &from, &current, nick, stanza, &mut out),
                _ => {}
            }
            return out;
        }
        if kind.is_some() {
            return out;
        }
        match self.admit(room, &nick, &from, stanza) {
            Ok(()) => enter(room, nick, from, stanza, created, &mut out),
            Err(error) => out.extend(error.reply_to(stanza)),
        }
        out
    }

    /// The entry checks of §7.2.
    fn admit(&self, room: &Room, nick: &str, from: &FullJid, stanza: &Stanza) -> Result<(), StanzaError> {
        let account = from.bare();
        if self.server.is_local_domain(account.domain().as_str()) && self.server.session(from).is_none() {
            // A session that ended while its presence was on the way: nobody to let in.
            return Err(StanzaError::not_acceptable().with_text("this session is gone"));
        }
        let affiliation = room.affiliation(&account);
        if room.locked && affiliation != Affiliation::Owner {
            // §10.1.2: a room waiting for its configuration does not exist for others.
            return Err(StanzaError::item_not_found().with_text("this room is not configured yet"));
        }
        if affiliation == Affiliation::Outcast {
            return Err(StanzaError::forbidden().with_text("you are banned from this room"));
        }
        if !room.may_enter(affiliation) {
            return Err(registration_required().with_text("this room is for members only"));
        }
        if let Some(password) = &room.config().password
            && affiliation != Affiliation::Owner
        {
            let given = stanza.el().get_child("x", NS_MUC).and_then(|x| x.get_child("password", NS_MUC));
            if given.map(|p| p.text()).as_deref() != Some(password.as_str()) {
                return Err(StanzaError::not_authorized().with_text("a password is needed for this room"));
            }
        }
        match room.occupants.get(nick) {
            Some(other) if other.account != account => {
                return Err(StanzaError::conflict().with_text("that nickname is in use"));
            }
            Some(_) => return Ok(()), // another session of the same occupant
            None => {}
        }
        if room.occupants.len() >= room.config().max_occupants && affiliation < Affiliation::Admin {
            return Err(StanzaError::new(ErrorType::Wait, "service-unavailable").with_text("the room is full"));
        }
        Ok(())
    }

    /// Removes one session from the room (§7.14).
    pub(super) fn leave(&self, room: &mut Room, from: &FullJid, presence: &Element, out: &mut Vec<Stanza>) {
        let Some(nick) = room.by_session.remove(from) else { return };
        let Some(occupant) = room.occupants.get_mut(&nick) else { return };
        occupant.visits.retain(|v| &v.jid != from);
        let status: Vec<Element> = presence.child_elements().filter(|c| c.is("status", NS_CLIENT)).cloned().collect();
        if !room.occupants.get(&nick).is_some_and(|o| o.visits.is_empty()) {
            // Another session stays under this nick: this one is told it left, and everyone
            // sees the presence of the session that stays.
            if let Some(occupant) = room.occupants.get(&nick) {
                out.push(gone_presence(room, occupant, from, from, &[110], None, &status));
            }
            room.refresh(&nick);
            broadcast_presence(room, &nick, Some(from), out);
            return;
        }
        if let Some(occupant) = room.occupants.remove(&nick) {
            announce_departure(room, &occupant, from, &[], None, &status, out);
        }
    }
}

/// Tells everyone that an occupant left (with `codes` for a kick, ban or nick change, and
/// `extra` children of the `<x/>` such as `<actor/>` and `<reason/>`); the occupant's own
/// sessions (`own` among them) get 110 as well.
pub(super) fn announce_departure(
    room: &Room,
    occupant: &Occupant,
    own: &FullJid,
    codes: &[u16],
    extra: Option<&Element>,
    status: &[Element],
    out: &mut Vec<Stanza>,
) {
    let mut with_110 = vec![110];
    with_110.extend_from_slice(codes);
    for (jid, role) in room.sessions() {
        if jid == own || occupant.visits.iter().any(|v| &v.jid == jid) {
            continue;
        }
        let mut copy = gone_presence(room, occupant, own, jid, codes, extra, status);
        if !room.shows_real_jids_to(role) {
            strip_item_jid(&mut copy);
        }
        out.push(copy);
    }
    let mut own_sessions: Vec<&FullJid> = occupant.visits.iter().map(|v| &v.jid).collect();
    if !own_sessions.contains(&own) {
        own_sessions.push(own);
    }
    for jid in own_sessions {
        out.push(gone_presence(room, occupant, own, jid, &with_110, extra, status));
    }
}

fn strip_item_jid(stanza: &mut Stanza) {
    if let Some(item) = stanza.el_mut().get_child_mut("x", NS_USER).and_then(|x| x.get_child_mut("item", NS_USER)) {
        item.remove_attr("jid");
    }
}

/// Whether this is an occupant's own presence (status 110) saying it left the room.
fn is_own_departure(stanza: &Stanza) -> bool {
    stanza.kind == StanzaKind::Presence
        && stanza.type_attr() == Some("unavailable")
        && stanza
            .el()
            .get_child("x", NS_USER)
            .is_some_and(|x| x.child_elements().any(|c| c.is("status", NS_USER) && c.attr("code") == Some("110")))
}

/// `<presence type='unavailable'/>` from the occupant JID (whose session `real` left) to
/// `to`, role none.
fn gone_presence(
    room: &Room,
    occupant: &Occupant,
    real: &FullJid,
    to: &FullJid,
    codes: &[u16],
    extra: Option<&Element>,
    status: &[Element],
) -> Stanza {
    let mut el = Element::new("presence", NS_CLIENT).with_attr("type", "unavailable");
    for s in status {
        el.push_child(s.clone());
    }
    let affiliation = room.affiliation(&occupant.account);
    let item = ItemInfo { affiliation, role: Role::None, jid: Some(real), nick: None };
    let mut x = user_x(&item, codes);
    if let Some(extra) = extra {
        for child in extra.child_elements() {
            if let Some(item) = x.get_child_mut("item", NS_USER) {
                if child.name == "nick" {
                    item.set_attr("nick", child.text());
                } else {
                    item.push_child(child.clone());
                }
            }
        }
    }
    el.push_child(x);
    el.push_child(Element::new("occupant-id", super::NS_OCCUPANT_ID).with_attr("id", occupant.occupant_id.as_str()));
    let mut stanza = Stanza::new(StanzaKind::Presence, el);
    if let Some(from) = room.occupant_jid(&occupant.nick) {
        stanza.set_from(&Jid::from(from));
    }
    stanza.set_to(Jid::from(to.clone()));
    stanza
}

fn enter(room: &mut Room, nick: String, from: FullJid, stanza: &Stanza, created: bool, out: &mut Vec<Stanza>) {
    let account = from.bare();
    let affiliation = room.affiliation(&account);
    let role = room.default_role(affiliation);
    let visit = Visit { jid: from.clone(), presence: kept_presence(stanza.el()) };
    match room.occupants.get_mut(&nick) {
        Some(occupant) => occupant.visits.push(visit),
        None => {
            let id = occupant_id(&room.saved.occupant_id_secret, &account);
            let occupant =
                Occupant { nick: nick.clone(), account, role, visits: vec![visit], occupant_id: id, views: None };
            room.occupants.insert(nick.clone(), occupant);
        }
    }
    room.by_session.insert(from.clone(), nick.clone());
    room.refresh(&nick);
    broadcast_presence(room, &nick, Some(&from), out);
    send_state(room, &nick, &from, stanza, created, out);
}

/// What an entering session gets (§7.2.3): the others' presence, its own with the codes
/// that describe the room, the history it asked for, and the subject.
fn send_state(room: &Room, nick: &str, to: &FullJid, stanza: &Stanza, created: bool, out: &mut Vec<Stanza>) {
    let Some(occupant) = room.occupants.get(nick) else { return };
    let to_self = Jid::from(to.clone());
    for (other, them) in &room.occupants {
        if other != nick
            && let Some(views) = &them.views
        {
            let mut copy = views.for_viewer(room, occupant.role).clone();
            copy.set_to(to_self.clone());
            out.push(copy);
        }
    }
    // The others' presence comes before one's own, which ends the list (§7.2.3); the
    // broadcast of the newcomer to the others is sent by the caller.
    let mut own = presence_of(room, occupant, true, &entry_codes(room, created));
    own.set_to(to_self);
    out.push(own);
    if !created {
        let history = stanza.el().get_child("x", NS_MUC).and_then(|x| x.get_child("history", NS_MUC));
        out.extend(history_for(room, history, to));
    }
    out.push(subject_message(room, to));
}

/// The part of a client's presence the room keeps and shows: show, status, priority and
/// the small public extensions (caps, avatar hash, nick, idle); no MUC elements, nothing
/// else, so that one occupant cannot make the room hold or repeat large payloads.
fn kept_presence(presence: &Element) -> Element {
    const SHOWN: &[(&str, &str)] = &[
        ("show", NS_CLIENT),
        ("status", NS_CLIENT),
        ("priority", NS_CLIENT),
        ("c", "http://jabber.org/protocol/caps"),
        ("x", "vcard-temp:x:update"),
        ("nick", "http://jabber.org/protocol/nick"),
        ("idle", "urn:xmpp:idle:1"),
    ];
    let mut kept = Element::new("presence", NS_CLIENT);
    for child in presence.child_elements() {
        if SHOWN.iter().any(|(name, ns)| child.is(name, ns)) && child.to_bytes(NS_CLIENT).len() <= 1024 {
            kept.push_child(child.clone());
        }
    }
    kept
}

/// Sends the occupant's current presence to every session in the room except `except`;
/// the occupant's own other sessions get it with 110.
pub(super) fn broadcast_presence(room: &Room, nick: &str, except: Option<&FullJid>, out: &mut Vec<Stanza>) {
    let Some(occupant) = room.occupants.get(nick) else { return };
    let Some(views) = &occupant.views else { return };
    for (jid, role) in room.sessions() {
        if Some(jid) == except {
            continue;
        }
        let mut copy = if occupant.visits.iter().any(|v| &v.jid == jid) {
            presence_of(room, occupant, true, &[110])
        } else {
            views.for_viewer(room, role).clone()
        };
        copy.set_to(Jid::from(jid.clone()));
        out.push(copy);
    }
}

/// A presence change of an occupant (§7.7): kept and broadcast, the sender included.
fn update(room: &mut Room, from: &FullJid, presence: &Element, out: &mut Vec<Stanza>) {
    let Some(nick) = room.by_session.get(from).cloned() else { return };
    if let Some(occupant) = room.occupants.get_mut(&nick) {
        let presence = kept_presence(presence);
        if let Some(pos) = occupant.visits.iter().position(|v| &v.jid == from) {
            let mut visit = occupant.visits.remove(pos);
            visit.presence = presence;
            occupant.visits.push(visit); // the latest presence is the one shown
        }
    }
    room.refresh(&nick);
    broadcast_presence(room, &nick, None, out);
}

/// A nick change (§7.6): unavailable from the old nick with 303 and the new nick, then
/// available from the new one.
fn change_nick(room: &mut Room, from: &FullJid, old: &str, new: String, stanza: &Stanza, out: &mut Vec<Stanza>) {
    let account = from.bare();
    if room.occupants.get(&new).is_some_and(|o| o.account != account) {
        out.extend(StanzaError::conflict().with_text("that nickname is in use").reply_to(stanza));
        return;
    }
    if room.occupants.contains_key(&new) || room.occupants.get(old).is_some_and(|o| o.visits.len() > 1) {
        let error = StanzaError::not_acceptable().with_text("a nick shared by several sessions cannot change");
        out.extend(error.reply_to(stanza));
        return;
    }
    let Some(mut occupant) = room.occupants.get(old).cloned() else { return };
    let extra = Element::new("x", NS_USER).with_child(Element::new("nick", NS_USER).with_text(new.as_str()));
    announce_departure(room, &occupant, from, &[303], Some(&extra), &[], out);
    room.occupants.remove(old);
    occupant.nick = new.clone();
    room.occupants.insert(new.clone(), occupant);
    room.by_session.insert(from.clone(), new.clone());
    update(room, from, stanza.el(), out);
}

/// The history an entering occupant asked for (§7.2.15): at most `maxstanzas` messages,
/// `maxchars` characters, none older than `seconds` or `since`.
pub(super) fn history_for(room: &Room, request: Option<&Element>, to: &FullJid) -> Vec<Stanza> {
    let number = |name: &str| request.and_then(|h| h.attr(name)).and_then(|v| v.parse::<u64>().ok());
    let max_stanzas = number("maxstanzas").map(|n| n as usize).unwrap_or(usize::MAX);
    let max_chars = number("maxchars").map(|n| n as usize).unwrap_or(usize::MAX);
    let now = now_micros();
    let mut oldest = number("seconds").map(|s| now - (s.min(i64::MAX as u64 / 1_000_000) as i64) * 1_000_000);
    if let Some(since) = request.and_then(|h| h.attr("since")).and_then(parse_datetime) {
        oldest = Some(oldest.map_or(since, |o| o.max(since)));
    }
    let mut chars = 0usize;
    let mut picked: Vec<&HistoryItem> = Vec::new();
    for item in room.history.iter().rev() {
        if picked.len() >= max_stanzas || oldest.is_some_and(|o| item.when < o) {
            break;
        }
        chars += item.chars;
        if chars > max_chars {
            break;
        }
        picked.push(item);
    }
    let to = Jid::from(to.clone());
    picked
        .into_iter()
        .rev()
        .map(|item| {
            let mut copy = item.stanza.clone();
            copy.set_to(to.clone());
            copy
        })
        .collect()
}

/// The subject message that ends the entry (§7.2.15): an empty `<subject/>` when none is set.
pub(super) fn subject_message(room: &Room, to: &FullJid) -> Stanza {
    let (text, by) = match &room.saved.subject {
        Some(subject) => (subject.text.as_str(), subject.by.as_str()),
        None => ("", ""),
    };
    let mut el = Element::new("message", NS_CLIENT).with_attr("type", "groupchat");
    el.set_attr("id", random_id(9));
    el.push_child(Element::new("subject", NS_CLIENT).with_text(text));
    let mut stanza = Stanza::new(StanzaKind::Message, el);
    let from = if by.is_empty() {
        Jid::from(room.jid.clone())
    } else {
        room.occupant_jid(by).map(Jid::from).unwrap_or_else(|| Jid::from(room.jid.clone()))
    };
    stanza.set_from(&from);
    stanza.set_to(Jid::from(to.clone()));
    stanza
}
