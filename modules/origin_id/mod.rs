//! Duplicate suppression by origin-id (XEP-0359 §4): a client that resends a message after a
//! reconnect (because it never saw the acknowledgement) marks it with the same
//! `<origin-id/>`; the server accepts the copy (so stream management counts it as handled)
//! but routes it only once.
//!
//! The ids seen recently are kept in memory, keyed by sender account, addressee and id, in a
//! bounded first-in first-out set (`remember` entries per domain). That covers reconnects; a
//! resend across a server restart is caught by the offline module, which stores messages
//! under a key derived from their origin id and consults it for a while after start-up.
//!
//! Stanza ids (XEP-0359 §3.2): a `<stanza-id/>` in a client's message that names the
//! addressee or the sender in `by` is removed, so that nobody can forge the ids that the
//! server's stores hand out.

use crate::module_api::{
    BareJid, BoxFuture, Element, Flow, Hook, ModuleDescriptor, ModuleError, Node, Registrar, Stanza, StanzaFromClient,
    StanzaKind, ToBare, check_section, ns, priority,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "origin_id",
    xeps: &["XEP-0359"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<Options>,
    build,
};

/// `[modules.origin_id]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct Options {
    /// How many recent origin-ids are remembered (per domain).
    pub remember: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { remember: 100_000 }
    }
}

struct Recent {
    capacity: usize,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Recent {
    /// Records `key`; false when it was already there.
    fn first_time(&self, key: String) -> bool {
        let mut guard = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        if set.contains(&key) {
            return false;
        }
        if order.len() >= self.capacity
            && let Some(oldest) = order.pop_front()
        {
            set.remove(&oldest);
        }
        set.insert(key.clone());
        order.push_back(key);
        true
    }
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let options: Options = r.config()?;
    let recent = Arc::new(Recent { capacity: options.remember.max(1), seen: Mutex::default() });
    r.hook::<StanzaFromClient>(priority::POLICY, recent);
    Ok(())
}

impl Hook<StanzaFromClient> for Recent {
    fn call<'a>(&'a self, event: &'a mut StanzaFromClient) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            if event.stanza.kind != StanzaKind::Message {
                return Flow::Continue;
            }
            strip_forged_stanza_ids(&mut event.stanza, &event.session.jid.bare());
            let Some(id) = event.stanza.el().get_child("origin-id", ns::SID).and_then(|o| o.attr("id")) else {
                return Flow::Continue;
            };
            let to = event.stanza.to_ref().map(|j| j.as_str()).unwrap_or_default();
            let key = format!("{}\u{0}{to}\u{0}{id}", event.session.jid.bare());
            if self.first_time(key) {
                Flow::Continue
            } else {
                tracing::debug!(from = %event.session.jid, origin_id = id, "duplicate message dropped");
                Flow::Handled
            }
        })
    }
}

/// Removes `<stanza-id/>` elements whose `by` is the addressee's or the sender's bare JID.
fn strip_forged_stanza_ids(stanza: &mut Stanza, sender: &BareJid) {
    let addressee = stanza.to_ref().map(|to| to.bare());
    let forged = |c: &Element| {
        c.is("stanza-id", ns::SID)
            && c.attr("by")
                .is_some_and(|by| by == sender.as_str() || addressee.as_ref().is_some_and(|a| a.as_str() == by))
    };
    if stanza.el().child_elements().any(forged) {
        stanza.el_mut().children.retain(|n| !matches!(n, Node::Element(c) if forged(c)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_keys_up_to_its_capacity_then_forgets_the_oldest() {
        let recent = Recent { capacity: 2, seen: Mutex::default() };
        assert!(recent.first_time("a".into()));
        assert!(!recent.first_time("a".into()));
        assert!(recent.first_time("b".into()));
        assert!(recent.first_time("c".into()));
        assert!(recent.first_time("a".into()), "a was evicted");
        assert!(!recent.first_time("c".into()));
    }
}
