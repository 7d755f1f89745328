//! The admin protocol (`muc#admin`, XEP-0045 §8 moderator and §9 admin use cases): role
//! changes by nick (kick, voice, moderator) and affiliation changes by JID (ban, member,
//! admin, owner), and the lists of both.
//!
//! A request with several items is checked item by item first and applied only if every
//! item is allowed, so a refused request changes nothing. Who may do what:
//! - roles: moderators; giving or taking the moderator role needs an admin or owner; admins
//!   and owners cannot be kicked or silenced (`not-allowed`);
//! - affiliations: admins and owners; only owners give or take admin and owner; the last
//!   owner stays (`conflict`).
//!
//! Effects on occupants: a kick sends unavailable with 307, a ban with 301, losing membership
//! of a members-only room with 321; every other change is a new presence for everyone.

use super::presence::{announce_departure, broadcast_presence};
use super::room::{Affiliation, Role, Room};
use super::room_iq::IqOutcome;
use super::{Muc, NS_ADMIN, NS_USER};
use crate::module_api::{BareJid, Element, FullJid, Stanza, StanzaError, ToBare};

enum Change {
    Role { nick: String, role: Role },
    Affiliation { account: BareJid, affiliation: Affiliation },
}

/// A checked change with the `<reason/>` it came with.
struct Checked {
    change: Change,
    reason: Option<Element>,
}

impl Muc {
    pub(super) async fn admin(&self, room: &mut Room, from: &FullJid, query: &Element, get: bool) -> IqOutcome {
        let items: Vec<&Element> = query.child_elements().filter(|c| c.is("item", NS_ADMIN)).collect();
        if items.is_empty() {
            return Err(StanzaError::bad_request().with_text("an item is needed")).into();
        }
        if get {
            return list(room, from, items[0]).into();
        }
        let mut checked = Vec::new();
        for item in items {
            match check(room, from, item) {
                Ok(change) => checked.push(change),
                Err(error) => return Err(error).into(),
            }
        }
        if let Err(error) = self.check_result(room, &checked).await {
            return Err(error).into();
        }
        let mut out = Vec::new();
        let actor_nick = room.occupant_of(from).map(|o| o.nick.clone());
        let mut affiliations_changed = false;
        for Checked { change, reason } in checked {
            let extra = actor_and_reason(actor_nick.as_deref(), reason);
            match change {
                Change::Role { nick, role } => set_role(room, &nick, role, &extra, &mut out),
                Change::Affiliation { account, affiliation } => {
                    room.set_affiliation(&account, affiliation);
                    apply_affiliation(room, &account, affiliation, &extra, &mut out);
                    affiliations_changed = true;
                }
            }
        }
        if affiliations_changed && let Err(error) = self.save(room).await {
            return IqOutcome { reply: Err(error), out };
        }
        IqOutcome { reply: Ok(None), out }
    }
}

impl Muc {
    /// Checks what the request as a whole would leave: at least one owner, no more members
    /// than the service allows in a room (each of them may get every message in the offline
    /// store), and members of this server that exist.
    async fn check_result(&self, room: &Room, checked: &[Checked]) -> Result<(), StanzaError> {
        let mut after = room.saved.affiliations.clone();
        for Checked { change, .. } in checked {
            if let Change::Affiliation { account, affiliation } = change {
                if *affiliation == Affiliation::None {
                    after.remove(account.as_str());
                } else {
                    after.insert(account.to_string(), *affiliation);
                }
                let local = self.server.is_local_domain(account.domain().as_str());
                if *affiliation >= Affiliation::Member
                    && local
                    && !self.server.account_exists(account).await.unwrap_or(false)
                {
                    return Err(StanzaError::item_not_found().with_text(format!("there is no account {account}")));
                }
            }
        }
        if !after.values().any(|a| *a == Affiliation::Owner) {
            return Err(StanzaError::conflict().with_text("a room keeps at least one owner"));
        }
        let members = after.values().filter(|a| **a >= Affiliation::Member).count();
        let outcasts = after.len() - members;
        if members > self.options.max_occupants || outcasts > MAX_OUTCASTS {
            return Err(StanzaError::not_allowed().with_text("the room has as many members as it may have"));
        }
        Ok(())
    }
}

/// Most banned accounts a room keeps.
const MAX_OUTCASTS: usize = 10_000;

/// `<x><item><actor nick/><reason/></item></x>` children for the notices.
fn actor_and_reason(actor: Option<&str>, reason: Option<Element>) -> Element {
    let mut extra = Element::new("x", NS_USER);
    if let Some(actor) = actor {
        extra.push_child(Element::new("actor", NS_USER).with_attr("nick", actor));
    }
    if let Some(reason) = reason {
        extra.push_child(Element::new("reason", NS_USER).with_text(reason.text()));
    }
    extra
}

/// The list of an affiliation (admins and owners; members of a members-only room may see the
/// member lists) or of a role (moderators).
fn list(room: &Room, from: &FullJid, item: &Element) -> Result<Option<Element>, StanzaError> {
    let actor = room.affiliation(&from.bare());
    let mut query = Element::new("query", NS_ADMIN);
    if let Some(affiliation) = item.attr("affiliation").and_then(Affiliation::parse) {
        let allowed = actor >= Affiliation::Admin || (room.config().members_only && actor >= Affiliation::Member);
        if !allowed || affiliation == Affiliation::None {
            return Err(StanzaError::forbidden());
        }
        for (jid, a) in &room.saved.affiliations {
            if *a == affiliation {
                query.push_child(
                    Element::new("item", NS_ADMIN).with_attr("affiliation", a.as_str()).with_attr("jid", jid),
                );
            }
        }
        return Ok(Some(query));
    }
    let Some(role) = item.attr("role").and_then(Role::parse) else {
        return Err(StanzaError::bad_request().with_text("ask for an affiliation or a role"));
    };
    if room.occupant_of(from).map(|o| o.role) != Some(Role::Moderator) {
        return Err(StanzaError::forbidden());
    }
    for occupant in room.occupants.values().filter(|o| o.role == role) {
        let mut el = Element::new("item", NS_ADMIN)
            .with_attr("role", role.as_str())
            .with_attr("nick", occupant.nick.as_str())
            .with_attr("affiliation", room.affiliation(&occupant.account).as_str());
        if let Some(visit) = occupant.visits.first() {
            el.set_attr("jid", visit.jid.as_str());
        }
        query.push_child(el);
    }
    Ok(Some(query))
}

fn check(room: &Room, from: &FullJid, item: &Element) -> Result<Checked, StanzaError> {
    let reason = item.get_child("reason", NS_ADMIN).cloned();
    let actor_affiliation = room.affiliation(&from.bare());
    let actor_role = room.occupant_of(from).map(|o| o.role).unwrap_or(Role::None);
    if let Some(affiliation) = item.attr("affiliation") {
        let affiliation = Affiliation::parse(affiliation).ok_or_else(StanzaError::bad_request)?;
        let account = match (item.attr("jid"), item.attr("nick")) {
            (Some(jid), _) => BareJid::new(jid)
                .or_else(|_| jid::Jid::new(jid).map(|j| j.bare()))
                .map_err(|_| StanzaError::jid_malformed())?,
            (None, Some(nick)) => room
                .occupants
                .get(nick)
                .map(|o| o.account.clone())
                .ok_or_else(|| StanzaError::item_not_found().with_text("no such occupant"))?,
            (None, None) => return Err(StanzaError::bad_request().with_text("the item needs a jid")),
        };
        let current = room.affiliation(&account);
        if actor_affiliation < Affiliation::Admin {
            return Err(StanzaError::forbidden());
        }
        if (affiliation >= Affiliation::Admin || current >= Affiliation::Admin)
            && actor_affiliation != Affiliation::Owner
        {
            return Err(StanzaError::not_allowed().with_text("only owners change admins and owners"));
        }
        if affiliation == Affiliation::Outcast && account == from.bare() {
            return Err(StanzaError::not_allowed().with_text("you cannot ban yourself"));
        }
        return Ok(Checked { change: Change::Affiliation { account, affiliation }, reason });
    }
    let (Some(role), Some(nick)) = (item.attr("role"), item.attr("nick")) else {
        return Err(StanzaError::bad_request().with_text("the item needs a role and a nick, or an affiliation"));
    };
    let role = Role::parse(role).ok_or_else(StanzaError::bad_request)?;
    let target = room.occupants.get(nick).ok_or_else(|| StanzaError::item_not_found().with_text("no such occupant"))?;
    if actor_role != Role::Moderator {
        return Err(StanzaError::forbidden());
    }
    let target_affiliation = room.affiliation(&target.account);
    let refused = match role {
        // §8.2: not someone of higher affiliation, nor an admin or owner of the same.
        Role::None => {
            target_affiliation > actor_affiliation
                || (target_affiliation >= Affiliation::Admin && target_affiliation >= actor_affiliation)
        }
        // §8.4: not someone whose affiliation is at or above the moderator's.
        Role::Visitor => target_affiliation >= actor_affiliation || target_affiliation >= Affiliation::Admin,
        // §9.7: taking the moderator role needs an admin or owner above the target.
        Role::Participant if target.role == Role::Moderator => {
            actor_affiliation < Affiliation::Admin || target_affiliation >= actor_affiliation
        }
        Role::Participant => false,
        // §9.6: only admins and owners give the moderator role.
        Role::Moderator => actor_affiliation < Affiliation::Admin,
    };
    if refused {
        return Err(StanzaError::not_allowed().with_text("your affiliation does not allow this change"));
    }
    Ok(Checked { change: Change::Role { nick: nick.to_owned(), role }, reason })
}

fn set_role(room: &mut Room, nick: &str, role: Role, extra: &Element, out: &mut Vec<Stanza>) {
    if role == Role::None {
        return remove_occupant(room, nick, &[307], extra, out);
    }
    if let Some(occupant) = room.occupants.get_mut(nick) {
        occupant.role = role;
    }
    room.refresh(nick);
    broadcast_presence(room, nick, None, out);
}

/// After an affiliation change: the account's occupant is removed (ban, or no longer a
/// member of a members-only room) or shown with its new affiliation and role.
pub(super) fn apply_affiliation(
    room: &mut Room,
    account: &BareJid,
    affiliation: Affiliation,
    extra: &Element,
    out: &mut Vec<Stanza>,
) {
    let nicks: Vec<String> =
        room.occupants.values().filter(|o| &o.account == account).map(|o| o.nick.clone()).collect();
    for nick in nicks {
        if affiliation == Affiliation::Outcast {
            remove_occupant(room, &nick, &[301], extra, out);
        } else if !room.may_enter(affiliation) {
            remove_occupant(room, &nick, &[321], extra, out);
        } else {
            let role = room.default_role(affiliation);
            if let Some(occupant) = room.occupants.get_mut(&nick) {
                occupant.role = role;
            }
            room.refresh(&nick);
            broadcast_presence(room, &nick, None, out);
        }
    }
}

/// Takes an occupant out of the room with every session, telling everyone why (`codes`).
pub(super) fn remove_occupant(room: &mut Room, nick: &str, codes: &[u16], extra: &Element, out: &mut Vec<Stanza>) {
    let Some(occupant) = room.occupants.remove(nick) else { return };
    for visit in &occupant.visits {
        room.by_session.remove(&visit.jid);
    }
    let Some(own) = occupant.visits.first().map(|v| v.jid.clone()) else { return };
    announce_departure(room, &occupant, &own, codes, Some(extra), &[], out);
}
