//! Presence (RFC 6121 §3 subscriptions, §4 exchanging presence).
//!
//! Outbound, from a client: presence without `to` is broadcast to the contacts subscribed to
//! the user (`from`/`both`) and the user's own available resources; the first available
//! presence of a session (initial presence) also probes the contacts the user is subscribed
//! to and redelivers subscription requests still waiting for an answer. Presence with `to`
//! is directed presence, remembered so that the target gets unavailable presence when the
//! session ends. Subscription stanzas run the §3 state machine and push roster changes.
//!
//! Inbound, to a local account: probes are answered for subscribed contacts, subscription
//! stanzas update the account's roster (requests are kept across restarts until answered),
//! and available/unavailable presence is delivered to the addressed resource or to every
//! available resource of the account.

mod inbound;
mod outbound;

use super::roster::Roster;
use crate::module_api::{
    BoxFuture, Element, Flow, Hook, InboundPresence, Jid, Map, ModuleDescriptor, ModuleError, NS_CLIENT, NoOptions,
    OutboundPresence, Registrar, ServerHandle, SessionClosed, SessionRef, Stanza, check_section, priority,
};
use std::sync::Arc;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "presence",
    xeps: &["RFC 6121"],
    depends: &["roster"],
    default_enabled: true,
    check_config: check_section::<NoOptions>,
    build,
};

/// Shared state of the presence handlers.
pub(crate) struct Presence {
    roster: Arc<Roster>,
    /// Inbound subscription requests waiting for an answer: user → contact → the request.
    pending: Map,
    server: ServerHandle,
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let presence = Arc::new(Presence {
        roster: r.service::<Roster>("roster")?,
        pending: r.map("presence_pending"),
        server: r.server(),
    });
    r.hook::<OutboundPresence>(priority::DEFAULT, presence.clone());
    r.hook::<InboundPresence>(priority::DEFAULT, presence.clone());
    r.hook::<SessionClosed>(priority::DEFAULT, presence);
    Ok(())
}

impl Hook<OutboundPresence> for Presence {
    fn call<'a>(&'a self, event: &'a mut OutboundPresence) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            self.outbound(&event.session, &event.stanza).await;
            Flow::Handled
        })
    }
}

impl Hook<InboundPresence> for Presence {
    fn call<'a>(&'a self, event: &'a mut InboundPresence) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            self.inbound(&event.stanza, &event.to).await;
            Flow::Handled
        })
    }
}

impl Hook<SessionClosed> for Presence {
    fn call<'a>(&'a self, event: &'a mut SessionClosed) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            let unavailable = Element::new("presence", NS_CLIENT).with_attr("type", "unavailable");
            if event.session.is_available() {
                self.broadcast(&event.session, unavailable).await;
            } else {
                // Never available, but present in rooms or to peers by directed presence
                // (RFC 6121 §4.6.3): those still learn that the session is gone.
                let directed = std::mem::take(&mut event.session.state().directed_to);
                let presence = Stanza::new(crate::module_api::StanzaKind::Presence, unavailable);
                for target in directed {
                    self.send_from(&event.session, &presence, target.as_str()).await;
                }
            }
            Flow::Continue
        })
    }
}

impl Presence {
    /// Sends `el` (from the session's full JID) to `to`.
    /// Routes a copy of `presence` (sharing its body) from the session to `to`.
    async fn send_from(&self, session: &SessionRef, presence: &Stanza, to: &str) {
        let Ok(to) = Jid::new(to) else { return };
        let mut copy = presence.clone();
        copy.set_from(&Jid::from(session.jid.clone()));
        copy.set_to(to);
        self.server.route(copy).await;
    }
}

fn log_storage(e: impl std::fmt::Display) {
    tracing::error!(error = %e, "presence: storage failed");
}
