//! Messages to a room (XEP-0045 §7.4, §7.5, §7.8, §8.1): group messages, subject changes,
//! private messages between occupants and mediated invitations.
//!
//! A group message from an occupant is given the room's `<stanza-id/>` (XEP-0359; ids the
//! client put in naming the room are removed first) and the sender's occupant id
//! (XEP-0421), then, in this order: queued into the room archive, kept for history, sent to
//! every session in the room, and, in a members-only room with `offline_members` on, queued
//! into the inbox of each member with no session in the room: their available clients get it
//! now, and it waits in the offline store until one of their clients has it (a client that
//! is offline gets it at its next login). The archive and offline writes go through the group commit, so the sender's
//! stream-management acknowledgement means they are on disk.

use super::room::{Affiliation, AllowPm, HistoryItem, Role, Room, Subject};
use super::{Muc, NS_OCCUPANT_ID, NS_USER, StorageFailed};
use crate::module_api::{
    BareJid, Element, FullJid, Jid, NS_CLIENT, NewItem, Stanza, StanzaError, StanzaKind, ToBare, Value, add_stanza_id,
    now_micros, ns, random_id,
};

impl Muc {
    pub(super) async fn message(&self, node: &str, nick: Option<String>, stanza: Stanza) {
        if stanza.is_error() {
            return; // errors from occupants' clients are not answered (RFC 6120 §8.3.1)
        }
        let lock = match self.room(node).await {
            Ok(Some(lock)) => lock,
            Ok(None) => return self.refuse(&stanza, StanzaError::item_not_found().with_text("no such room")).await,
            Err(StorageFailed) => return self.refuse(&stanza, StanzaError::internal_server_error()).await,
        };
        let mut room = lock.lock().await;
        if room.gone || room.locked {
            drop(room);
            return self.refuse(&stanza, StanzaError::item_not_found().with_text("no such room")).await;
        }
        let Some(Ok(from)) = stanza.from().map(Jid::try_into_full) else { return };
        let out = match nick {
            None => self.to_room(&mut room, &from, &stanza).await,
            Some(nick) => private_message(&room, &nick, &from, &stanza),
        };
        // No actor: a room message is the fan-out's hot path, and the sender's reflection
        // (§7.4) going out first changes nothing any occupant sees of the room's order.
        self.finish(room, None, out).await;
    }

    async fn to_room(&self, room: &mut Room, from: &FullJid, stanza: &Stanza) -> Vec<Stanza> {
        if let Some(x) = stanza.el().get_child("x", NS_USER)
            && x.child_elements().any(|c| c.is("invite", NS_USER) || c.is("decline", NS_USER))
        {
            return self.invitations(room, from, x, stanza).await;
        }
        let refuse = |error: StanzaError| error.reply_to(stanza).into_iter().collect::<Vec<_>>();
        if stanza.type_attr() != Some("groupchat") {
            return refuse(StanzaError::not_acceptable().with_text("send group messages with type groupchat"));
        }
        let Some(occupant) = room.occupant_of(from) else {
            return refuse(StanzaError::not_acceptable().with_text("you are not in this room"));
        };
        if occupant.role < Role::Participant {
            return refuse(StanzaError::forbidden().with_text("you have no voice in this room"));
        }
        let nick = occupant.nick.clone();
        let role = occupant.role;
        let el = stanza.el();
        let subject = el.get_child("subject", NS_CLIENT).filter(|_| !el.has_child("body", NS_CLIENT));
        if let Some(subject) = subject {
            if role < Role::Moderator && !room.config().change_subject {
                return refuse(StanzaError::forbidden().with_text("only moderators may change the subject"));
            }
            room.saved.subject = Some(Subject { text: subject.text(), by: nick.clone() });
            if let Err(error) = self.save(room).await {
                return refuse(error);
            }
        }
        self.broadcast_message(room, &nick, stanza).await
    }

    /// Stamps, archives, remembers and fans out a group message; keeps it for absent members.
    async fn broadcast_message(&self, room: &mut Room, nick: &str, stanza: &Stanza) -> Vec<Stanza> {
        let room_jid = room.jid.to_string();
        let mut el = stanza.el().clone();
        el.children.retain(|child| match child {
            crate::module_api::Node::Element(c) => {
                !(c.is("stanza-id", ns::SID) && c.attr("by") == Some(room_jid.as_str())) && c.ns != NS_OCCUPANT_ID
            }
            _ => true,
        });
        let mut message = Stanza::new(StanzaKind::Message, el);
        let Some(from) = room.occupant_jid(nick) else { return Vec::new() };
        message.set_from(&Jid::from(from.clone()));
        let key = random_id(15);
        add_stanza_id(&mut message, &room_jid, &key);
        if let Some(occupant) = room.occupants.get(nick) {
            let id = Element::new("occupant-id", NS_OCCUPANT_ID).with_attr("id", occupant.occupant_id.as_str());
            message.el_mut().push_child(id);
        }
        let when = now_micros();
        let has_body = message.el().has_child("body", NS_CLIENT);
        let node = room.jid.node().map(|n| n.as_str().to_owned()).unwrap_or_default();
        if has_body && room.config().archive {
            let value = Value::xml(message.to_document());
            let item = NewItem { key: Some(key.clone()), when, with: from.to_string(), value };
            self.archive.append_queued(&node, item).await;
        }
        message.prepare_wire();
        if has_body {
            room.remember(HistoryItem::new(&room_jid, &message, when));
        }
        if has_body && room.config().members_only && room.config().offline_members {
            self.keep_for_absent_members(room, &message, &key).await;
        }
        room.copies_for_all(&message)
    }

    /// Queues the message into the offline store of each member on a local domain who has no
    /// session in the room (members on other servers get it from the room archive).
    async fn keep_for_absent_members(&self, room: &Room, message: &Stanza, key: &str) {
        for member in room.absent_members() {
            let domain = member.domain().as_str().to_owned();
            let store = self.server.with_host(&domain, |host| host.service::<super::super::offline::OfflineStore>());
            if let Some(Some(store)) = store {
                store.keep(&member, message, key).await;
            }
        }
    }

    /// Mediated invitations and their declines (§7.8.2).
    async fn invitations(&self, room: &mut Room, from: &FullJid, x: &Element, stanza: &Stanza) -> Vec<Stanza> {
        let mut out = Vec::new();
        let inviter = from.bare();
        let affiliation = room.affiliation(&inviter);
        let occupant_role = room.occupant_of(from).map(|o| o.role);
        let mut changed = false;
        let notices = x.child_elements().filter(|c| c.is("invite", NS_USER) || c.is("decline", NS_USER));
        for child in notices.take(MAX_INVITES) {
            let to = child.attr("to").and_then(|t| BareJid::new(t).ok());
            // Never to the service itself: a room does not invite rooms.
            let Some(to) = to.filter(|t| t.domain().as_str() != self.service) else {
                out.extend(StanzaError::jid_malformed().with_text("invite or decline an account").reply_to(stanza));
                break;
            };
            let mut notice = Element::new(child.name.as_str(), NS_USER).with_attr("from", inviter.as_str());
            if let Some(reason) = child.get_child("reason", NS_USER) {
                notice.push_child(reason.clone());
            }
            let mut user = Element::new("x", NS_USER);
            let mut message = Element::new("message", NS_CLIENT);
            match child.name.as_str() {
                "invite" => {
                    let allowed = if room.config().members_only {
                        affiliation >= Affiliation::Admin || (room.config().allow_invites && occupant_role.is_some())
                    } else {
                        occupant_role.is_some_and(|r| r == Role::Moderator || room.config().allow_invites)
                            || affiliation >= Affiliation::Admin
                    };
                    if !allowed {
                        out.extend(
                            StanzaError::forbidden().with_text("you may not invite to this room").reply_to(stanza),
                        );
                        continue;
                    }
                    if room.config().members_only && room.affiliation(&to) == Affiliation::None {
                        room.set_affiliation(&to, Affiliation::Member);
                        changed = true;
                    }
                    notice.set_attr("from", from.as_str());
                    user.push_child(notice);
                    if let Some(password) = &room.config().password {
                        user.push_child(Element::new("password", NS_USER).with_text(password.as_str()));
                    }
                    let text = format!("{inviter} invites you to the room {}", room.jid);
                    message.push_child(user);
                    message.push_child(Element::new("body", NS_CLIENT).with_text(text));
                }
                "decline" => {
                    user.push_child(notice);
                    message.push_child(user);
                }
                _ => continue,
            }
            let mut message = Stanza::new(StanzaKind::Message, message);
            message.set_from(&Jid::from(room.jid.clone()));
            message.set_to(Jid::from(to));
            out.push(message);
        }
        if changed && let Err(error) = self.save(room).await {
            out.extend(error.reply_to(stanza));
        }
        out
    }
}

/// Most invitations one message may carry.
const MAX_INVITES: usize = 20;

/// A private message to an occupant (§7.5), relayed from the sender's occupant JID to each
/// session of the addressee.
fn private_message(room: &Room, nick: &str, from: &FullJid, stanza: &Stanza) -> Vec<Stanza> {
    let refuse = |error: StanzaError| error.reply_to(stanza).into_iter().collect::<Vec<_>>();
    if stanza.type_attr() == Some("groupchat") {
        return refuse(StanzaError::bad_request().with_text("group messages go to the room"));
    }
    let Some(sender) = room.occupant_of(from) else {
        return refuse(StanzaError::not_acceptable().with_text("you are not in this room"));
    };
    let allowed = match room.config().allow_pm {
        AllowPm::Anyone => true,
        AllowPm::Participants => sender.role >= Role::Participant,
        AllowPm::Moderators => sender.role == Role::Moderator,
        AllowPm::None => false,
    };
    if !allowed {
        return refuse(StanzaError::forbidden().with_text("private messages are not allowed here"));
    }
    let Some(target) = room.occupants.get(nick) else {
        return refuse(StanzaError::item_not_found().with_text("no such occupant"));
    };
    let Some(sender_jid) = room.occupant_jid(&sender.nick) else { return Vec::new() };
    let mut message = stanza.clone();
    // What the client put in that the room vouches for (muc#user items, occupant ids) is
    // replaced by the room's own.
    let body = message.el_mut();
    body.children.retain(|c| match c {
        crate::module_api::Node::Element(e) => e.ns != NS_USER && e.ns != NS_OCCUPANT_ID,
        _ => true,
    });
    body.push_child(Element::new("x", NS_USER));
    body.push_child(Element::new("occupant-id", NS_OCCUPANT_ID).with_attr("id", sender.occupant_id.as_str()));
    message.set_from(&Jid::from(sender_jid));
    message.prepare_wire();
    target
        .visits
        .iter()
        .map(|visit| {
            let mut copy = message.clone();
            copy.set_to(Jid::from(visit.jid.clone()));
            copy
        })
        .collect()
}
