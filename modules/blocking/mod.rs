//! XEP-0191 blocking command: an account's blocklist (the `blocklist` map store, cached in
//! memory), managed with `<blocklist/>`, `<block/>` and `<unblock/>`, and enforced on the
//! routing path.
//!
//! Enforcement (§3.3.2, §3.5): a stanza from a blocked entity to the account is not
//! delivered (messages and IQ requests, to the account or any of its resources, get
//! `service-unavailable`; presence is dropped); a
//! stanza from the account to a blocked entity is refused with `not-acceptable` plus
//! `<blocked xmlns='urn:xmpp:blocking:errors'/>`. Blocking a contact sends it unavailable
//! presence from the account's resources. Items match as in XEP-0016 §2.1: a full JID
//! matches exactly, a bare JID matches all its resources, a domain matches everything on it.

mod list;

use crate::module_api::{
    BoxFuture, Element, ErrorType, Flow, Hook, InboundPresence, IqKind, IqTarget, IqToAccount, Jid, MessageToLocal,
    ModuleDescriptor, ModuleError, NoOptions, Registrar, Stanza, StanzaError, StanzaFromClient, StanzaKind, ToBare,
    check_section, ns, priority,
};
use list::Blocklists;
use std::sync::Arc;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "blocking",
    xeps: &["XEP-0191"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<NoOptions>,
    build,
};

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let lists = Arc::new(Blocklists::new(r.map("blocklist"), r.server()));
    r.iq(IqKind::Get, IqTarget::Account, ns::BLOCKING, "blocklist", lists.clone())?;
    r.iq(IqKind::Set, IqTarget::Account, ns::BLOCKING, "block", lists.clone())?;
    r.iq(IqKind::Set, IqTarget::Account, ns::BLOCKING, "unblock", lists.clone())?;
    r.hook::<StanzaFromClient>(priority::SECURITY, lists.clone());
    r.hook::<MessageToLocal>(priority::SECURITY, lists.clone());
    r.hook::<InboundPresence>(priority::SECURITY, lists.clone());
    r.hook::<IqToAccount>(priority::SECURITY, lists);
    r.feature(ns::BLOCKING);
    Ok(())
}

impl Hook<StanzaFromClient> for Blocklists {
    fn call<'a>(&'a self, event: &'a mut StanzaFromClient) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            let Some(to) = event.stanza.to() else { return Flow::Continue };
            let account = event.session.jid.bare();
            if !self.blocks(&account, &to).await {
                return Flow::Continue;
            }
            if event.stanza.kind != StanzaKind::Presence {
                // XEP-0191 §3.5 examples give this error type cancel.
                let error = StanzaError::new(ErrorType::Cancel, "not-acceptable")
                    .with_app(Element::new("blocked", ns::BLOCKING_ERRORS));
                if let Some(reply) = error.reply_to(&event.stanza) {
                    event.session.send(reply);
                }
            }
            Flow::Handled
        })
    }
}

impl Blocklists {
    /// Refuses a message or IQ request from an entity the addressee blocks (§3.5).
    async fn refuse_if_blocked(&self, stanza: &Stanza, to: &Jid) -> Flow {
        let Some(from) = stanza.from() else { return Flow::Continue };
        if !self.blocks(&to.bare(), &from).await {
            return Flow::Continue;
        }
        self.bounce(stanza).await;
        Flow::Handled
    }
}

impl Hook<MessageToLocal> for Blocklists {
    fn call<'a>(&'a self, event: &'a mut MessageToLocal) -> BoxFuture<'a, Flow> {
        Box::pin(self.refuse_if_blocked(&event.stanza, &event.to))
    }
}

impl Hook<IqToAccount> for Blocklists {
    fn call<'a>(&'a self, event: &'a mut IqToAccount) -> BoxFuture<'a, Flow> {
        Box::pin(self.refuse_if_blocked(&event.stanza, &event.to))
    }
}

impl Hook<InboundPresence> for Blocklists {
    fn call<'a>(&'a self, event: &'a mut InboundPresence) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            let Some(from) = event.stanza.from() else { return Flow::Continue };
            if self.blocks(&event.to.bare(), &from).await { Flow::Handled } else { Flow::Continue }
        })
    }
}
