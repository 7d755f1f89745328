//! Presence of occupants as the room shows it (XEP-0045 §7.2.3): the occupant's own presence
//! payload from the room JID, with `<x xmlns='…muc#user'><item affiliation role [jid]/></x>`
//! and the occupant id (XEP-0421).

use super::room::{Affiliation, Occupant, Role, Room};
use super::{NS_OCCUPANT_ID, NS_USER};
use crate::module_api::{BareJid, Element, FullJid, Jid, NS_CLIENT, Stanza, StanzaKind};
use sha2::Sha256;

/// What goes into the `<item/>` of a muc#user payload.
pub struct ItemInfo<'a> {
    pub affiliation: Affiliation,
    pub role: Role,
    pub jid: Option<&'a FullJid>,
    pub nick: Option<&'a str>,
}

/// `<x xmlns='…muc#user'><item …/><status code/>…</x>`.
pub fn user_x(item: &ItemInfo<'_>, codes: &[u16]) -> Element {
    let mut el = Element::new("item", NS_USER)
        .with_attr("affiliation", item.affiliation.as_str())
        .with_attr("role", item.role.as_str());
    if let Some(jid) = item.jid {
        el.set_attr("jid", jid.as_str());
    }
    if let Some(nick) = item.nick {
        el.set_attr("nick", nick);
    }
    let mut x = Element::new("x", NS_USER).with_child(el);
    for code in codes {
        x.push_child(Element::new("status", NS_USER).with_attr("code", code.to_string()));
    }
    x
}

/// The occupant's presence as others see it: the payload of its latest presence (show,
/// status, caps; the client's MUC elements removed), `from` the occupant JID, no `to`.
pub fn presence_of(room: &Room, occupant: &Occupant, with_jid: bool, codes: &[u16]) -> Stanza {
    let visit = occupant.visits.last();
    let mut el = Element::new("presence", NS_CLIENT);
    if let Some(visit) = visit {
        for child in visit.presence.child_elements() {
            if child.ns != super::NS_MUC && child.ns != NS_USER && child.ns != NS_OCCUPANT_ID {
                el.push_child(child.clone());
            }
        }
    }
    let item = ItemInfo {
        affiliation: room.affiliation(&occupant.account),
        role: occupant.role,
        jid: visit.map(|v| &v.jid).filter(|_| with_jid),
        nick: None,
    };
    el.push_child(user_x(&item, codes));
    el.push_child(Element::new("occupant-id", NS_OCCUPANT_ID).with_attr("id", occupant.occupant_id.as_str()));
    let mut stanza = Stanza::new(StanzaKind::Presence, el);
    if let Some(from) = room.occupant_jid(&occupant.nick) {
        stanza.set_from(&Jid::from(from));
    }
    stanza
}

/// The two views of an occupant's presence: without and with its real JID. Built once per
/// change; each recipient gets a copy of one of them.
pub struct PresenceViews {
    pub anonymous: Stanza,
    pub with_jid: Stanza,
}

impl PresenceViews {
    pub fn build(room: &Room, occupant: &Occupant) -> PresenceViews {
        let anonymous = presence_of(room, occupant, false, &[]);
        let with_jid = presence_of(room, occupant, true, &[]);
        anonymous.prepare_wire();
        with_jid.prepare_wire();
        PresenceViews { anonymous, with_jid }
    }

    /// The view for a viewer with this role.
    pub fn for_viewer(&self, room: &Room, viewer: Role) -> &Stanza {
        if room.shows_real_jids_to(viewer) { &self.with_jid } else { &self.anonymous }
    }
}

/// The XEP-0421 occupant id of an account in a room: an HMAC of the account with the room's
/// secret, so it is stable across nicks and visits and reveals nothing about the account.
pub fn occupant_id(secret: &str, account: &BareJid) -> String {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let Ok(mut mac) = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return String::new(); // HMAC takes keys of any length
    };
    mac.update(account.as_str().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..18])
}
