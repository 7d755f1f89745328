//! Stanza routing (RFC 6120 §8, §10): stamp, classify, fire events, apply the default rule.
//!
//! 1. Stanzas from a local client get `from` stamped with the session's full JID (§8.1.2.1)
//!    and go through the pre-stage event [`events::StanzaFromClient`].
//! 2. Presence from a client is handed to [`events::OutboundPresence`] (the presence module).
//! 3. Everything is then routed by its `to`: to a local account or resource (messages through
//!    [`events::MessageToLocal`] then the RFC 6121 §8.5 rules in [`delivery`], presence through
//!    [`events::InboundPresence`], IQs through the handler map in [`iq`]), to a component's
//!    domain (handed to the component, which answers everything itself), or to another domain
//!    (through a server-to-server link, [`crate::s2s`]).
//! 4. Whatever no one handled gets the single default: `service-unavailable` for messages and
//!    get/set IQs, silence for errors, results and presence.

pub mod bare;
pub mod delivery;
pub mod error;
pub mod events;
pub mod iq;
pub mod stanza;

use crate::events::{BoxFuture, Flow};
use crate::module_api::HostModules;
use crate::server::Server;
use crate::session::SessionRef;
use bare::ToBare;
use error::StanzaError;
use events::{InboundPresence, MessageToLocal, OutboundPresence, StanzaFromClient};
use futures_util::FutureExt;
use iq::{IqKey, IqKind, IqRequest, IqTarget};
use jid::Jid;
use stanza::{Stanza, StanzaKind};
use std::panic::AssertUnwindSafe;

/// Routes a stanza received from a bound local session.
pub async fn from_client(server: &Server, session: &SessionRef, mut stanza: Stanza) {
    stanza.set_from(&Jid::from(session.jid.clone()));
    let Some(host) = server.host(session.jid.domain().as_str()) else {
        return;
    };
    let mut event = StanzaFromClient { session: session.clone(), stanza };
    if host.bus.fire(&mut event).await == Flow::Handled {
        return;
    }
    let stanza = event.stanza;
    match stanza.kind {
        StanzaKind::Presence => {
            let mut event = OutboundPresence { session: session.clone(), stanza };
            if host.bus.fire(&mut event).await == Flow::Continue && event.stanza.to().is_some() {
                route(server, event.stanza, Some(session)).await;
            }
        }
        StanzaKind::Message | StanzaKind::Iq => route(server, stanza, Some(session)).await,
    }
}

/// Routes a stanza by its `to` (main stage). `origin` is the local session it came from, if
/// any. Used for server-generated stanzas too (presence broadcasts, roster pushes, errors).
pub fn route<'a>(server: &'a Server, stanza: Stanza, origin: Option<&'a SessionRef>) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        let to = match stanza.to() {
            Some(to) => to,
            // RFC 6120 §10.3: no `to` means the sender's own account.
            None => match stanza.from() {
                Some(from) => Jid::from(from.bare()),
                None => return,
            },
        };
        let Some(host) = server.host(to.domain().as_str()) else {
            if let Some(component) = server.component(to.domain().as_str()) {
                return component.stanza(stanza).await;
            }
            return crate::s2s::send(server, stanza).await;
        };
        match stanza.kind {
            StanzaKind::Iq => route_iq(server, host, stanza, to, origin).await,
            StanzaKind::Message => route_message(server, host, stanza, to, false).await,
            StanzaKind::Presence => route_presence(server, host, stanza, to).await,
        }
    })
}

/// Sends the error reply for `stanza`, unless it is itself an error.
pub async fn bounce(server: &Server, stanza: &Stanza, error: StanzaError) {
    if let Some(reply) = error.reply_to(stanza) {
        route(server, reply, None).await;
    }
}

/// Routes again a message that a local session took but cannot be shown to have delivered
/// (see [`events::MessageToLocal::redelivery`]).
pub async fn redeliver(server: &Server, stanza: Stanza) {
    let Some(to) = stanza.to() else { return };
    match server.host(to.domain().as_str()) {
        Some(host) => route_message(server, host, stanza, to, true).await,
        None => route(server, stanza, None).await,
    }
}

async fn route_message(server: &Server, host: &HostModules, stanza: Stanza, to: Jid, redelivery: bool) {
    if to.node().is_none() {
        // Messages to the domain itself: nothing serves them yet (RFC 6121 §8.5.1 style).
        if !matches!(stanza.type_attr(), Some("error" | "headline" | "groupchat")) {
            bounce(server, &stanza, StanzaError::service_unavailable()).await;
        }
        return;
    }
    let mut event = MessageToLocal { stanza, to, redelivery };
    if host.bus.fire(&mut event).await == Flow::Handled {
        return;
    }
    delivery::message(server, host, event.stanza, &event.to).await;
}

async fn route_presence(server: &Server, host: &HostModules, stanza: Stanza, to: Jid) {
    if to.node().is_none() {
        return; // presence to the domain: nothing to do (RFC 6121 has no such use).
    }
    let mut event = InboundPresence { stanza, to };
    if host.bus.fire(&mut event).await == Flow::Handled {
        return;
    }
    delivery::presence(server, event.stanza, &event.to);
}

async fn route_iq(server: &Server, host: &HostModules, stanza: Stanza, to: Jid, origin: Option<&SessionRef>) {
    let Some(kind) = IqKind::from_type(stanza.type_attr()) else {
        // Results and errors are only ever relayed to a full JID (RFC 6120 §8.2.3).
        if let Ok(full) = to.try_as_full()
            && let Some(session) = server.sessions.get(full)
        {
            session.send(stanza);
        }
        return;
    };
    let sender = stanza.from();
    let (stanza, to) = if to.node().is_some() && sender.as_ref().map(|f| f.bare()) != Some(to.bare()) {
        let mut event = events::IqToAccount { stanza, to };
        if host.bus.fire(&mut event).await == Flow::Handled {
            return;
        }
        (event.stanza, event.to)
    } else {
        (stanza, to)
    };
    if let Ok(full) = to.try_as_full() {
        match server.sessions.get(full) {
            Some(session) => {
                session.send(stanza);
            }
            None => bounce(server, &stanza, StanzaError::service_unavailable()).await,
        }
        return;
    }
    let target = if to.node().is_none() {
        IqTarget::Host
    } else if sender.as_ref().map(|f| f.bare()) == Some(to.bare()) {
        IqTarget::Account
    } else {
        IqTarget::Bare
    };
    let outcome = dispatch_iq(host, kind, target, &stanza, to, origin).await;
    if let Some(reply) = iq::reply(&stanza, outcome) {
        route(server, reply, None).await;
    }
}

/// Runs the handler registered for the IQ's key; `service-unavailable` when there is none,
/// `bad-request` when there is no payload, `internal-server-error` when the handler panics.
pub async fn dispatch_iq(
    host: &HostModules,
    kind: IqKind,
    target: IqTarget,
    stanza: &Stanza,
    to: Jid,
    origin: Option<&SessionRef>,
) -> iq::IqResult {
    let Some(payload) = stanza.el().first_child_element() else {
        return Err(StanzaError::bad_request());
    };
    let found = host
        .iq
        .iter()
        .find(|(key, _)| key.kind == kind && key.target == target && key.ns == payload.ns && key.name == payload.name);
    let Some((IqKey { .. }, (module, handler))) = found else {
        return Err(StanzaError::service_unavailable());
    };
    let from = stanza.from().unwrap_or_else(|| to.clone());
    let request =
        IqRequest { kind, from, to, payload: payload.clone(), session: origin.cloned(), stanza: stanza.clone() };
    match AssertUnwindSafe(handler.handle(&request)).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::error!(module, ns = %payload.ns, "IQ handler panicked");
            Err(StanzaError::internal_server_error())
        }
    }
}
