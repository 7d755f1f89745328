//! `jabber:iq:roster` get and set (RFC 6121 §2.1.3, §2.3, §2.5).

use super::items::{Item, Roster};
use crate::module_api::{BareJid, BoxFuture, Element, IqHandler, IqKind, IqRequest, IqResult, StanzaError, ToBare, ns};
use std::sync::Arc;

pub(super) struct RosterQuery {
    pub roster: Arc<Roster>,
}

impl IqHandler for RosterQuery {
    fn handle<'a>(&'a self, iq: &'a IqRequest) -> BoxFuture<'a, IqResult> {
        Box::pin(async move {
            let account = iq.from.bare();
            match iq.kind {
                IqKind::Get => self.get(iq, &account).await,
                IqKind::Set => self.set(iq, &account).await,
            }
        })
    }
}

fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "roster storage failed");
    StanzaError::internal_server_error()
}

impl RosterQuery {
    async fn get(&self, iq: &IqRequest, account: &BareJid) -> IqResult {
        if let Some(session) = &iq.session {
            session.state().roster_requested = true;
        }
        let version = self.roster.version(account).await.map_err(internal)?.to_string();
        // RFC 6121 §2.6.3: an up-to-date client gets an empty result and then pushes.
        if iq.payload.attr("ver") == Some(version.as_str()) {
            return Ok(None);
        }
        let mut query = Element::new("query", ns::ROSTER);
        if iq.payload.attr("ver").is_some() {
            query.set_attr("ver", &version);
        }
        for (jid, item) in self.roster.items(account).await.map_err(internal)? {
            query.push_child(item.to_element(&jid));
        }
        Ok(Some(query))
    }

    async fn set(&self, iq: &IqRequest, account: &BareJid) -> IqResult {
        let mut items = iq.payload.child_elements().filter(|c| c.name == "item" && c.ns == ns::ROSTER);
        let (Some(item), None) = (items.next(), items.next()) else {
            return Err(StanzaError::bad_request().with_text("exactly one item is required"));
        };
        let contact = item
            .attr("jid")
            .and_then(|j| BareJid::new(j).ok())
            .ok_or_else(|| StanzaError::bad_request().with_text("item needs a bare jid"))?;
        if &contact == account {
            return Err(StanzaError::not_allowed().with_text("the account itself cannot be a contact"));
        }
        let existing = self.roster.get(account, &contact).await.map_err(internal)?;
        if item.attr("subscription") == Some("remove") {
            return self.remove(account, &contact, existing).await;
        }
        let groups = groups_of(item)?;
        let mut updated = existing.unwrap_or_default();
        updated.name = item.attr("name").filter(|n| !n.is_empty()).map(str::to_owned);
        updated.groups = groups;
        self.roster.set(account, &contact, Some(&updated)).await.map_err(internal)?;
        Ok(None)
    }

    /// Removal (§2.5): the contact loses both subscription directions.
    async fn remove(&self, account: &BareJid, contact: &BareJid, existing: Option<Item>) -> IqResult {
        let Some(existing) = existing else {
            return Err(StanzaError::item_not_found());
        };
        self.roster.set(account, contact, None).await.map_err(internal)?;
        if existing.subscription.has_to() || existing.ask {
            self.roster.send_presence(account, contact, "unsubscribe").await;
        }
        if existing.subscription.has_from() {
            self.roster.send_presence(account, contact, "unsubscribed").await;
        }
        Ok(None)
    }
}

/// Groups of an item: no empty names (`not-acceptable`), no duplicates (`bad-request`).
fn groups_of(item: &Element) -> Result<Vec<String>, StanzaError> {
    let mut groups: Vec<String> = Vec::new();
    for group in item.child_elements().filter(|c| c.name == "group") {
        let name = group.text();
        if name.is_empty() {
            return Err(StanzaError::not_acceptable().with_text("empty group name"));
        }
        if groups.contains(&name) {
            return Err(StanzaError::bad_request().with_text("duplicate group"));
        }
        groups.push(name);
    }
    Ok(groups)
}
