//! Which undeliverable messages are kept (XEP-0160 §3, XEP-0085 §5.6, XEP-0334 §4).

use crate::module_api::{Element, NS_CLIENT};

/// XEP-0085 chat states.
const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0334 processing hints.
const HINTS: &str = "urn:xmpp:hints";

/// Whether a message to an offline account is stored: not with a `<no-store/>` hint, not when
/// it carries nothing but chat states (and a thread); yes with a `<store/>` hint, a body, or
/// any other payload such as receipts (XEP-0184) and chat markers (XEP-0333), whose ticks
/// depend on them.
pub fn worth_storing(message: &Element) -> bool {
    if message.has_child("no-store", HINTS) || message.has_child("no-permanent-store", HINTS) {
        return false;
    }
    if message.has_child("store", HINTS) {
        return true;
    }
    message.child_elements().any(|child| {
        let noise = child.ns == CHATSTATES || (child.ns == NS_CLIENT && child.name == "thread") || child.ns == HINTS;
        !noise
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(xml: &str) -> Element {
        Element::parse(xml.as_bytes()).unwrap()
    }

    #[test]
    fn chat_states_alone_are_not_stored_but_bodies_receipts_and_markers_are() {
        let cases = [
            (
                "<message xmlns='jabber:client'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
                false,
            ),
            (
                "<message xmlns='jabber:client'><active xmlns='http://jabber.org/protocol/chatstates'/><thread>t</thread></message>",
                false,
            ),
            (
                "<message xmlns='jabber:client'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
                true,
            ),
            ("<message xmlns='jabber:client'><received xmlns='urn:xmpp:receipts' id='x'/></message>", true),
            ("<message xmlns='jabber:client'><displayed xmlns='urn:xmpp:chat-markers:0' id='x'/></message>", true),
            ("<message xmlns='jabber:client'><body>hi</body><no-store xmlns='urn:xmpp:hints'/></message>", false),
            ("<message xmlns='jabber:client'><store xmlns='urn:xmpp:hints'/></message>", true),
            ("<message xmlns='jabber:client'/>", false),
        ];
        for (xml, expected) in cases {
            assert_eq!(worth_storing(&message(xml)), expected, "{xml}");
        }
    }
}
