//! Archive queries (XEP-0313 §4): the data form filters, Result Set Management paging
//! (XEP-0059) by archive id in both directions, and the `<fin/>` that ends a page.
//!
//! A query `<query queryid='q'><x type='submit'>…</x><set><max/>…</set></query>` is answered
//! with one `<message><result queryid='q' id='…'><forwarded>…</forwarded></result></message>`
//! per item, oldest first, then the IQ result carrying `<fin complete='…'><set><first/><last/>
//! <count/></set></fin>`. `complete` says no further items lie in the direction of paging.

pub use super::prefs::NS_MAM;
use crate::module_api::{
    ArchiveQuery, ArchivedItem, Element, Jid, NS_CLIENT, Stanza, StanzaError, StanzaKind, ToBare, datetime, ns,
    parse_datetime,
};

/// XEP-0059 Result Set Management.
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";
/// XEP-0297 Stanza Forwarding.
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";

/// Items per page when the client does not say.
pub const DEFAULT_PAGE: usize = 50;
/// Most items per page.
pub const MAX_PAGE: usize = 250;

/// A parsed query.
#[derive(Debug, PartialEq, Eq)]
pub struct Query {
    /// The client's `queryid`, echoed in every result.
    pub query_id: Option<String>,
    /// The storage query (filters, paging, limit, direction).
    pub archive: ArchiveQuery,
}

/// The form fields this server understands (`#extended` adds the id fields).
const FIELDS: &[(&str, &str)] = &[
    ("with", "jid-single"),
    ("start", "text-single"),
    ("end", "text-single"),
    ("before-id", "text-single"),
    ("after-id", "text-single"),
    ("ids", "list-multi"),
];

/// The form a client may fill in (§4.1.1, answered to `<query/>` get).
pub fn form() -> Element {
    let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", "form").with_child(
        Element::new("field", ns::DATA_FORMS)
            .with_attr("var", "FORM_TYPE")
            .with_attr("type", "hidden")
            .with_child(Element::new("value", ns::DATA_FORMS).with_text(NS_MAM)),
    );
    for (var, kind) in FIELDS {
        x.push_child(Element::new("field", ns::DATA_FORMS).with_attr("var", *var).with_attr("type", *kind));
    }
    Element::new("query", NS_MAM).with_child(x)
}

/// Reads a `<query/>` set.
pub fn parse(query: &Element) -> Result<Query, StanzaError> {
    let mut archive = ArchiveQuery::default();
    if let Some(form) = query.get_child("x", ns::DATA_FORMS) {
        for field in form.child_elements().filter(|f| f.is("field", ns::DATA_FORMS)) {
            apply_field(&mut archive, field)?;
        }
    }
    let rsm = query.get_child("set", NS_RSM);
    let max = match rsm.and_then(|s| s.get_child("max", NS_RSM)) {
        Some(max) => max.text().trim().parse::<usize>().map_err(|_| bad("max must be a number"))?,
        None => DEFAULT_PAGE,
    };
    archive.limit = Some(max.min(MAX_PAGE));
    if let Some(after) = rsm.and_then(|s| s.get_child("after", NS_RSM)) {
        archive.after = Some(non_empty(after.text(), "after")?);
    }
    if let Some(before) = rsm.and_then(|s| s.get_child("before", NS_RSM)) {
        // An empty <before/> asks for the last page (XEP-0059 §2.5).
        let id = before.text();
        if !id.trim().is_empty() {
            archive.before = Some(id.trim().to_owned());
        }
        archive.reverse = true;
    }
    Ok(Query { query_id: query.attr("queryid").map(str::to_owned), archive })
}

fn apply_field(archive: &mut ArchiveQuery, field: &Element) -> Result<(), StanzaError> {
    let var = field.attr("var").unwrap_or_default();
    let values: Vec<String> =
        field.child_elements().filter(|v| v.is("value", ns::DATA_FORMS)).map(|v| v.text().trim().to_owned()).collect();
    let single = || values.first().cloned().filter(|v| !v.is_empty());
    match var {
        "FORM_TYPE" if single().as_deref() == Some(NS_MAM) => {}
        "FORM_TYPE" => return Err(bad("FORM_TYPE must be urn:xmpp:mam:2")),
        "with" => {
            if let Some(with) = single() {
                let jid = jid::Jid::new(&with).map_err(|_| StanzaError::jid_malformed())?;
                // Archives are kept by bare JID; a full JID narrows nothing further here.
                archive.with = Some(jid.bare().to_string());
            }
        }
        "start" => archive.start = single().map(|v| time(&v)).transpose()?,
        "end" => archive.end = single().map(|v| time(&v)).transpose()?,
        "after-id" => archive.after = single(),
        "before-id" => archive.before = single(),
        "ids" => archive.ids = Some(values.into_iter().filter(|v| !v.is_empty()).collect()),
        _ => return Err(bad("unsupported field").with_text(format!("field '{var}' is not supported"))),
    }
    Ok(())
}

fn time(value: &str) -> Result<i64, StanzaError> {
    parse_datetime(value).ok_or_else(|| bad("start and end must be XEP-0082 date-times"))
}

fn non_empty(text: String, what: &str) -> Result<String, StanzaError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        Err(bad("empty RSM id").with_text(format!("<{what}/> needs an id")))
    } else {
        Ok(trimmed.to_owned())
    }
}

fn bad(text: &str) -> StanzaError {
    StanzaError::bad_request().with_text(text)
}

/// One result of a query (§4.2): `<message from=archive to=requester><result queryid id>
/// <forwarded><delay/>the archived stanza</forwarded></result></message>`; `None` when the
/// stored stanza cannot be read back.
pub fn result_message(item: &ArchivedItem, query_id: Option<&str>, archive: &Jid, to: &Jid) -> Option<Stanza> {
    let archived = Element::parse(&item.value.data).ok()?;
    let forwarded = Element::new("forwarded", NS_FORWARD)
        .with_child(Element::new("delay", ns::DELAY).with_attr("stamp", datetime(item.when)))
        .with_child(archived);
    let mut result = Element::new("result", NS_MAM).with_attr("id", item.key.as_str()).with_child(forwarded);
    if let Some(id) = query_id {
        result.set_attr("queryid", id);
    }
    let mut message = Stanza::new(StanzaKind::Message, Element::new("message", NS_CLIENT).with_child(result));
    message.set_from(archive);
    message.set_to(to.clone());
    Some(message)
}

/// The `<fin/>` for a page.
pub fn fin(first_last: Option<(&str, &str)>, count: usize, complete: bool) -> Element {
    let mut set = Element::new("set", NS_RSM);
    if let Some((first, last)) = first_last {
        set.push_child(Element::new("first", NS_RSM).with_text(first));
        set.push_child(Element::new("last", NS_RSM).with_text(last));
    }
    set.push_child(Element::new("count", NS_RSM).with_text(count.to_string()));
    let mut fin = Element::new("fin", NS_MAM).with_child(set);
    if complete {
        fin.set_attr("complete", "true");
    }
    fin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(xml: &str) -> Result<Query, StanzaError> {
        parse(&Element::parse(xml.as_bytes()).unwrap())
    }

    #[test]
    fn reads_filters_and_paging() {
        let q = query(
            "<query xmlns='urn:xmpp:mam:2' queryid='f27'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
             <field var='with'><value>juliet@capulet.lit/balcony</value></field>\
             <field var='start'><value>2010-06-07T00:00:00Z</value></field></x>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set></query>",
        )
        .unwrap();
        assert_eq!(q.query_id.as_deref(), Some("f27"));
        assert_eq!(q.archive.with.as_deref(), Some("juliet@capulet.lit"));
        assert_eq!(q.archive.start, Some(1_275_868_800_000_000));
        assert_eq!((q.archive.limit, q.archive.reverse, q.archive.before.clone()), (Some(10), true, None));
        let q = query("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>9999</max><after>x</after></set></query>").unwrap();
        assert_eq!(
            (q.archive.limit, q.archive.after.as_deref(), q.archive.reverse),
            (Some(MAX_PAGE), Some("x"), false)
        );
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for bad in [
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='colour'><value>red</value></field></x></query>",
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='start'><value>yesterday</value></field></x></query>",
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:1</value></field></x></query>",
            "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>ten</max></set></query>",
        ] {
            assert!(query(bad).is_err(), "{bad}");
        }
    }
}
