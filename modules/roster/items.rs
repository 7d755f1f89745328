//! Roster items and the shared roster service.

use crate::module_api::{
    BareJid, Element, Entries, KeyVal, Map, NS_CLIENT, ServerHandle, Stanza, StanzaKind, StorageError, Value, ns,
    random_id,
};
use serde::{Deserialize, Serialize};

/// Subscription state of an item (RFC 6121 §2.1.2.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subscription {
    /// Neither direction.
    #[default]
    None,
    /// The user receives the contact's presence.
    To,
    /// The contact receives the user's presence.
    From,
    /// Both directions.
    Both,
}

impl Subscription {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    /// Whether the user receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// Whether the contact receives the user's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    /// The state with the `to` direction set or cleared.
    pub fn with_to(self, on: bool) -> Subscription {
        Subscription::from_flags(on, self.has_from())
    }

    /// The state with the `from` direction set or cleared.
    pub fn with_from(self, on: bool) -> Subscription {
        Subscription::from_flags(self.has_to(), on)
    }

    fn from_flags(to: bool, from: bool) -> Subscription {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }
}

/// One roster item, as stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Handle chosen by the user.
    pub name: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Subscription state.
    pub subscription: Subscription,
    /// An outbound subscription request is pending (`ask='subscribe'`).
    pub ask: bool,
    /// The user pre-approved the contact's subscription request (RFC 6121 §3.4).
    pub approved: bool,
}

impl Item {
    /// The `<item/>` element for results and pushes.
    pub fn to_element(&self, jid: &str) -> Element {
        let mut el = Element::new("item", ns::ROSTER).with_attr("jid", jid);
        if let Some(name) = &self.name {
            el.set_attr("name", name);
        }
        el.set_attr("subscription", self.subscription.as_str());
        if self.ask {
            el.set_attr("ask", "subscribe");
        }
        if self.approved {
            el.set_attr("approved", "true");
        }
        for group in &self.groups {
            el.push_child(Element::new("group", ns::ROSTER).with_text(group));
        }
        el
    }
}

/// The roster service shared with other modules of the domain.
pub struct Roster {
    items: Map,
    versions: KeyVal,
    server: ServerHandle,
}

fn decode_items(entries: Entries) -> Result<Vec<(String, Item)>, StorageError> {
    entries.into_iter().map(|(jid, value)| Ok((jid, value.to_json::<Item>()?))).collect()
}

fn user_of(account: &BareJid) -> &str {
    account.node().map(|n| n.as_str()).unwrap_or_default()
}

impl Roster {
    /// Builds the service over its stores.
    pub fn new(items: Map, versions: KeyVal, server: ServerHandle) -> Roster {
        Roster { items, versions, server }
    }

    /// Every item of an account, by contact bare JID.
    pub async fn items(&self, account: &BareJid) -> Result<Vec<(String, Item)>, StorageError> {
        decode_items(self.items.get_all(user_of(account)).await?)
    }

    /// Every item of an account, and the account's entries in another module's map store of
    /// the same domain, read together (see [`Map::get_all_with`]).
    pub async fn items_with(
        &self,
        account: &BareJid,
        other: &Map,
    ) -> Result<(Vec<(String, Item)>, Entries), StorageError> {
        let (items, others) = self.items.get_all_with(other, user_of(account)).await?;
        Ok((decode_items(items)?, others))
    }

    /// One item.
    pub async fn get(&self, account: &BareJid, contact: &BareJid) -> Result<Option<Item>, StorageError> {
        match self.items.get(user_of(account), contact.as_str()).await? {
            Some(value) => Ok(Some(value.to_json::<Item>()?)),
            None => Ok(None),
        }
    }

    /// The current roster version.
    pub async fn version(&self, account: &BareJid) -> Result<u64, StorageError> {
        Ok(match self.versions.get(user_of(account)).await? {
            Some(value) => value.to_json::<u64>()?,
            None => 0,
        })
    }

    /// Stores (or, with `None`, removes) an item, bumps the version and pushes the change.
    pub async fn set(&self, account: &BareJid, contact: &BareJid, item: Option<&Item>) -> Result<(), StorageError> {
        let user = user_of(account);
        let value = item.map(Value::json).transpose()?;
        self.items.set(user, contact.as_str(), value.as_ref()).await?;
        let version = self.version(account).await? + 1;
        self.versions.set(user, Some(&Value::json(&version)?)).await?;
        let pushed = match item {
            Some(item) => item.to_element(contact.as_str()),
            None => {
                Element::new("item", ns::ROSTER).with_attr("jid", contact.as_str()).with_attr("subscription", "remove")
            }
        };
        self.push(account, pushed, version);
        Ok(())
    }

    /// Sends a roster push to every session of the account that requested the roster.
    fn push(&self, account: &BareJid, item: Element, version: u64) {
        let query = Element::new("query", ns::ROSTER).with_attr("ver", version.to_string()).with_child(item);
        for session in self.server.sessions_of(account) {
            if !session.state().roster_requested {
                continue;
            }
            let push = Element::new("iq", NS_CLIENT)
                .with_attr("type", "set")
                .with_attr("id", format!("push-{}", random_id(6)))
                .with_attr("from", account.as_str())
                .with_attr("to", session.jid.as_str())
                .with_child(query.clone());
            session.send_element(push);
        }
    }

    /// Routes a presence of `kind` from the account to a contact (subscription management).
    pub async fn send_presence(&self, account: &BareJid, contact: &BareJid, kind: &str) {
        let el = Element::new("presence", NS_CLIENT)
            .with_attr("type", kind)
            .with_attr("from", account.as_str())
            .with_attr("to", contact.as_str());
        self.server.route(Stanza::new(StanzaKind::Presence, el)).await;
    }
}
