//! Offline message storage (XEP-0160): messages for an account with no resource that takes
//! them are kept and delivered, oldest first, when a session of the account sends initial
//! presence.
//!
//! Flow: the router's RFC 6121 §8.5.2.2 rule raises [`MessageUndeliverable`]; this module
//! decides whether the message is worth keeping (chat states alone and `<no-store/>` hints,
//! XEP-0085 §5.6 and XEP-0334, are not; receipts and chat markers are), stamps it with a
//! `<delay/>` (XEP-0203) and a `<stanza-id/>` (XEP-0359), and appends it to the account's
//! `offline` archive. When the account is over its quota the sender gets
//! `service-unavailable` (XEP-0160 §3). On [`InitialPresence`] the messages are sent to that
//! session in order and then removed. An expiry job deletes messages older than `retention`.

mod policy;

use crate::module_api::{
    Archive, ArchiveQuery, BoxFuture, ConfigDuration, Element, Flow, Hook, InitialPresence, MessageUndeliverable,
    ModuleDescriptor, ModuleError, NewItem, PeriodicTask, Registrar, ServerHandle, Stanza, StanzaError, Value,
    check_section, datetime, now_micros, ns, priority, random_id,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "offline",
    xeps: &["XEP-0160", "XEP-0203", "XEP-0359"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<Options>,
    build,
};

/// `[modules.offline]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct Options {
    /// Most messages kept per account; further messages bounce with service-unavailable.
    pub max_messages_per_user: usize,
    /// Messages older than this are deleted by the expiry job.
    pub retention: ConfigDuration,
    /// How often the expiry job runs.
    pub expiry_interval: ConfigDuration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_messages_per_user: 10_000,
            retention: ConfigDuration(Duration::from_secs(365 * 86_400)),
            expiry_interval: ConfigDuration(Duration::from_secs(3600)),
        }
    }
}

/// Messages delivered per storage read at login.
const DELIVERY_PAGE: usize = 100;

struct Offline {
    store: Archive,
    domain: String,
    max: usize,
    retention: Duration,
    server: ServerHandle,
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let options: Options = r.config()?;
    let offline = Arc::new(Offline {
        store: r.archive("offline"),
        domain: r.domain().to_owned(),
        max: options.max_messages_per_user,
        retention: options.retention.get(),
        server: r.server(),
    });
    r.hook::<MessageUndeliverable>(priority::DELIVERY, offline.clone());
    r.hook::<InitialPresence>(priority::DELIVERY, offline.clone());
    r.every(options.expiry_interval.get(), offline);
    r.feature("msgoffline");
    // XEP-0359 §6: the entity named in `by` (the account) advertises stanza-id support.
    r.account_feature(ns::SID);
    Ok(())
}

impl Offline {
    /// Stores a message; `Err` is the error for the sender.
    async fn store(&self, stanza: &Stanza, user: &str, account: &str) -> Result<(), StanzaError> {
        let held = self.store.count(user, &ArchiveQuery::default()).await.map_err(internal)?;
        if held >= self.max {
            return Err(StanzaError::service_unavailable().with_text("offline storage is full"));
        }
        let id = random_id(12);
        let mut el = stanza.to_element();
        el.push_child(
            Element::new("delay", ns::DELAY)
                .with_attr("from", self.domain.as_str())
                .with_attr("stamp", datetime(now_micros()))
                .with_text("Offline Storage"),
        );
        el.push_child(Element::new("stanza-id", ns::SID).with_attr("by", account).with_attr("id", id.as_str()));
        let with = stanza.from().map(|f| f.to_bare().to_string()).unwrap_or_default();
        let item = NewItem { key: Some(id), when: now_micros(), with, value: Value::xml(el.to_bytes("")) };
        self.store.append(user, &item).await.map_err(internal)?;
        Ok(())
    }

    /// Sends every stored message to the session, oldest first, removing each page once it
    /// has been queued. Stops (keeping the rest) if the session goes away.
    async fn deliver(&self, session: &crate::module_api::SessionRef) {
        let Some(user) = session.jid.node().map(|n| n.as_str().to_owned()) else { return };
        loop {
            let query = ArchiveQuery { limit: Some(DELIVERY_PAGE), ..ArchiveQuery::default() };
            let page = match self.store.find(&user, &query).await {
                Ok(page) => page,
                Err(e) => return tracing::error!(error = %e, "offline: reading stored messages failed"),
            };
            let mut delivered = Vec::with_capacity(page.items.len());
            for item in &page.items {
                let Ok(mut el) = Element::parse(&item.value.data) else {
                    tracing::warn!(key = %item.key, "offline: dropping an unreadable stored message");
                    delivered.push(item.key.clone());
                    continue;
                };
                el.set_attr("to", session.jid.as_str());
                if !session.send_element(el) {
                    break;
                }
                delivered.push(item.key.clone());
            }
            if let Err(e) = self.store.delete_by_keys(&user, &delivered).await {
                return tracing::error!(error = %e, "offline: removing delivered messages failed");
            }
            if page.complete || delivered.len() < page.items.len() {
                return;
            }
        }
    }
}

fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "offline storage failed");
    StanzaError::internal_server_error()
}

impl Hook<MessageUndeliverable> for Offline {
    fn call<'a>(&'a self, event: &'a mut MessageUndeliverable) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            if !policy::worth_storing(event.stanza.el()) {
                return Flow::Handled; // dropped silently, like a chat state to an offline contact
            }
            let Some(user) = event.to.node().map(|n| n.as_str().to_owned()) else { return Flow::Continue };
            if let Err(error) = self.store(&event.stanza, &user, event.to.as_str()).await
                && let Some(reply) = error.reply_to(&event.stanza)
            {
                self.server.route(reply).await;
            }
            Flow::Handled
        })
    }
}

impl Hook<InitialPresence> for Offline {
    fn call<'a>(&'a self, event: &'a mut InitialPresence) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            self.deliver(&event.session).await;
            Flow::Continue
        })
    }
}

impl PeriodicTask for Offline {
    fn run(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let cutoff = now_micros() - i64::try_from(self.retention.as_micros()).unwrap_or(i64::MAX);
            match self.store.delete_older_than(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, domain = %self.domain, "offline: expired messages removed"),
                Err(e) => tracing::error!(error = %e, "offline: expiry failed"),
            }
        })
    }
}
