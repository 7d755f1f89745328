//! Presence addressed to a local account (RFC 6121 §3.1.3, §3.1.6, §3.2.3, §3.3.3, §4.3.2,
//! §4.5.3, §8.5.2.1.2).

use super::{Presence, log_storage};
use crate::module_api::{BareJid, Element, Jid, NS_CLIENT, Stanza, ToBare};

impl Presence {
    pub(super) async fn inbound(&self, stanza: &Stanza, to: &Jid) {
        let Some(from) = stanza.from() else { return };
        let account = to.bare();
        let contact = from.bare();
        match stanza.type_attr() {
            None | Some("unavailable") | Some("error") => self.deliver(stanza, to),
            Some("probe") => self.answer_probe(&account, &from).await,
            Some("subscribe") => self.subscribe_in(stanza, &account, &contact).await,
            Some(kind @ ("subscribed" | "unsubscribe" | "unsubscribed")) => {
                match self.apply_inbound(&account, &contact, kind).await {
                    Ok(true) => self.deliver(stanza, &Jid::from(account)),
                    Ok(false) => {}
                    Err(e) => log_storage(e),
                }
            }
            Some(_) => {}
        }
    }

    /// To a full JID: that resource; to a bare JID: every available resource (§8.5.2.1.2).
    fn deliver(&self, stanza: &Stanza, to: &Jid) {
        match to.try_as_full() {
            Ok(full) => {
                if let Some(session) = self.server.session(full) {
                    session.send(stanza.clone());
                }
            }
            Err(bare) => {
                stanza.prepare_wire();
                for session in self.server.sessions_of(bare) {
                    if session.is_available() {
                        let mut copy = stanza.clone();
                        copy.set_to(Jid::from(session.jid.clone()));
                        session.send(copy);
                    }
                }
            }
        }
    }

    /// Probes are answered only for contacts with a subscription from the account (§4.3.2):
    /// with the presence of each available resource, or, when there is none, with
    /// unavailable presence from the bare JID so that the prober knows (§4.3.2.1).
    async fn answer_probe(&self, account: &BareJid, prober: &Jid) {
        let authorized = match self.roster.get(account, &prober.bare()).await {
            Ok(item) => item.is_some_and(|i| i.subscription.has_from()) || &prober.bare() == account,
            Err(e) => return log_storage(e),
        };
        if !authorized {
            return;
        }
        let mut answered = false;
        for session in self.server.sessions_of(account) {
            let Some(el) = session.state().available.clone() else { continue };
            self.send_from(&session, &Stanza::new(crate::module_api::StanzaKind::Presence, el), prober.as_str()).await;
            answered = true;
        }
        if !answered && &prober.bare() != account {
            let unavailable = Element::new("presence", NS_CLIENT)
                .with_attr("type", "unavailable")
                .with_attr("from", account.as_str())
                .with_attr("to", prober.as_str());
            self.server.route(Stanza::new(crate::module_api::StanzaKind::Presence, unavailable)).await;
        }
    }

    /// An inbound subscription request (§3.1.3): answered automatically when the contact is
    /// already subscribed or pre-approved, otherwise kept and shown to the user's clients.
    async fn subscribe_in(&self, stanza: &Stanza, account: &BareJid, contact: &BareJid) {
        match self.server.account_exists(account).await {
            Ok(true) => {}
            Ok(false) => return self.roster.send_presence(account, contact, "unsubscribed").await,
            Err(e) => return log_storage(e),
        }
        let item = match self.roster.get(account, contact).await {
            Ok(item) => item,
            Err(e) => return log_storage(e),
        };
        if item.as_ref().is_some_and(|i| i.subscription.has_from()) {
            return self.roster.send_presence(account, contact, "subscribed").await;
        }
        if let Some(mut item) = item.filter(|i| i.approved) {
            item.approved = false;
            item.subscription = item.subscription.with_from(true);
            if let Err(e) = self.roster.set(account, contact, Some(&item)).await {
                return log_storage(e);
            }
            self.roster.send_presence(account, contact, "subscribed").await;
            return self.send_current_presence(account, contact, false).await;
        }
        let mut request = stanza.clone();
        request.set_from(&Jid::from(contact.clone()));
        request.set_to(Jid::from(account.clone()));
        self.remember_request(account, contact, &request.to_element()).await;
        self.deliver(&request, &Jid::from(account.clone()));
    }

    /// Roster changes for inbound `subscribed`, `unsubscribe` and `unsubscribed`; returns
    /// whether the stanza is delivered to the user (only when it changed something).
    async fn apply_inbound(
        &self,
        account: &BareJid,
        contact: &BareJid,
        kind: &str,
    ) -> Result<bool, crate::module_api::StorageError> {
        let user = account.node().map(|n| n.as_str()).unwrap_or_default().to_owned();
        let Some(mut item) = self.roster.get(account, contact).await? else {
            if kind == "unsubscribe" {
                // A pending request withdrawn before the user saw it (§3.3.3).
                self.pending.set(&user, contact.as_str(), None).await?;
            }
            return Ok(false);
        };
        let before = item.clone();
        match kind {
            "subscribed" if item.ask => {
                item.subscription = item.subscription.with_to(true);
                item.ask = false;
            }
            "unsubscribe" => {
                item.subscription = item.subscription.with_from(false);
                item.approved = false;
                self.pending.set(&user, contact.as_str(), None).await?;
            }
            "unsubscribed" => {
                item.subscription = item.subscription.with_to(false);
                item.ask = false;
            }
            _ => {}
        }
        if item == before {
            return Ok(false);
        }
        self.roster.set(account, contact, Some(&item)).await?;
        if kind == "unsubscribed" {
            // The user's clients learn the contact is gone (§3.2.3).
            let mut unavailable = Element::new("presence", NS_CLIENT).with_attr("type", "unavailable");
            unavailable.set_attr("from", contact.as_str());
            self.deliver(
                &Stanza::new(crate::module_api::StanzaKind::Presence, unavailable),
                &Jid::from(account.clone()),
            );
        }
        Ok(true)
    }
}
