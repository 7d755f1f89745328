//! XEP-0115 §5 verification string of the server's own disco#info, offered in the stream
//! features (§6.3) so that clients can skip the disco#info query.

use crate::module_api::{Element, ns};
use base64::Engine;
use sha1::{Digest, Sha1};

/// The caps node URI of this server software.
pub const NODE: &str = "https://starling.im/caps";

/// The `ver` string: identities `category/type/lang/name<` then features `var<`, each sorted,
/// hashed with SHA-1 and base64-encoded (XEP-0115 §5.1).
pub fn ver(info: &Element) -> String {
    let mut identities: Vec<String> = info
        .child_elements()
        .filter(|c| c.name == "identity")
        .map(|i| {
            let get = |a: &str| i.attr(a).unwrap_or("").to_owned();
            format!("{}/{}/{}/{}", get("category"), get("type"), get("xml:lang"), get("name"))
        })
        .collect();
    identities.sort();
    let mut features: Vec<&str> =
        info.child_elements().filter(|c| c.name == "feature").filter_map(|f| f.attr("var")).collect();
    features.sort_unstable();
    let mut s = String::new();
    for i in identities {
        s.push_str(&i);
        s.push('<');
    }
    for f in features {
        s.push_str(f);
        s.push('<');
    }
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes()))
}

/// The `<c/>` stream feature.
pub fn feature(info: &Element) -> Element {
    Element::new("c", ns::CAPS).with_attr("hash", "sha-1").with_attr("node", NODE).with_attr("ver", ver(info))
}

/// Whether a disco `node` attribute names our own caps node (`NODE#ver`).
pub fn is_own_node(node: &str, info: &Element) -> bool {
    node == format!("{NODE}#{}", ver(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0115 §5.2 simple generation example.
    #[test]
    fn matches_the_xep_example() {
        let info = Element::new("query", ns::DISCO_INFO)
            .with_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "client")
                    .with_attr("type", "pc")
                    .with_attr("name", "Exodus 0.9.1"),
            )
            .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", "http://jabber.org/protocol/caps"))
            .with_child(
                Element::new("feature", ns::DISCO_INFO).with_attr("var", "http://jabber.org/protocol/disco#info"),
            )
            .with_child(
                Element::new("feature", ns::DISCO_INFO).with_attr("var", "http://jabber.org/protocol/disco#items"),
            )
            .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", "http://jabber.org/protocol/muc"));
        assert_eq!(ver(&info), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }
}
