//! Moderated message retraction (XEP-0425 `urn:xmpp:message-moderate:1` with XEP-0424
//! `urn:xmpp:message-retract:1`): a moderator names a group message by its stanza-id; the
//! room tells every occupant to retract it and removes it from the archive and the history.
//!
//! ```xml
//! <iq type='set' to='room@service'><moderate id='stanza-id' xmlns='urn:xmpp:message-moderate:1'>
//!   <retract xmlns='urn:xmpp:message-retract:1'/><reason>…</reason></moderate></iq>
//! ```
//! is answered with a result after this goes to everyone in the room:
//! ```xml
//! <message type='groupchat' from='room@service'><retract id='stanza-id' xmlns='urn:xmpp:message-retract:1'>
//!   <moderated by='room@service/nick' xmlns='urn:xmpp:message-moderate:1'><occupant-id …/></moderated>
//!   <reason>…</reason></retract></message>
//! ```
//! with, for older clients, the same notice in the moderate:0 form inside `<apply-to/>`.

use super::room::{Role, Room};
use super::room_iq::IqOutcome;
use super::{Muc, NS_OCCUPANT_ID};
use crate::module_api::{Element, FullJid, Jid, NS_CLIENT, Stanza, StanzaError, StanzaKind, random_id, stanza_id_by};

/// XEP-0425 moderation.
pub const NS_MODERATE: &str = "urn:xmpp:message-moderate:1";
/// XEP-0424 retraction.
pub const NS_RETRACT: &str = "urn:xmpp:message-retract:1";
const NS_MODERATE_0: &str = "urn:xmpp:message-moderate:0";
const NS_RETRACT_0: &str = "urn:xmpp:message-retract:0";
/// XEP-0422 message fastening.
const NS_FASTEN: &str = "urn:xmpp:fasten:0";

impl Muc {
    pub(super) async fn moderate(&self, room: &mut Room, from: &FullJid, request: &Element) -> IqOutcome {
        let Some(moderator) = room.occupant_of(from).filter(|o| o.role == Role::Moderator) else {
            return Err(StanzaError::forbidden().with_text("only moderators retract messages")).into();
        };
        let (nick, occupant_id) = (moderator.nick.clone(), moderator.occupant_id.clone());
        let Some(id) = request.attr("id").filter(|id| !id.is_empty()).map(str::to_owned) else {
            return Err(StanzaError::bad_request().with_text("name the message by its stanza-id")).into();
        };
        if !request.has_child("retract", NS_RETRACT) {
            return Err(StanzaError::feature_not_implemented().with_text("only retraction is supported")).into();
        }
        let node = room.jid.node().map(|n| n.as_str().to_owned()).unwrap_or_default();
        self.archive.commits().flush().await;
        let room_jid = room.jid.to_string();
        let is_it = |stanza: &Stanza| stanza_id_by(stanza, &room_jid) == Some(id.as_str());
        let in_history = room.history.iter().any(|item| is_it(&item.stanza));
        let in_archive = match self.archive.get(&node, &id).await {
            Ok(found) => found.is_some(),
            Err(e) => return Err(super::internal(e)).into(),
        };
        if !in_history && !in_archive {
            return Err(StanzaError::item_not_found().with_text("no such message in this room")).into();
        }
        room.history.retain(|item| !is_it(&item.stanza));
        if in_archive && let Err(e) = self.archive.delete_by_keys(&node, std::slice::from_ref(&id)).await {
            return Err(super::internal(e)).into();
        }
        let mut moderated = Element::new("moderated", NS_MODERATE);
        if let Some(by) = room.occupant_jid(&nick) {
            moderated.set_attr("by", by.as_str());
        }
        moderated.push_child(Element::new("occupant-id", NS_OCCUPANT_ID).with_attr("id", occupant_id));
        let mut retract = Element::new("retract", NS_RETRACT).with_attr("id", id.as_str()).with_child(moderated);
        // The earlier form (moderate:0 inside a XEP-0422 fastening), for clients that only
        // know that one.
        let mut moderated_0 = Element::new("moderated", NS_MODERATE_0)
            .with_attr("by", room.occupant_jid(&nick).map(|j| j.to_string()).unwrap_or_default())
            .with_child(Element::new("retract", NS_RETRACT_0));
        if let Some(reason) = request.get_child("reason", NS_MODERATE) {
            retract.push_child(Element::new("reason", NS_RETRACT).with_text(reason.text()));
            moderated_0.push_child(Element::new("reason", NS_MODERATE_0).with_text(reason.text()));
        }
        let fastening = Element::new("apply-to", NS_FASTEN).with_attr("id", id.as_str()).with_child(moderated_0);
        let el = Element::new("message", NS_CLIENT)
            .with_attr("type", "groupchat")
            .with_attr("id", random_id(9))
            .with_child(retract)
            .with_child(fastening)
            .with_child(Element::new("store", "urn:xmpp:hints"));
        let mut notice = Stanza::new(StanzaKind::Message, el);
        notice.set_from(&Jid::from(room.jid.clone()));
        IqOutcome { reply: Ok(None), out: room.copies_for_all(&notice) }
    }
}
