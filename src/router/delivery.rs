//! RFC 6121 §8.5: which local resources get a message or presence addressed to an account.
//!
//! * To a full JID whose resource is connected: that session (§8.5.3.1).
//! * To a full JID that is not connected: `normal`, `chat` and `headline` are treated as if
//!   sent to the bare JID; `groupchat` gets `service-unavailable`; errors are dropped
//!   (§8.5.3.2.1).
//! * To a bare JID with available resources of non-negative priority: `normal` and `chat` go
//!   to all of them (the "MAY deliver to all non-negative" choice, which multi-device clients
//!   expect), `headline` likewise, `groupchat` gets `service-unavailable`, errors are dropped
//!   (§8.5.2.1).
//! * A session that is still being sent stored messages (XEP-0160, after initial presence)
//!   counts as not there for messages: they wait in the store and arrive in order.
//! * To a bare JID with no such resource: `normal` and `chat` go to the
//!   [`MessageUndeliverable`] extension point (offline storage), and without a taker the
//!   sender gets `service-unavailable` (§8.5.2.2); a non-existent account gets the same error
//!   (§8.5.1).

use super::error::StanzaError;
use super::events::MessageUndeliverable;
use super::stanza::Stanza;
use super::{bounce, route};
use crate::events::Flow;
use crate::module_api::HostModules;
use crate::router::bare::ToBare;
use crate::server::Server;
use crate::session::SessionRef;
use jid::{BareJid, Jid};

/// Delivers a message to a local account or resource.
pub async fn message(server: &Server, host: &HostModules, mut stanza: Stanza, to: &Jid) {
    let message_type = stanza.type_attr().unwrap_or("normal").to_owned();
    if let Ok(full) = to.try_as_full()
        && let Some(session) = server.sessions.get(full)
    {
        if session.is_catching_up() {
            // Kept in the store, it reaches the session with the stored messages, in order.
            return undeliverable(server, host, stanza, full.bare()).await;
        }
        // A session closing right now gives the message back; it then goes by the bare rules.
        match session.try_send(stanza) {
            Ok(()) => return,
            Err(refused) => stanza = refused,
        }
    }
    match message_type.as_str() {
        "error" => return,
        "groupchat" => return bounce(server, &stanza, StanzaError::service_unavailable()).await,
        _ => {}
    }
    let account = to.bare();
    let targets = available_non_negative(&server.sessions.of_account(&account));
    if send_to_all(&targets, &stanza) > 0 {
        return;
    }
    if message_type == "headline" {
        return; // §8.5.2.2.2: silently ignored when no resource can take it.
    }
    undeliverable(server, host, stanza, account).await;
}

async fn undeliverable(server: &Server, host: &HostModules, stanza: Stanza, account: BareJid) {
    match server.accounts.exists(&account).await {
        Ok(true) => {}
        Ok(false) => return bounce(server, &stanza, StanzaError::service_unavailable()).await,
        Err(e) => {
            tracing::error!(error = %e, "account lookup failed while delivering");
            return bounce(server, &stanza, StanzaError::internal_server_error()).await;
        }
    }
    let mut event = MessageUndeliverable { stanza, to: account };
    if host.bus.fire(&mut event).await == Flow::Continue {
        bounce(server, &event.stanza, StanzaError::service_unavailable()).await;
    }
}

/// Default delivery of presence when no module took it: to the resource, or to every
/// available resource of the account (RFC 6121 §4.3.2, §8.5.2.1.2).
pub fn presence(server: &Server, stanza: Stanza, to: &Jid) {
    match to.try_as_full() {
        Ok(full) => {
            if let Some(session) = server.sessions.get(full) {
                session.send(stanza);
            }
        }
        Err(bare) => {
            let sessions: Vec<_> = server.sessions.of_account(bare).into_iter().filter(|s| s.is_available()).collect();
            send_to_all(&sessions, &stanza);
        }
    }
}

/// The sessions that take bare-JID messages: available, priority ≥ 0, and not still being
/// sent stored messages.
pub fn available_non_negative(sessions: &[SessionRef]) -> Vec<SessionRef> {
    sessions.iter().filter(|s| s.takes_live_messages() && s.priority() >= 0).cloned().collect()
}

/// Sends a copy to each session; returns how many took it. The copies share one body and
/// its bytes, serialised once here.
fn send_to_all(sessions: &[SessionRef], stanza: &Stanza) -> usize {
    if sessions.len() > 1 {
        stanza.prepare_wire();
    }
    sessions.iter().filter(|session| session.send(stanza.clone())).count()
}

/// Routes `stanza` to `to` (helper for modules delivering on a user's behalf).
pub async fn deliver_to(server: &Server, mut stanza: Stanza, to: &Jid) {
    stanza.set_to(to.clone());
    route(server, stanza, None).await;
}
