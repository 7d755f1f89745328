//! Archiving preferences (XEP-0313 §6): a default (`always`, `never`, `roster`) and lists of
//! JIDs that are always or never archived, whatever the default.

use crate::module_api::{Element, StanzaError, ToBare};
use serde::{Deserialize, Serialize};

/// `urn:xmpp:mam:2`
pub const NS_MAM: &str = "urn:xmpp:mam:2";

/// The default rule for correspondents on neither list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultRule {
    /// Archive every conversation.
    Always,
    /// Archive nothing (the server's default: delivered messages are not kept).
    Never,
    /// Archive conversations with contacts in the roster.
    Roster,
}

impl DefaultRule {
    fn as_str(self) -> &'static str {
        match self {
            DefaultRule::Always => "always",
            DefaultRule::Never => "never",
            DefaultRule::Roster => "roster",
        }
    }

    /// Parses a configuration or protocol value.
    pub fn parse(value: &str) -> Option<DefaultRule> {
        match value {
            "always" => Some(DefaultRule::Always),
            "never" => Some(DefaultRule::Never),
            "roster" => Some(DefaultRule::Roster),
            _ => None,
        }
    }
}

/// One account's preferences.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefs {
    /// The default rule.
    pub default: DefaultRule,
    /// Bare JIDs always archived.
    pub always: Vec<String>,
    /// Bare JIDs never archived.
    pub never: Vec<String>,
}

/// Whether a message with `with` is archived: decided, or depending on the roster.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Archive it.
    Yes,
    /// Do not.
    No,
    /// Archive it if `with` is in the account's roster.
    IfInRoster,
}

impl Prefs {
    /// The preferences of an account that never set any.
    pub fn with_default(default: DefaultRule) -> Prefs {
        Prefs { default, always: Vec::new(), never: Vec::new() }
    }

    /// The rule for correspondent `with` (a bare JID). A JID on both lists is never archived.
    pub fn decide(&self, with: &str) -> Decision {
        if self.never.iter().any(|j| j == with) {
            return Decision::No;
        }
        if self.always.iter().any(|j| j == with) {
            return Decision::Yes;
        }
        match self.default {
            DefaultRule::Always => Decision::Yes,
            DefaultRule::Never => Decision::No,
            DefaultRule::Roster => Decision::IfInRoster,
        }
    }

    /// Reads `<prefs default='…'><always><jid/>…</always><never>…</never></prefs>`.
    pub fn from_element(el: &Element) -> Result<Prefs, StanzaError> {
        let default = el
            .attr("default")
            .and_then(DefaultRule::parse)
            .ok_or_else(|| StanzaError::bad_request().with_text("default must be always, never or roster"))?;
        let list = |name: &str| -> Result<Vec<String>, StanzaError> {
            let mut jids = Vec::new();
            for jid in el.get_child(name, NS_MAM).into_iter().flat_map(|l| l.child_elements()) {
                let bare =
                    jid::Jid::new(jid.text().trim()).map_err(|_| StanzaError::jid_malformed())?.bare().to_string();
                if !jids.contains(&bare) {
                    jids.push(bare);
                }
            }
            Ok(jids)
        };
        Ok(Prefs { default, always: list("always")?, never: list("never")? })
    }

    /// The `<prefs/>` element.
    pub fn to_element(&self) -> Element {
        let list = |name: &str, jids: &[String]| {
            jids.iter().fold(Element::new(name, NS_MAM), |l, j| l.with_child(Element::new("jid", NS_MAM).with_text(j)))
        };
        Element::new("prefs", NS_MAM)
            .with_attr("default", self.default.as_str())
            .with_child(list("always", &self.always))
            .with_child(list("never", &self.never))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_override_the_default_and_never_wins() {
        let el = Element::parse(
            b"<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>romeo@example.net/x</jid>\
              <jid>both@example.net</jid></always><never><jid>both@example.net</jid></never></prefs>",
        )
        .unwrap();
        let prefs = Prefs::from_element(&el).unwrap();
        assert_eq!(prefs.always, ["romeo@example.net", "both@example.net"]);
        assert_eq!(prefs.decide("romeo@example.net"), Decision::Yes);
        assert_eq!(prefs.decide("both@example.net"), Decision::No);
        assert_eq!(prefs.decide("other@example.net"), Decision::IfInRoster);
        assert_eq!(Prefs::from_element(&prefs.to_element()).unwrap(), prefs);
        let bad = Element::parse(b"<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>").unwrap();
        assert!(Prefs::from_element(&bad).is_err());
    }
}
