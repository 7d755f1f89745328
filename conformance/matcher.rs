//! Comparing a received element with a script's expectation, by scansion's rules:
//!
//! - names and namespaces must be equal;
//! - in the default namespace (`jabber:client`) the expectation is a pattern: every expected
//!   attribute must be present with the same value, every expected child must match a distinct
//!   received child, and text is only compared when the expectation has some; extra attributes
//!   and children are ignored;
//! - in any other namespace matching is strict: the same attributes, the same number of
//!   children (each matching one received child), and equal text;
//! - `{scansion:any}` as an attribute value or as the whole text matches anything;
//! - text is compared with surrounding whitespace trimmed.

use starling::xml::{Element, FrameEvent, Framer, Limits};

/// The wildcard value.
pub const ANY: &str = "{scansion:any}";
const NS_CLIENT: &str = "jabber:client";

/// Parses an expected (or sent) block as if it appeared inside a client stream, so the default
/// namespace is `jabber:client` and the `stream:` prefix is bound.
pub fn parse_expected(xml: &str) -> anyhow::Result<Element> {
    let mut framer = Framer::new(Limits::default());
    framer.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    framer.feed(xml.as_bytes());
    let mut found = None;
    loop {
        match framer.next_event() {
            Ok(Some(FrameEvent::StreamOpen(_))) => {}
            Ok(Some(FrameEvent::Element(el))) if found.is_none() => found = Some(el),
            Ok(Some(_)) => anyhow::bail!("a block must hold exactly one element:\n{xml}"),
            Ok(None) => break,
            Err(e) => anyhow::bail!("the script's XML is not valid ({e}):\n{xml}"),
        }
    }
    if framer.buffered_len() > 0 {
        anyhow::bail!("the script's XML is incomplete:\n{xml}");
    }
    found.ok_or_else(|| anyhow::anyhow!("no element in block:\n{xml}"))
}

/// `Ok` when `received` matches `expected`; otherwise where and why not.
pub fn compare(expected: &Element, received: &Element) -> Result<(), String> {
    compare_at(expected, received, &format!("<{}>", expected.name))
}

fn compare_at(expected: &Element, received: &Element, path: &str) -> Result<(), String> {
    if expected.name != received.name || expected.ns != received.ns {
        return Err(format!(
            "{path}: expected <{}/> in {}, got <{}/> in {}",
            expected.name, expected.ns, received.name, received.ns
        ));
    }
    let strict = expected.ns != NS_CLIENT;
    for (name, value) in &expected.attrs {
        match received.attr(name) {
            None => return Err(format!("{path}: attribute {name} is missing")),
            Some(got) if value != ANY && got != value => {
                return Err(format!("{path}: attribute {name} is '{got}', expected '{value}'"));
            }
            Some(_) => {}
        }
    }
    if strict && let Some((name, _)) = received.attrs.iter().find(|(name, _)| expected.attr(name).is_none()) {
        return Err(format!("{path}: unexpected attribute {name}"));
    }
    let want = expected.text();
    let want = want.trim();
    let got = received.text();
    if want != ANY && (strict || !want.is_empty()) && want != got.trim() {
        return Err(format!("{path}: text is '{}', expected '{want}'", got.trim()));
    }
    let got: Vec<&Element> = received.child_elements().collect();
    let mut used = vec![false; got.len()];
    for child in expected.child_elements() {
        let child_path = format!("{path}/<{}>", child.name);
        let mut reason = None;
        let found = got.iter().enumerate().find(|(i, candidate)| {
            if used[*i] {
                return false;
            }
            match compare_at(child, candidate, &child_path) {
                Ok(()) => true,
                Err(why) => {
                    if candidate.name == child.name && candidate.ns == child.ns && reason.is_none() {
                        reason = Some(why);
                    }
                    false
                }
            }
        });
        match found {
            Some((i, _)) => used[i] = true,
            None => return Err(reason.unwrap_or_else(|| format!("{child_path} in {}: not received", child.ns))),
        }
    }
    if strict && let Some(extra) = got.iter().zip(&used).find(|(_, used)| !**used).map(|(c, _)| c) {
        return Err(format!("{path}: unexpected child <{}/> in {}", extra.name, extra.ns));
    }
    Ok(())
}

/// The element as XML for failure messages.
pub fn show(el: &Element) -> String {
    String::from_utf8_lossy(&el.to_bytes(NS_CLIENT)).into_owned()
}
