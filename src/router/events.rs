//! The events the router and the connection layer fire. Modules hook these through the
//! `Registrar`; the names say what happened (`SessionBound`) or what is being routed.

use super::stanza::Stanza;
use crate::events::Event;
use crate::session::SessionRef;
use jid::{BareJid, Jid};

/// Pre-stage: any stanza a local client sent, after `from` stamping, before routing.
/// Policy that must see a user's own traffic (blocking, carbons, archiving) hooks here;
/// `Handled` means the stanza was consumed (an error reply, if due, was already sent).
pub struct StanzaFromClient {
    /// The sending session.
    pub session: SessionRef,
    /// The stanza; hooks may change it.
    pub stanza: Stanza,
}

/// A presence stanza from a local client (RFC 6121 §4 outbound presence, §3 subscription
/// requests and answers). The presence module handles it.
pub struct OutboundPresence {
    /// The sending session.
    pub session: SessionRef,
    /// The stanza.
    pub stanza: Stanza,
}

/// A presence stanza addressed to a local account or resource (RFC 6121 inbound presence).
pub struct InboundPresence {
    /// The stanza.
    pub stanza: Stanza,
    /// The local addressee.
    pub to: Jid,
}

/// A message to a local account or resource, before the RFC 6121 §8.5 delivery rules run.
pub struct MessageToLocal {
    /// The message.
    pub stanza: Stanza,
    /// The local addressee.
    pub to: Jid,
    /// The message was routed before and comes back from a session that ended without
    /// showing it delivered (XEP-0198 §5): stores that already hold it must not add it again.
    pub redelivery: bool,
}

/// An IQ request (get or set) from someone else to a local account or resource, before it is
/// relayed or answered. Policy (blocking) may consume it; a hook returning `Handled` must have
/// sent the error reply itself.
pub struct IqToAccount {
    /// The request.
    pub stanza: Stanza,
    /// The local addressee.
    pub to: Jid,
}

/// A message for a local account that no resource can take now (RFC 6121 §8.5.2.2): the
/// extension point of offline storage. Unhandled, the sender gets `service-unavailable`.
pub struct MessageUndeliverable {
    /// The message.
    pub stanza: Stanza,
    /// The account.
    pub to: BareJid,
}

/// A resource was bound (RFC 6120 §7).
pub struct SessionBound {
    /// The new session.
    pub session: SessionRef,
}

/// A bound session ended (closed, replaced or dead). Its presence state is still readable.
pub struct SessionClosed {
    /// The session that ended.
    pub session: SessionRef,
}

/// Messages that reached a client: acknowledged under stream management (XEP-0198 §4), or
/// written to a connection without it. The offline module removes them from the inbox here.
pub struct MessagesDelivered {
    /// The session they reached.
    pub session: SessionRef,
    /// The messages, in the order they were written.
    pub messages: Vec<Stanza>,
}

/// A top-level element from a bound client that is not a stanza (stream management, client
/// state indication). Unhandled, the stream ends with `unsupported-stanza-type`.
pub struct NonzaReceived {
    /// The session.
    pub session: SessionRef,
    /// The element.
    pub element: crate::xml::Element,
}

/// A session sent its initial presence (RFC 6121 §4.2), so stored messages can be delivered
/// to it. Until the handler that sends them clears `catching_up` in the session's presence
/// state (or the event has run through), live messages to the account are kept for it in the
/// store rather than sent, so that it gets everything once and in order. Fired by the
/// presence module.
pub struct InitialPresence {
    /// The session that became available.
    pub session: SessionRef,
}

/// An account was removed; modules drop what they hold for it.
pub struct AccountDeleted {
    /// The removed account.
    pub account: BareJid,
}

impl Event for StanzaFromClient {
    const NAME: &'static str = "stanza-from-client";
}
impl Event for OutboundPresence {
    const NAME: &'static str = "outbound-presence";
}
impl Event for InboundPresence {
    const NAME: &'static str = "inbound-presence";
}
impl Event for MessageToLocal {
    const NAME: &'static str = "message-to-local";
}
impl Event for MessageUndeliverable {
    const NAME: &'static str = "message-undeliverable";
}
impl Event for SessionBound {
    const NAME: &'static str = "session-bound";
}
impl Event for MessagesDelivered {
    const NAME: &'static str = "messages-delivered";
}
impl Event for SessionClosed {
    const NAME: &'static str = "session-closed";
}
impl Event for AccountDeleted {
    const NAME: &'static str = "account-deleted";
}
impl Event for NonzaReceived {
    const NAME: &'static str = "nonza-received";
}
impl Event for InitialPresence {
    const NAME: &'static str = "initial-presence";
}
impl Event for IqToAccount {
    const NAME: &'static str = "iq-to-account";
}
