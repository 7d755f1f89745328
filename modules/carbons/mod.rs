//! Message carbons (XEP-0280): every resource of an account that enabled carbons sees the
//! chat messages its other resources send and receive, so conversations stay in sync across
//! devices.
//!
//! * `<enable/>` / `<disable/>` (§4, §5) switch a session on or off; the state lives here,
//!   keyed by session, and is dropped when the session ends.
//! * Sent (§6): a message a session sends (pre-stage hook) is copied, wrapped in
//!   `<sent><forwarded/></sent>`, to the account's other carbons-enabled sessions.
//! * Received (§6): a message addressed to one full JID of the account is copied, wrapped in
//!   `<received><forwarded/></received>`, to its other carbons-enabled sessions. Messages to
//!   the bare JID already reach every non-negative resource and are not copied again.
//! * Eligible (§6.1): type `chat`, and `normal` with a body; never errors to non-chat, never
//!   messages with `<private/>` (§7) or a `<no-copy/>` hint (XEP-0334); `<private/>` is
//!   removed before delivery.

use crate::module_api::{
    BareJid, BoxFuture, Element, Flow, Hook, IqHandler, IqKind, IqRequest, IqResult, IqTarget, Jid, MessageToLocal,
    ModuleDescriptor, ModuleError, NS_CLIENT, NoOptions, Registrar, ServerHandle, SessionClosed, SessionRef, Stanza,
    StanzaError, StanzaFromClient, StanzaKind, ToBare, check_section, priority,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// `urn:xmpp:carbons:2`
pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
/// `urn:xmpp:forward:0` (XEP-0297)
const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0334 hints.
const NS_HINTS: &str = "urn:xmpp:hints";

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "carbons",
    xeps: &["XEP-0280", "XEP-0297"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<NoOptions>,
    build,
};

struct Carbons {
    enabled: Mutex<HashSet<u64>>,
    server: ServerHandle,
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let carbons = Arc::new(Carbons { enabled: Mutex::default(), server: r.server() });
    r.iq(IqKind::Set, IqTarget::Account, NS_CARBONS, "enable", carbons.clone())?;
    r.iq(IqKind::Set, IqTarget::Account, NS_CARBONS, "disable", carbons.clone())?;
    r.hook::<StanzaFromClient>(priority::ARCHIVE, carbons.clone());
    r.hook::<MessageToLocal>(priority::ARCHIVE, carbons.clone());
    r.hook::<SessionClosed>(priority::DEFAULT, carbons);
    r.feature(NS_CARBONS);
    r.account_feature(NS_CARBONS);
    Ok(())
}

/// Whether a message is copied (XEP-0280 §6.1, §7; XEP-0334 `no-copy`).
fn eligible(message: &Element) -> bool {
    if message.has_child("private", NS_CARBONS) || message.has_child("no-copy", NS_HINTS) {
        return false;
    }
    // Carbons and other forwarded copies are never copied again.
    if message.has_child("sent", NS_CARBONS) || message.has_child("received", NS_CARBONS) {
        return false;
    }
    match message.attr("type").unwrap_or("normal") {
        "chat" => true,
        "normal" => message.has_child("body", NS_CLIENT),
        _ => false,
    }
}

impl Carbons {
    fn is_enabled(&self, session_id: u64) -> bool {
        self.enabled.lock().unwrap_or_else(|p| p.into_inner()).contains(&session_id)
    }

    /// Sends `<direction><forwarded>message</forwarded></direction>` to every carbons-enabled
    /// session of `account` except `skip`. The copy is only built when some session wants it:
    /// most accounts have no carbons-enabled second device online, and building the wrapper
    /// costs a clone of the message.
    fn copy(&self, account: &BareJid, skip: u64, direction: &str, message: &Stanza) {
        let targets: Vec<SessionRef> = self
            .server
            .sessions_of(account)
            .into_iter()
            .filter(|session| session.id != skip && self.is_enabled(session.id))
            .collect();
        if targets.is_empty() {
            return;
        }
        let mut inner = message.to_element();
        inner.remove_child("private", NS_CARBONS);
        let forwarded =
            Element::new(direction, NS_CARBONS).with_child(Element::new("forwarded", NS_FORWARD).with_child(inner));
        let wrapper = Element::new("message", NS_CLIENT)
            .with_attr("type", message.type_attr().unwrap_or("normal"))
            .with_attr("from", account.as_str())
            .with_child(forwarded);
        // One body for every device's copy.
        let wrapper = Stanza::new(StanzaKind::Message, wrapper);
        for session in targets {
            let mut copy = wrapper.clone();
            copy.set_to(Jid::from(session.jid.clone()));
            session.send(copy);
        }
    }
}

impl IqHandler for Carbons {
    fn handle<'a>(&'a self, iq: &'a IqRequest) -> BoxFuture<'a, IqResult> {
        Box::pin(async move {
            let Some(session) = &iq.session else { return Err(StanzaError::bad_request()) };
            let mut enabled = self.enabled.lock().unwrap_or_else(|p| p.into_inner());
            if iq.payload.name == "enable" {
                enabled.insert(session.id);
            } else {
                enabled.remove(&session.id);
            }
            Ok(None)
        })
    }
}

impl Hook<StanzaFromClient> for Carbons {
    fn call<'a>(&'a self, event: &'a mut StanzaFromClient) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            if event.stanza.kind == StanzaKind::Message && eligible(event.stanza.el()) {
                let account = event.session.jid.bare();
                self.copy(&account, event.session.id, "sent", &event.stanza);
            }
            if event.stanza.el().has_child("private", NS_CARBONS) {
                event.stanza.el_mut().remove_child("private", NS_CARBONS);
            }
            Flow::Continue
        })
    }
}

impl Hook<MessageToLocal> for Carbons {
    fn call<'a>(&'a self, event: &'a mut MessageToLocal) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            let Ok(full) = event.to.try_as_full() else { return Flow::Continue };
            if event.redelivery {
                return Flow::Continue; // copies went out the first time
            }
            if eligible(event.stanza.el())
                && let Some(target) = self.server.session(full)
            {
                self.copy(&full.bare(), target.id, "received", &event.stanza);
            }
            Flow::Continue
        })
    }
}

impl Hook<SessionClosed> for Carbons {
    fn call<'a>(&'a self, event: &'a mut SessionClosed) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            self.enabled.lock().unwrap_or_else(|p| p.into_inner()).remove(&event.session.id);
            Flow::Continue
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chat_and_normal_messages_with_bodies_are_copied() {
        let cases = [
            ("<message xmlns='jabber:client' type='chat'><body>hi</body></message>", true),
            (
                "<message xmlns='jabber:client' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
                true,
            ),
            ("<message xmlns='jabber:client'><body>hi</body></message>", true),
            ("<message xmlns='jabber:client'><x xmlns='urn:example'/></message>", false),
            ("<message xmlns='jabber:client' type='groupchat'><body>hi</body></message>", false),
            ("<message xmlns='jabber:client' type='headline'><body>hi</body></message>", false),
            (
                "<message xmlns='jabber:client' type='chat'><body>hi</body><private xmlns='urn:xmpp:carbons:2'/></message>",
                false,
            ),
            (
                "<message xmlns='jabber:client' type='chat'><body>hi</body><no-copy xmlns='urn:xmpp:hints'/></message>",
                false,
            ),
        ];
        for (xml, expected) in cases {
            assert_eq!(eligible(&Element::parse(xml.as_bytes()).unwrap()), expected, "{xml}");
        }
    }
}
