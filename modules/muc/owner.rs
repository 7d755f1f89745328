//! The owner protocol (`muc#owner`, XEP-0045 §10): the configuration form, its submission
//! (which also unlocks a new room: an empty `<x type='submit'/>` makes it an instant room,
//! a cancelled form on a new room destroys it) and destruction.
//!
//! After a change, occupants get a status message with 104 (and 172/173 when real JIDs
//! become visible or hidden); when a room becomes members-only, non-members leave with 322.

use super::admin::{apply_affiliation, remove_occupant};
use super::form::{apply_submission, config_form};
use super::room::{Affiliation, Room, Whois};
use super::room_iq::IqOutcome;
use super::{Muc, NS_OWNER, NS_USER};
use crate::module_api::{
    BareJid, Element, FullJid, Jid, NS_CLIENT, Stanza, StanzaError, StanzaKind, ToBare, ns, random_id,
};

impl Muc {
    pub(super) async fn owner(&self, room: &mut Room, from: &FullJid, query: &Element, get: bool) -> IqOutcome {
        if room.affiliation(&from.bare()) != Affiliation::Owner {
            return Err(StanzaError::forbidden().with_text("only owners configure this room")).into();
        }
        if get {
            let list = |wanted: Affiliation| -> Vec<String> {
                room.saved.affiliations.iter().filter(|(_, a)| **a == wanted).map(|(j, _)| j.clone()).collect()
            };
            let form = config_form(
                room.config(),
                &list(Affiliation::Owner),
                &list(Affiliation::Admin),
                self.options.max_occupants,
            );
            return Ok(Some(Element::new("query", NS_OWNER).with_child(form))).into();
        }
        if let Some(destroy) = query.get_child("destroy", NS_OWNER) {
            let out = self.destroy(room, Some(destroy)).await;
            return IqOutcome { reply: Ok(None), out };
        }
        let Some(form) = query.get_child("x", ns::DATA_FORMS) else {
            return Err(StanzaError::bad_request().with_text("send a form or <destroy/>")).into();
        };
        match form.attr("type") {
            Some("cancel") if room.locked => IqOutcome { reply: Ok(None), out: self.destroy(room, None).await },
            Some("cancel") => Ok(None).into(),
            Some("submit") => self.configure(room, form).await,
            _ => Err(StanzaError::bad_request().with_text("the form must be submitted or cancelled")).into(),
        }
    }

    async fn configure(&self, room: &mut Room, form: &Element) -> IqOutcome {
        let before = room.config().clone();
        let mut config = before.clone();
        let lists = match apply_submission(form, &mut config, self.options.max_occupants) {
            Ok(lists) => lists,
            Err(error) => return Err(error).into(),
        };
        let mut affiliations = room.saved.affiliations.clone();
        for (list, affiliation) in [(lists.owners, Affiliation::Owner), (lists.admins, Affiliation::Admin)] {
            let Some(list) = list else { continue };
            let mut wanted = Vec::new();
            for jid in list.iter().filter(|j| !j.is_empty()) {
                match BareJid::new(jid) {
                    Ok(jid) => wanted.push(jid.to_string()),
                    Err(_) => return Err(StanzaError::jid_malformed().with_text(format!("'{jid}'"))).into(),
                }
            }
            affiliations.retain(|jid, a| *a != affiliation || wanted.contains(jid));
            for jid in wanted {
                affiliations.insert(jid, affiliation);
            }
        }
        if !affiliations.values().any(|a| *a == Affiliation::Owner) {
            return Err(StanzaError::conflict().with_text("a room keeps at least one owner")).into();
        }
        let was_persistent = before.persistent;
        let changed: Vec<(BareJid, Affiliation)> = affiliations
            .iter()
            .filter(|(jid, a)| room.saved.affiliations.get(*jid) != Some(a))
            .map(|(jid, a)| (jid.clone(), *a))
            .chain(
                room.saved
                    .affiliations
                    .keys()
                    .filter(|jid| !affiliations.contains_key(*jid))
                    .map(|jid| (jid.clone(), Affiliation::None)),
            )
            .filter_map(|(jid, a)| BareJid::new(&jid).ok().map(|j| (j, a)))
            .collect();
        room.saved.config = config;
        room.saved.affiliations = affiliations;
        while room.history.len() > room.config().history_length {
            room.history.pop_front();
        }
        let unlocked = std::mem::replace(&mut room.locked, false);
        if (room.config().persistent || was_persistent)
            && let Err(error) = self.save(room).await
        {
            return Err(error).into();
        }
        let mut out = Vec::new();
        // Owners and admins named or dropped in the form see their new standing (§10.6–§10.8).
        let extra = Element::new("x", NS_USER);
        for (account, affiliation) in changed {
            apply_affiliation(room, &account, affiliation, &extra, &mut out);
        }
        if room.config().members_only && !before.members_only {
            let outsiders: Vec<String> = room
                .occupants
                .values()
                .filter(|o| room.affiliation(&o.account) == Affiliation::None)
                .map(|o| o.nick.clone())
                .collect();
            let extra = Element::new("x", NS_USER);
            for nick in outsiders {
                remove_occupant(room, &nick, &[322], &extra, &mut out);
            }
        }
        if room.config().whois != before.whois {
            let nicks: Vec<String> = room.occupants.keys().cloned().collect();
            for nick in nicks {
                room.refresh(&nick);
            }
        }
        if !unlocked {
            let mut codes = vec![104];
            match (before.whois, room.config().whois) {
                (Whois::Moderators, Whois::Anyone) => codes.push(172),
                (Whois::Anyone, Whois::Moderators) => codes.push(173),
                _ => {}
            }
            match (before.archive, room.config().archive) {
                (false, true) => codes.push(170),
                (true, false) => codes.push(171),
                _ => {}
            }
            out.extend(status_message(room, &codes));
        }
        IqOutcome { reply: Ok(None), out }
    }

    /// Destroys a room (§10.9): every occupant leaves with the `<destroy/>` notice, and its
    /// configuration and archive are deleted.
    pub(super) async fn destroy(&self, room: &mut Room, destroy: Option<&Element>) -> Vec<Stanza> {
        let mut notice = Element::new("destroy", NS_USER);
        if let Some(destroy) = destroy {
            if let Some(jid) = destroy.attr("jid") {
                notice.set_attr("jid", jid);
            }
            if let Some(reason) = destroy.get_child("reason", NS_OWNER) {
                notice.push_child(Element::new("reason", NS_USER).with_text(reason.text()));
            }
        }
        let mut out = Vec::new();
        for occupant in room.occupants.values() {
            let affiliation = room.affiliation(&occupant.account);
            for visit in &occupant.visits {
                let x = Element::new("x", NS_USER)
                    .with_child(
                        Element::new("item", NS_USER)
                            .with_attr("affiliation", affiliation.as_str())
                            .with_attr("role", "none"),
                    )
                    .with_child(notice.clone());
                let mut presence = Stanza::new(
                    StanzaKind::Presence,
                    Element::new("presence", NS_CLIENT).with_attr("type", "unavailable").with_child(x),
                );
                if let Some(from) = room.occupant_jid(&occupant.nick) {
                    presence.set_from(&Jid::from(from));
                }
                presence.set_to(Jid::from(visit.jid.clone()));
                out.push(presence);
            }
        }
        room.occupants.clear();
        room.by_session.clear();
        room.history.clear();
        room.saved.config.persistent = false;
        let node = room.jid.node().map(|n| n.as_str().to_owned()).unwrap_or_default();
        if let Err(e) = self.saved.set(&node, None).await {
            tracing::error!(room = %room.jid, error = %e, "muc: deleting a destroyed room failed");
        }
        self.delete_archive(&node).await;
        room.gone = true;
        self.unload(&node);
        out
    }
}

/// A message from the room with status codes (§10.2.1: configuration changes).
fn status_message(room: &Room, codes: &[u16]) -> Vec<Stanza> {
    let mut x = Element::new("x", NS_USER);
    for code in codes {
        x.push_child(Element::new("status", NS_USER).with_attr("code", code.to_string()));
    }
    let el =
        Element::new("message", NS_CLIENT).with_attr("type", "groupchat").with_attr("id", random_id(9)).with_child(x);
    let mut message = Stanza::new(StanzaKind::Message, el);
    message.set_from(&Jid::from(room.jid.clone()));
    room.copies_for_all(&message)
}
