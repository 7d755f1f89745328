//! The bare form of a JID (RFC 7622 §3.1) without formatting a new string.
//!
//! `jid::Jid::to_bare` assembles the bare JID from its parts with `format!`; routing one chat
//! message asks for a bare JID about ten times (blocking, carbons, the inbox, the archive,
//! origin ids), and those calls were 7% of the server's CPU in the chat benchmark. Copying the
//! normalised string and cutting off the resource gives the same JID for a plain allocation.

use jid::{BareJid, Jid};

/// A JID's bare form, cheaply.
pub trait ToBare {
    /// The JID without its resource (the same JID when it has none).
    fn bare(&self) -> BareJid;
}

impl ToBare for Jid {
    fn bare(&self) -> BareJid {
        self.clone().into_bare()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_drops_only_the_resource() {
        for (jid, bare) in [("juliet@capulet.lit/balcony", "juliet@capulet.lit"), ("capulet.lit/x", "capulet.lit")] {
            let jid: Jid = jid.parse().unwrap();
            assert_eq!(jid.bare().as_str(), bare);
            assert_eq!(jid.bare(), jid.to_bare());
        }
        let bare: Jid = "juliet@capulet.lit".parse().unwrap();
        assert_eq!(bare.bare().as_str(), "juliet@capulet.lit");
    }
}
