//! The blocklists and the `urn:xmpp:blocking` IQs (XEP-0191 §3.1–§3.4).

use crate::module_api::{
    BareJid, BoxFuture, Element, IqHandler, IqKind, IqRequest, IqResult, Jid, Map, NS_CLIENT, ServerHandle, Stanza,
    StanzaError, StanzaKind, ToBare, Value, ns, random_id,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Cached entries beyond which the cache is cleared rather than grown.
const CACHE_LIMIT: usize = 50_000;

/// Blocklists of a domain's accounts.
pub(super) struct Blocklists {
    store: Map,
    server: ServerHandle,
    cache: Mutex<HashMap<String, Arc<BTreeSet<String>>>>,
}

fn user_of(account: &BareJid) -> String {
    account.node().map(|n| n.as_str().to_owned()).unwrap_or_default()
}

fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "blocklist storage failed");
    StanzaError::internal_server_error()
}

/// XEP-0016 §2.1 matching of a blocklist item against an address.
fn matches(item: &str, address: &Jid) -> bool {
    let Ok(item) = Jid::new(item) else { return false };
    match (item.node(), item.resource()) {
        (None, None) => item.domain() == address.domain(),
        (Some(_), None) => item.bare() == address.bare(),
        _ => &item == address,
    }
}

impl Blocklists {
    pub(super) fn new(store: Map, server: ServerHandle) -> Blocklists {
        Blocklists { store, server, cache: Mutex::default() }
    }

    async fn list(&self, account: &BareJid) -> Result<Arc<BTreeSet<String>>, crate::module_api::StorageError> {
        let user = user_of(account);
        if let Some(list) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&user) {
            return Ok(list.clone());
        }
        let list: Arc<BTreeSet<String>> =
            Arc::new(self.store.get_all(&user).await?.into_iter().map(|(k, _)| k).collect());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(user, list.clone());
        Ok(list)
    }

    /// Whether `account` blocks `address`. Storage failures block nothing (and are logged).
    pub(super) async fn blocks(&self, account: &BareJid, address: &Jid) -> bool {
        match self.list(account).await {
            Ok(list) => list.iter().any(|item| matches(item, address)),
            Err(e) => {
                tracing::error!(error = %e, "blocklist lookup failed");
                false
            }
        }
    }

    /// `service-unavailable` for a blocked message or IQ request (§3.5).
    pub(super) async fn bounce(&self, stanza: &Stanza) {
        if let Some(reply) = StanzaError::service_unavailable().reply_to(stanza) {
            self.server.route(reply).await;
        }
    }

    fn forget(&self, account: &BareJid) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&user_of(account));
    }

    fn push(&self, account: &BareJid, payload: &Element) {
        for session in self.server.sessions_of(account) {
            let push = Element::new("iq", NS_CLIENT)
                .with_attr("type", "set")
                .with_attr("id", format!("block-{}", random_id(6)))
                .with_attr("to", session.jid.as_str())
                .with_child(payload.clone());
            session.send_element(push);
        }
    }

    async fn change(&self, iq: &IqRequest) -> IqResult {
        let account = iq.from.bare();
        let user = user_of(&account);
        let block = iq.payload.name == "block";
        let mut items = Vec::new();
        for item in iq.payload.child_elements().filter(|c| c.name == "item") {
            let jid = item.attr("jid").and_then(|j| Jid::new(j).ok()).ok_or_else(StanzaError::jid_malformed)?;
            items.push(jid);
        }
        if block && items.is_empty() {
            return Err(StanzaError::bad_request().with_text("block needs at least one item"));
        }
        if !block && items.is_empty() {
            // §3.4: an empty unblock clears the whole list.
            self.store.delete_all(&user).await.map_err(internal)?;
        }
        for jid in &items {
            let value = block.then(|| Value::text(""));
            self.store.set(&user, jid.as_str(), value.as_ref()).await.map_err(internal)?;
        }
        self.forget(&account);
        self.push(&account, &iq.payload);
        if block {
            self.hide_presence_from(&account, &items).await;
        }
        Ok(None)
    }

    /// A newly blocked contact sees the account go offline (§3.3.2).
    async fn hide_presence_from(&self, account: &BareJid, items: &[Jid]) {
        for session in self.server.sessions_of(account) {
            if !session.is_available() {
                continue;
            }
            for jid in items {
                let el = Element::new("presence", NS_CLIENT)
                    .with_attr("type", "unavailable")
                    .with_attr("from", session.jid.as_str())
                    .with_attr("to", jid.as_str());
                self.server.route(Stanza::new(StanzaKind::Presence, el)).await;
            }
        }
    }
}

impl IqHandler for Blocklists {
    fn handle<'a>(&'a self, iq: &'a IqRequest) -> BoxFuture<'a, IqResult> {
        Box::pin(async move {
            if iq.kind == IqKind::Set {
                return self.change(iq).await;
            }
            let list = self.list(&iq.from.bare()).await.map_err(internal)?;
            let mut blocklist = Element::new("blocklist", ns::BLOCKING);
            for jid in list.iter() {
                blocklist.push_child(Element::new("item", ns::BLOCKING).with_attr("jid", jid));
            }
            Ok(Some(blocklist))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_match_like_privacy_lists() {
        let address = Jid::new("romeo@example.net/orchard").unwrap();
        assert!(matches("example.net", &address));
        assert!(matches("romeo@example.net", &address));
        assert!(matches("romeo@example.net/orchard", &address));
        assert!(!matches("romeo@example.net/garden", &address));
        assert!(!matches("juliet@example.net", &address));
        assert!(!matches("example.org", &address));
    }
}
