//! Duplicate suppression by origin-id (XEP-0359 §4): a client that resends a message after a
//! reconnect (because it never saw the acknowledgement) marks it with the same
//! `<origin-id/>`; the server accepts the copy (so stream management counts it as handled)
//! but routes it only once.
//!
//! The ids seen recently are kept in memory, as fingerprints of sender account, addressee and
//! id (see `Recent`), in a bounded first-in first-out set (`remember` entries per domain).
//! That covers reconnects; a resend across a server restart is caught by the offline module,
//! which stores messages under a key derived from their origin id and consults it for a while
//! after start-up.
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
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
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

/// The origin ids seen recently, as fingerprints: a keyed 128-bit hash of sender, addressee and
/// id rather than the strings themselves. The keys are random per process, so nobody can make
/// two messages share a fingerprint on purpose, and by chance two of the `capacity` remembered
/// ones collide with odds of about `capacity` in 2^128. A fingerprint is 16 bytes where the
/// strings were about 150 with their allocations, and a lookup hashes once.
struct Recent {
    capacity: usize,
    hashers: [RandomState; 2],
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Fingerprints are already random, so the set uses their bits as its hash.
    set: HashSet<u128, BuildHasherDefault<Fingerprint>>,
    order: VecDeque<u128>,
}

impl Recent {
    fn new(capacity: usize) -> Recent {
        Recent { capacity: capacity.max(1), hashers: [RandomState::new(), RandomState::new()], seen: Mutex::default() }
    }

    /// The fingerprint of a message's sender, addressee and origin id.
    fn fingerprint(&self, sender: &str, to: &str, id: &str) -> u128 {
        let [high, low] = &self.hashers;
        let parts = (sender, to, id);
        (u128::from(high.hash_one(parts)) << 64) | u128::from(low.hash_one(parts))
    }

    /// Records `fingerprint`; false when it was already there.
    fn first_time(&self, fingerprint: u128) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.set.insert(fingerprint) {
            return false;
        }
        if seen.order.len() >= self.capacity
            && let Some(oldest) = seen.order.pop_front()
        {
            seen.set.remove(&oldest);
        }
        seen.order.push_back(fingerprint);
        true
    }
}

/// The hasher of the fingerprint set: a fingerprint's low 64 bits.
#[derive(Default)]
struct Fingerprint(u64);

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; this keeps any other input well defined.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, fingerprint: u128) {
        self.0 = fingerprint as u64; // the low half; truncation intended
    }
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let options: Options = r.config()?;
    let recent = Arc::new(Recent::new(options.remember));
    r.hook::<StanzaFromClient>(priority::POLICY, recent);
    Ok(())
}

impl Hook<StanzaFromClient> for Recent {
    fn call<'a>(&'a self, event: &'a mut StanzaFromClient) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            if event.stanza.kind != StanzaKind::Message {
                return Flow::Continue;
            }
            let sender = event.session.jid.bare();
            strip_forged_stanza_ids(&mut event.stanza, &sender);
            let Some(id) = event.stanza.el().get_child("origin-id", ns::SID).and_then(|o| o.attr("id")) else {
                return Flow::Continue;
            };
            let to = event.stanza.to_ref().map(|j| j.as_str()).unwrap_or_default();
            if self.first_time(self.fingerprint(sender.as_str(), to, id)) {
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
        let recent = Recent::new(2);
        let [a, b, c] = ["a", "b", "c"].map(|id| recent.fingerprint("juliet@example.com", "romeo@example.net", id));
        assert!(recent.first_time(a));
        assert!(!recent.first_time(a));
        assert!(recent.first_time(b));
        assert!(recent.first_time(c));
        assert!(recent.first_time(a), "a was evicted");
        assert!(!recent.first_time(c));
    }

    #[test]
    fn fingerprints_tell_sender_addressee_and_id_apart() {
        let recent = Recent::new(10);
        let prints = [
            recent.fingerprint("a@x", "b@x", "1"),
            recent.fingerprint("b@x", "a@x", "1"),
            recent.fingerprint("a@x", "b@x", "2"),
            recent.fingerprint("a@x", "b@x1", ""),
            recent.fingerprint("a@x", "b@x", "1"),
        ];
        assert_eq!(prints[0], prints[4], "the same message, the same fingerprint");
        let distinct: HashSet<u128> = prints[..4].iter().copied().collect();
        assert_eq!(distinct.len(), 4, "a shifted boundary between the parts changes the fingerprint");
    }
}
