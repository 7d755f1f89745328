//! IQs to a room and to occupants: disco#info and #items of the room (XEP-0045 §6.4, §6.5),
//! ping, the admin (§8, §9) and owner (§10) protocols, archive queries (XEP-0313 §4 on the
//! room JID), self-pings to one's own occupant JID (XEP-0410), and IQs between occupants,
//! relayed under an id of the room's so that the answer finds its way back.

use super::room::Room;
use super::{Muc, NS_ADMIN, NS_MUC, NS_OCCUPANT_ID, NS_OWNER, StorageFailed, form};
use crate::module_api::{Element, FullJid, Jid, Stanza, StanzaError, ToBare, iq_reply, ns, random_id};

/// What an IQ handler of a room gives back: the reply and stanzas for others, in order.
pub(super) struct IqOutcome {
    pub reply: Result<Option<Element>, StanzaError>,
    pub out: Vec<Stanza>,
}

impl From<Result<Option<Element>, StanzaError>> for IqOutcome {
    fn from(reply: Result<Option<Element>, StanzaError>) -> IqOutcome {
        IqOutcome { reply, out: Vec::new() }
    }
}

impl Muc {
    pub(super) async fn iq(&self, node: &str, nick: Option<String>, stanza: Stanza) {
        let request = matches!(stanza.type_attr(), Some("get" | "set"));
        if !request && nick.is_none() {
            return; // results and errors to a room answer nothing the room asked
        }
        let Some(sender) = stanza.from() else { return };
        let lock = match self.room(node).await {
            Ok(Some(lock)) => lock,
            Ok(None) => return self.refuse(&stanza, StanzaError::item_not_found().with_text("no such room")).await,
            Err(StorageFailed) => return self.refuse(&stanza, StanzaError::internal_server_error()).await,
        };
        let mut room = lock.lock().await;
        if room.gone {
            drop(room);
            return self.refuse(&stanza, StanzaError::item_not_found().with_text("no such room")).await;
        }
        let actor = sender.clone().try_into_full().ok();
        let out = match (nick, sender.try_into_full()) {
            // Answers to relayed requests may come from an account (vCards).
            (Some(nick), from) if !request => {
                let from = from.map(Jid::from).unwrap_or_else(Jid::from);
                relay_answer(&mut room, &nick, &from, &stanza).into_iter().collect()
            }
            (_, Err(_)) => Vec::new(),
            (None, Ok(from)) => {
                let outcome = self.room_iq(&mut room, &from, &stanza).await;
                let mut out = outcome.out;
                out.extend(iq_reply(&stanza, outcome.reply));
                out
            }
            (Some(nick), Ok(from)) => match occupant_iq(&mut room, &nick, &from, &stanza) {
                Ok(Some(relayed)) => vec![relayed],
                Ok(None) => iq_reply(&stanza, Ok(None)).into_iter().collect(),
                Err(error) => iq_reply(&stanza, Err(error)).into_iter().collect(),
            },
        };
        self.finish(room, actor.as_ref(), out).await;
    }

    async fn room_iq(&self, room: &mut Room, from: &FullJid, stanza: &Stanza) -> IqOutcome {
        let Some(payload) = stanza.el().first_child_element() else {
            return Err(StanzaError::bad_request()).into();
        };
        let get = stanza.type_attr() == Some("get");
        if room.locked && payload.ns != NS_OWNER && room.affiliation(&from.bare()) != super::room::Affiliation::Owner {
            return Err(StanzaError::item_not_found().with_text("no such room")).into();
        }
        match (get, payload.name.as_str(), payload.ns.as_str()) {
            (true, "query", ns::DISCO_INFO) if payload.attr("node").is_none() => Ok(Some(disco_info(room))).into(),
            (true, "query", ns::DISCO_ITEMS) => Ok(Some(disco_items(room, from))).into(),
            (true, "ping", ns::PING) => Ok(None).into(),
            (_, "query", NS_ADMIN) => self.admin(room, from, payload, get).await,
            (_, "query", NS_OWNER) => self.owner(room, from, payload, get).await,
            (false, "moderate", super::moderate::NS_MODERATE) => self.moderate(room, from, payload).await,
            (_, "query", super::archive::NS_MAM) => self.archive_query(room, from, payload, get).await,
            _ => Err(StanzaError::service_unavailable()).into(),
        }
    }
}

/// The room's disco#info: identity, the features that describe it, and `muc#roominfo`.
fn disco_info(room: &Room) -> Element {
    let name = if room.config().name.is_empty() {
        room.jid.node().map(|n| n.as_str().to_owned()).unwrap_or_default()
    } else {
        room.config().name.clone()
    };
    let mut query = Element::new("query", ns::DISCO_INFO).with_child(
        Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", "conference")
            .with_attr("type", "text")
            .with_attr("name", name),
    );
    let mut features = vec![NS_MUC, ns::DISCO_INFO, ns::PING, NS_OCCUPANT_ID, ns::SID, "muc_stable_id"];
    features.push(super::moderate::NS_MODERATE);
    if room.config().archive {
        features.push(super::archive::NS_MAM);
    }
    features.extend(form::features(room.config()));
    for feature in features {
        query.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature));
    }
    let subject = room.saved.subject.as_ref().map(|s| s.text.as_str()).unwrap_or_default();
    query.push_child(form::room_info(room.config(), room.occupants.len(), subject));
    query
}

/// The room's disco#items: the occupant JIDs, to occupants only (§6.5 lets a room keep its
/// occupants private from outsiders).
fn disco_items(room: &Room, from: &FullJid) -> Element {
    let mut query = Element::new("query", ns::DISCO_ITEMS);
    if room.occupant_of(from).is_some() {
        let mut nicks: Vec<&String> = room.occupants.keys().collect();
        nicks.sort();
        for nick in nicks {
            if let Some(jid) = room.occupant_jid(nick) {
                query.push_child(Element::new("item", ns::DISCO_ITEMS).with_attr("jid", jid.as_str()));
            }
        }
    }
    query
}

/// Most relayed IQs a room waits answers for.
const MAX_RELAYS: usize = 256;

/// An IQ request to an occupant JID. A ping to one's own occupant JID is the XEP-0410
/// self-ping, answered by the room: a result while the session is in the room under that
/// nick, `not-acceptable` when it is not in the room. Other requests from occupants are
/// relayed from the requester's occupant JID with an id of the room's, so real JIDs stay
/// hidden: vCard requests (XEP-0054, XEP-0153 avatars) go to the addressee's account, which
/// its server answers; others to its latest session. `Ok(Some(request))` is the relayed
/// copy, `Ok(None)` a result.
fn occupant_iq(room: &mut Room, nick: &str, from: &FullJid, stanza: &Stanza) -> Result<Option<Stanza>, StanzaError> {
    let Some(joined_as) = room.by_session.get(from).cloned() else {
        return Err(StanzaError::not_acceptable().with_text("you are not in this room"));
    };
    let payload = stanza.el().first_child_element();
    if payload.is_some_and(|p| p.is("ping", ns::PING)) && joined_as == nick {
        return Ok(None);
    }
    let target = room.occupants.get(nick).ok_or_else(|| StanzaError::item_not_found().with_text("no such occupant"))?;
    let to = if payload.is_some_and(|p| p.ns == ns::VCARD) {
        Jid::from(target.account.clone())
    } else {
        let Some(visit) = target.visits.last() else { return Err(StanzaError::item_not_found()) };
        Jid::from(visit.jid.clone())
    };
    let Some(sender) = room.occupant_jid(&joined_as) else { return Err(StanzaError::item_not_found()) };
    let token = random_id(12);
    if room.relays.len() >= MAX_RELAYS {
        room.relays.pop_front();
    }
    room.relays.push_back((token.clone(), from.clone(), stanza.id().unwrap_or_default().to_owned()));
    let mut request = stanza.clone();
    request.el_mut().set_attr("id", token);
    request.set_from(&Jid::from(sender));
    request.set_to(to);
    Ok(Some(request))
}

/// The answer (result or error) to a relayed request, coming to the requester's occupant
/// JID `room/nick`: sent on to the requester with its own id, if the room gave out that id
/// for a request from that nick, and the answer comes from the addressee (its session, or
/// its account for vCards).
fn relay_answer(room: &mut Room, nick: &str, from: &Jid, stanza: &Stanza) -> Option<Stanza> {
    let position = room.relays.iter().position(|(token, _, _)| Some(token.as_str()) == stanza.id())?;
    let (_, requester, id) = room.relays.get(position)?.clone();
    if room.by_session.get(&requester).map(String::as_str) != Some(nick) {
        return None;
    }
    let answerer = room
        .occupants
        .values()
        .find(|o| match from.try_as_full() {
            Ok(full) => o.visits.iter().any(|v| &v.jid == full),
            Err(bare) => &o.account == bare,
        })?
        .nick
        .clone();
    room.relays.remove(position);
    let mut answer = stanza.clone();
    answer.el_mut().set_attr("id", id);
    answer.set_from(&Jid::from(room.occupant_jid(&answerer)?));
    answer.set_to(Jid::from(requester));
    Some(answer)
}
