//! The room archive: archive queries on the room JID (XEP-0313 §4, as the MUC archive of
//! §5) and the history a persistent room gets back when it is loaded.
//!
//! Group messages are archived by [`super::message`] under the room's stanza-id with the
//! occupant JID as `with`. Anyone who may enter the room may query it: not outcasts, and in
//! a members-only room only members. Results come from the room JID with the archived message
//! (as broadcast, no real JIDs) inside `<forwarded/>`.

use super::Muc;
use super::room::{Affiliation, HistoryItem, Room, RoomConfig};
use crate::module_api::{ArchiveQuery, Element, FullJid, Jid, Stanza, StanzaError, StanzaKind, ToBare};
use std::collections::VecDeque;

use super::super::mam::query;
pub use super::super::mam::query::NS_MAM;
use super::room_iq::IqOutcome;

impl Muc {
    pub(super) async fn archive_query(&self, room: &Room, from: &FullJid, payload: &Element, get: bool) -> IqOutcome {
        let affiliation = room.affiliation(&from.bare());
        // A password keeps outsiders out of the archive as it does out of the room.
        let knows_password =
            room.config().password.is_none() || affiliation >= Affiliation::Member || room.occupant_of(from).is_some();
        if affiliation == Affiliation::Outcast || !room.may_enter(affiliation) || !knows_password {
            return Err(StanzaError::forbidden().with_text("only those who may enter may read the archive")).into();
        }
        if get {
            return Ok(Some(query::form())).into();
        }
        let parsed = match query::parse(payload) {
            Ok(parsed) => parsed,
            Err(error) => return Err(error).into(),
        };
        let node = room.jid.node().map(|n| n.as_str().to_owned()).unwrap_or_default();
        self.archive.commits().flush().await;
        let page = match self.archive.find(&node, &parsed.archive).await {
            Ok(page) => page,
            Err(e) => return Err(super::super::mam::internal(e)).into(),
        };
        let count_query =
            ArchiveQuery { after: None, before: None, limit: None, reverse: false, ..parsed.archive.clone() };
        let count = match self.archive.count(&node, &count_query).await {
            Ok(count) => count,
            Err(e) => return Err(super::super::mam::internal(e)).into(),
        };
        let (archive, to) = (Jid::from(room.jid.clone()), Jid::from(from.clone()));
        let out = page
            .items
            .iter()
            .filter_map(|item| query::result_message(item, parsed.query_id.as_deref(), &archive, &to))
            .collect();
        let first_last = page.items.first().zip(page.items.last()).map(|(f, l)| (f.key.as_str(), l.key.as_str()));
        IqOutcome { reply: Ok(Some(query::fin(first_last, count, page.complete))), out }
    }

    /// The last messages of a room's archive as its history, for a room loaded from storage.
    pub(super) async fn load_history(&self, node: &str, config: &RoomConfig) -> VecDeque<HistoryItem> {
        if !config.archive || config.history_length == 0 {
            return VecDeque::new();
        }
        let query = ArchiveQuery { limit: Some(config.history_length), reverse: true, ..ArchiveQuery::default() };
        let page = match self.archive.find(node, &query).await {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(room = node, error = %e, "muc: reading history failed");
                return VecDeque::new();
            }
        };
        let room = format!("{node}@{}", self.service);
        page.items
            .iter()
            .filter_map(|item| {
                let el = Element::parse(&item.value.data).ok()?;
                Some(HistoryItem::new(&room, &Stanza::new(StanzaKind::Message, el), item.when))
            })
            .collect()
    }
}
