//! Presence sent by a local client (RFC 6121 §3.1.2, §3.2.2, §3.3.2, §3.4, §4.2, §4.4, §4.6).

use super::super::roster::Item;
use super::{Presence, log_storage};
use crate::module_api::{
    BareJid, Element, Entries, InitialPresence, Jid, NS_CLIENT, SessionRef, Stanza, StanzaKind, ToBare, Value,
};

/// The priority of an available presence (§4.7.2.3), clamped to −128..=127, default 0.
fn priority_of(el: &Element) -> i8 {
    el.get_child("priority", NS_CLIENT)
        .and_then(|p| p.text().trim().parse::<i64>().ok())
        .map(|p| p.clamp(-128, 127) as i8)
        .unwrap_or(0)
}

impl Presence {
    pub(super) async fn outbound(&self, session: &SessionRef, stanza: &Stanza) {
        let kind = stanza.type_attr().map(str::to_owned);
        match (stanza.to(), kind.as_deref()) {
            (None, None | Some("unavailable")) => self.broadcast(session, stanza.el().clone()).await,
            (None, _) => {}
            (Some(to), None | Some("unavailable")) => self.directed(session, stanza, to).await,
            (Some(to), Some(kind @ ("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed"))) => {
                self.subscription_out(&session.jid.bare(), &to.bare(), kind, stanza).await;
            }
            (Some(_), Some("error")) => self.server.route(stanza.clone()).await,
            // Clients do not send probes (§4.3); anything else is not presence we know.
            (Some(_), _) => {}
        }
    }

    /// Broadcast of available or unavailable presence (§4.2.2, §4.4.2, §4.5.2).
    pub(super) async fn broadcast(&self, session: &SessionRef, mut el: Element) {
        el.remove_attr("to");
        let available = el.attr("type").is_none();
        let was_available = session.is_available();
        let directed = {
            let mut state = session.state();
            if available {
                state.priority = priority_of(&el);
                // Initial presence: stored messages go first (see InitialPresence below).
                state.catching_up |= state.available.is_none();
                state.available = Some(el.clone());
                Vec::new()
            } else {
                state.available = None;
                state.priority = 0;
                std::mem::take(&mut state.directed_to)
            }
        };
        let account = session.jid.bare();
        let initial = available && !was_available;
        let (items, requests) = self.roster_of(&account, initial).await;
        // One body for every copy, serialised once.
        let presence = Stanza::new(StanzaKind::Presence, el);
        presence.prepare_wire();
        for (contact, item) in &items {
            if item.subscription.has_from() {
                self.send_from(session, &presence, contact).await;
            }
        }
        for target in directed {
            if !items.iter().any(|(c, i)| i.subscription.has_from() && Some(c.as_str()) == Some(target.bare().as_str()))
            {
                self.send_from(session, &presence, target.as_str()).await;
            }
        }
        for own in self.server.sessions_of(&account) {
            // A newer session bound to the same resource (a reconnect that replaced this one)
            // must not see its own full JID go unavailable.
            let replacement = own.jid == session.jid && own.id != session.id;
            if (own.is_available() || own.id == session.id) && !replacement {
                self.send_from(session, &presence, own.jid.as_str()).await;
            }
        }
        if initial {
            self.initial(session, &account, &items, requests).await;
        }
    }

    /// The account's roster and, at initial presence, its unanswered subscription requests
    /// (§3.1.3), read together; on a storage failure, what could not be read is empty.
    async fn roster_of(&self, account: &BareJid, initial: bool) -> (Vec<(String, Item)>, Entries) {
        let read = if initial {
            self.roster.items_with(account, &self.pending).await
        } else {
            self.roster.items(account).await.map(|items| (items, Vec::new()))
        };
        read.unwrap_or_else(|e| {
            log_storage(e);
            (Vec::new(), Vec::new())
        })
    }

    /// After initial presence: probe contacts (§4.3), show the user's other resources, and
    /// redeliver unanswered subscription requests (§3.1.3).
    async fn initial(&self, session: &SessionRef, account: &BareJid, items: &[(String, Item)], requests: Entries) {
        for (contact, item) in items {
            if item.subscription.has_to() {
                let probe = Element::new("presence", NS_CLIENT)
                    .with_attr("type", "probe")
                    .with_attr("from", account.as_str())
                    .with_attr("to", contact);
                self.server.route(Stanza::new(StanzaKind::Presence, probe)).await;
            }
        }
        for other in self.server.sessions_of(account) {
            if other.id == session.id {
                continue;
            }
            let Some(mut el) = other.state().available.clone() else { continue };
            el.set_attr("from", other.jid.as_str());
            el.set_attr("to", session.jid.as_str());
            session.send_element(el);
        }
        for (_, request) in requests {
            if let Ok(el) = Element::parse(&request.data) {
                session.send_element(el);
            }
        }
        let mut event = InitialPresence { session: session.clone() };
        self.server.fire(account.domain().as_str(), &mut event).await;
        // Whoever sends stored messages ends the catching up when done; without such a
        // module, it ends here.
        session.state().catching_up = false;
    }

    /// Directed presence (§4.6): routed, and remembered for the unavailable at session end.
    async fn directed(&self, session: &SessionRef, stanza: &Stanza, to: Jid) {
        {
            let mut state = session.state();
            state.directed_to.retain(|j| j != &to);
            if stanza.type_attr().is_none() {
                state.directed_to.push(to.clone());
            }
        }
        self.server.route(stanza.clone()).await;
    }

    /// Outbound subscription stanzas (§3): update the user's roster, then route with the
    /// user's bare JID as `from` (§3.1.2).
    async fn subscription_out(&self, account: &BareJid, contact: &BareJid, kind: &str, stanza: &Stanza) {
        let route = match self.apply_outbound(account, contact, kind).await {
            Ok(route) => route,
            Err(e) => return log_storage(e),
        };
        if !route {
            return; // pre-approval only: nothing to tell the contact yet (§3.4)
        }
        let mut routed = stanza.clone();
        routed.set_from(&Jid::from(account.clone()));
        routed.set_to(Jid::from(contact.clone()));
        self.server.route(routed).await;
        match kind {
            "subscribed" => self.send_current_presence(account, contact, false).await,
            "unsubscribed" => self.send_current_presence(account, contact, true).await,
            _ => {}
        }
    }

    /// Updates the roster for an outbound subscription stanza; returns whether to route it
    /// (a `subscribed` with no request to answer is a pre-approval and stays local).
    async fn apply_outbound(
        &self,
        account: &BareJid,
        contact: &BareJid,
        kind: &str,
    ) -> Result<bool, crate::module_api::StorageError> {
        let user = account.node().map(|n| n.as_str()).unwrap_or_default().to_owned();
        let existing = self.roster.get(account, contact).await?;
        let mut item = existing.clone().unwrap_or_default();
        let had_request = self.pending.get(&user, contact.as_str()).await?.is_some();
        match kind {
            "subscribe" if !item.subscription.has_to() => item.ask = true,
            "subscribed" if had_request => {
                item.subscription = item.subscription.with_from(true);
                item.approved = false;
                self.pending.set(&user, contact.as_str(), None).await?;
            }
            "subscribed" if !item.subscription.has_from() => item.approved = true,
            "unsubscribe" => {
                item.subscription = item.subscription.with_to(false);
                item.ask = false;
            }
            "unsubscribed" => {
                item.subscription = item.subscription.with_from(false);
                item.approved = false;
                self.pending.set(&user, contact.as_str(), None).await?;
            }
            _ => {}
        }
        if existing.as_ref() != Some(&item) && (existing.is_some() || kind != "unsubscribe" && kind != "unsubscribed") {
            self.roster.set(account, contact, Some(&item)).await?;
        }
        Ok(kind != "subscribed" || had_request)
    }

    /// After approving (or cancelling) a subscription, the contact gets the user's current
    /// presence from each available resource (or unavailable) (§3.1.5, §3.2.2).
    pub(super) async fn send_current_presence(&self, account: &BareJid, contact: &BareJid, unavailable: bool) {
        for session in self.server.sessions_of(account) {
            let presence = session.state().available.clone();
            let el = match (presence, unavailable) {
                (Some(el), false) => el,
                (Some(_), true) => Element::new("presence", NS_CLIENT).with_attr("type", "unavailable"),
                (None, _) => continue,
            };
            self.send_from(&session, &Stanza::new(StanzaKind::Presence, el), contact.as_str()).await;
        }
    }

    /// Stores an inbound subscription request until it is answered.
    pub(super) async fn remember_request(&self, account: &BareJid, contact: &BareJid, request: &Element) {
        let user = account.node().map(|n| n.as_str()).unwrap_or_default();
        // Serialised with its namespace declared, so that it parses back as a jabber:client stanza.
        let value = Value::xml(request.to_bytes(""));
        if let Err(e) = self.pending.set(user, contact.as_str(), Some(&value)).await {
            log_storage(e);
        }
    }
}
