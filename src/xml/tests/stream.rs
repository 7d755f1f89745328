//! Stream headers, stanzas, namespaces, escaping and error conditions.

use super::*;

#[test]
fn rfc6120_stream_headers() {
    struct Case {
        input: &'static str,
        default_ns: &'static str,
        to: Option<&'static str>,
        from: Option<&'static str>,
        id: Option<&'static str>,
        lang: Option<&'static str>,
    }
    let table = [
        Case {
            input: CLIENT_HEADER,
            default_ns: "jabber:client",
            to: Some("im.example.com"),
            from: Some("juliet@im.example.com"),
            id: None,
            lang: Some("en"),
        },
        Case {
            input: SERVER_HEADER,
            default_ns: "jabber:server",
            to: Some("example.net"),
            from: Some("im.example.com"),
            id: Some("g4qSvGvBxJ+xeAd7QKezOQJFFlw="),
            lang: None,
        },
        Case {
            input: "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<stream:stream \
                    xmlns:stream=\"http://etherx.jabber.org/streams\" xmlns=\"jabber:client\" \
                    to=\"example.com\" version=\"1.0\">",
            default_ns: "jabber:client",
            to: Some("example.com"),
            from: None,
            id: None,
            lang: None,
        },
        Case {
            input: "  <s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:client'>",
            default_ns: "jabber:client",
            to: None,
            from: None,
            id: None,
            lang: None,
        },
    ];
    for case in table {
        let (events, err) = frame(case.input);
        assert_eq!(err, None, "{}", case.input);
        assert_eq!(events.len(), 1);
        let h = header(&events);
        assert_eq!((h.name.as_str(), h.ns.as_str()), ("stream", STREAMS_NS));
        assert_eq!(h.default_ns.as_deref(), Some(case.default_ns));
        assert_eq!(h.to.as_deref(), case.to);
        assert_eq!(h.from.as_deref(), case.from);
        assert_eq!(h.id.as_deref(), case.id);
        assert_eq!(h.lang.as_deref(), case.lang);
    }
    let (events, _) = frame(SERVER_HEADER);
    let h = header(&events);
    assert_eq!(h.attr("xmlns:db"), Some("jabber:server:dialback"));
    assert_eq!(h.version.as_deref(), Some("1.0"));
    assert_eq!(h.attrs.len(), 7);
}

#[test]
fn stanzas_inherit_header_namespaces() {
    let input = format!(
        "{CLIENT_HEADER}<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>\
         <required/></starttls></stream:features>\
         <message from='juliet@im.example.com/balcony' id='ktx72v49' \
         to='romeo@example.net' type='chat' xml:lang='en'>\
         <body>Art thou not Romeo, and a Montague?</body>\
         <request xmlns='urn:xmpp:receipts'/></message>\
         <iq id='rr9' type='result'><query xmlns='jabber:iq:roster' ver='v1'>\
         <item jid='nurse@example.com' name='Nurse'><group>Servants</group></item>\
         </query></iq>"
    );
    let (events, err) = frame(&input);
    assert_eq!(err, None);
    let els = elements(&events);
    assert_eq!(els.len(), 3);

    assert!(els[0].is("features", STREAMS_NS));
    let tls = els[0].get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls").unwrap();
    assert!(tls.has_child("required", "urn:ietf:params:xml:ns:xmpp-tls"));

    let msg = els[1];
    assert!(msg.is("message", "jabber:client"));
    assert_eq!(msg.attr("xml:lang"), Some("en"));
    assert_eq!(msg.attr("type"), Some("chat"));
    let body = msg.get_child("body", "jabber:client").unwrap();
    assert_eq!(body.text(), "Art thou not Romeo, and a Montague?");
    assert!(msg.has_child("request", "urn:xmpp:receipts"));

    let query = els[2].get_child("query", "jabber:iq:roster").unwrap();
    assert!(query.attrs.iter().all(|(k, _)| k != "xmlns"), "declarations dropped");
    let item = query.get_child("item", "jabber:iq:roster").unwrap();
    assert_eq!(item.get_child("group", "jabber:iq:roster").unwrap().text(), "Servants");
    assert_eq!(
        els[2].to_bytes("jabber:client"),
        b"<iq id='rr9' type='result'><query xmlns='jabber:iq:roster' ver='v1'>\
          <item jid='nurse@example.com' name='Nurse'><group>Servants</group></item>\
          </query></iq>"
    );
}

#[test]
fn dialback_prefix_and_prefixed_attributes() {
    let input = format!(
        "{SERVER_HEADER}<db:result from='example.net' to='im.example.com'>b4835385f37f</db:result>\
         <message from='a@im.example.com' to='b@example.net' db:x='1'><x:y xmlns:x='urn:x' \
         x:a='2'><z x:b='3'/></x:y></message>"
    );
    let (events, err) = frame(&input);
    assert_eq!(err, None);
    let els = elements(&events);
    assert!(els[0].is("result", "jabber:server:dialback"));
    assert_eq!(els[0].text(), "b4835385f37f");
    assert_eq!(els[1].ns, "jabber:server");
    // Declarations that prefixed attributes need travel with the element that uses them.
    assert_eq!(els[1].attr("xmlns:db"), Some("jabber:server:dialback"));
    let y = els[1].get_child("y", "urn:x").unwrap();
    assert_eq!(y.attrs, vec![("xmlns:x".into(), "urn:x".into()), ("x:a".into(), "2".into())]);
    let z = y.get_child("z", "jabber:server").unwrap();
    assert_eq!(z.attrs, vec![("x:b".into(), "3".into()), ("xmlns:x".into(), "urn:x".into())]);
    for el in els {
        assert_eq!(Element::parse(&el.to_bytes("")).as_ref(), Ok(el));
    }
}

#[test]
fn whitespace_keepalives_and_stream_close() {
    let input = format!("{CLIENT_HEADER} \n\t\r <presence/> \n\n<presence/>  </stream:stream >\n ");
    let (events, err) = frame(&input);
    assert_eq!(err, None);
    assert_eq!(events.len(), 4);
    assert!(matches!(events[1], FrameEvent::Element(ref p) if p.is("presence", "jabber:client")));
    assert_eq!(events[3], FrameEvent::StreamClose);

    // Keepalives are consumed as they arrive, never accumulated.
    let mut framer = Framer::new(Limits::default());
    framer.feed(CLIENT_HEADER.as_bytes());
    assert!(matches!(framer.next_event(), Ok(Some(FrameEvent::StreamOpen(_)))));
    for _ in 0..1000 {
        framer.feed(b" ");
        assert_eq!(framer.next_event(), Ok(None));
        assert_eq!(framer.buffered_len(), 0);
    }

    let (events, err) = frame("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>");
    assert_eq!((events.len(), err), (2, None));
    assert_eq!(events[1], FrameEvent::StreamClose);
}

#[test]
fn error_conditions() {
    let h = CLIENT_HEADER;
    let table: Vec<(String, &str)> = vec![
        // not-well-formed
        (format!("{h}<message><body></message></stream:stream>"), "not-well-formed"),
        (format!("{h}<a b='1' b='2'/>"), "not-well-formed"),
        (format!("{h}<a xmlns:p='u' xmlns:q='u' p:b='1' q:b='2'/>"), "not-well-formed"),
        (format!("{h}<p:a/>"), "not-well-formed"),
        (format!("{h}<a p:b='1'/>"), "not-well-formed"),
        (format!("{h}<a>\u{0}</a>"), "not-well-formed"),
        (format!("{h}<a>&#1;</a>"), "not-well-formed"),
        (format!("{h}<a>a & b</a>"), "not-well-formed"),
        (format!("{h}<a b=c/>"), "not-well-formed"),
        (format!("{h}<1a/>"), "not-well-formed"),
        (format!("{h}<a xmlns:p=''/>"), "not-well-formed"),
        (format!("{h}<xml:a/>"), "not-well-formed"),
        (format!("{h}<a xmlns='http://www.w3.org/XML/1998/namespace'/>"), "not-well-formed"),
        (format!("{h}<a><b></a></b></stream:stream>"), "not-well-formed"),
        (format!("{h}</stream:streamx>"), "not-well-formed"),
        (format!("{h}</stream:stream><a/>"), "not-well-formed"),
        ("<stream:stream xmlns='jabber:client'>".into(), "not-well-formed"),
        ("hello<stream:stream/>".into(), "not-well-formed"),
        // restricted-xml
        (format!("{h}<!-- hi -->"), "restricted-xml"),
        (format!("{h}<a><!-- hi --></a>"), "restricted-xml"),
        (format!("{h}<a><?pi x?></a>"), "restricted-xml"),
        (format!("{h}<?pi x?>"), "restricted-xml"),
        (format!("{h}<a>&nbsp;</a>"), "restricted-xml"),
        (format!("{h}<a b='&foo;'/>"), "restricted-xml"),
        ("<!DOCTYPE x [<!ENTITY a 'b'>]><stream:stream/>".into(), "restricted-xml"),
        ("<!ENTITY a 'b'>".into(), "restricted-xml"),
        ("<!-- c --><stream:stream/>".into(), "restricted-xml"),
        (format!(" {h}"), "restricted-xml"),
        (format!("{h}<?xml version='1.0'?>"), "restricted-xml"),
        // invalid-namespace
        ("<stream:stream xmlns:stream='urn:wrong'>".into(), "invalid-namespace"),
        ("<stream xmlns='jabber:client'>".into(), "invalid-namespace"),
        ("<stream:foo xmlns:stream='http://etherx.jabber.org/streams'>".into(), "invalid-namespace"),
        // bad-format
        (format!("{h}hello"), "bad-format"),
        (format!("{h}<a/> x <b/>"), "bad-format"),
        (format!("{h}<![CDATA[x]]>"), "bad-format"),
        // unsupported-encoding
        ("<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>".into(), "unsupported-encoding"),
        ("<?xml version='1.0' encoding='UTF-16'?>".into(), "unsupported-encoding"),
    ];
    for (input, cond) in &table {
        let (_, err) = frame(input);
        let err = err.unwrap_or_else(|| panic!("no error for {input:?}"));
        assert_eq!(err.condition(), *cond, "{input:?}: {err:?}");
    }
}

#[test]
fn mismatched_end_tags_fail_at_once() {
    let h = CLIENT_HEADER;
    let mismatch = XmlError::NotWellFormed("end tag does not match the start tag");
    // None of these inputs ever brings the top-level element back to depth zero: the error
    // must come from the end tag itself, whatever the split.
    let table = [
        "<message><body></message>",
        "<message><body>hi</message><presence/>",
        "<message><body><x xmlns='urn:x'></body>",
        "<a></b>",
        "<ab></a>",
        "<a></ab>",
        "<a><b></B>",
        "<p:a xmlns:p='urn:p'></a>",
        "<a xmlns:p='urn:p'><p:b></b>",
        "<a><b x='>'></a>",
        "<a><b/></b>",
        "<a><![CDATA[</a>]]></b>",
    ];
    for tail in table {
        let (events, err) = frame(&format!("{h}{tail}"));
        assert_eq!(err.as_ref(), Some(&mismatch), "{tail}");
        let complete = events.iter().filter(|e| matches!(e, FrameEvent::Element(_))).count();
        assert_eq!(complete, 0, "{tail}");
    }

    // Names are compared as written, with optional whitespace before `>` in both tags.
    let fine = format!("{h}<a\t x='1'\n><b\r\n>t</b  ><p:c xmlns:p='urn:p'><p:d/></p:c\n></a\t><abc></abc>");
    let (events, err) = frame(&fine);
    assert_eq!(err, None);
    let names: Vec<&str> = elements(&events).iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "abc"]);

    // Reported when the end tag's `>` arrives, not later; earlier elements are kept.
    let mut framer = Framer::new(Limits::default());
    framer.feed(h.as_bytes());
    framer.feed(b"<presence/><message><body>hi</message");
    assert!(matches!(framer.next_event(), Ok(Some(FrameEvent::StreamOpen(_)))));
    assert!(matches!(framer.next_event(), Ok(Some(FrameEvent::Element(_)))));
    assert_eq!(framer.next_event(), Ok(None));
    framer.feed(b">");
    assert_eq!(framer.next_event(), Err(mismatch.clone()));
    assert_eq!(framer.next_event(), Err(mismatch));
}

#[test]
fn invalid_utf8_is_not_well_formed() {
    for bad in [&b"<a>\xff</a>"[..], b"<a b='\xc3'/>", b"<\xe2\x82/>"] {
        let mut input = CLIENT_HEADER.as_bytes().to_vec();
        input.extend_from_slice(bad);
        let (_, err) = frame_with(&input, Limits::default());
        assert_eq!(err.map(|e| e.condition()), Some("not-well-formed"));
    }
}

#[test]
fn errors_are_sticky() {
    let mut framer = Framer::new(Limits::default());
    framer.feed(b"<!-- x -->");
    let err = framer.next_event().unwrap_err();
    framer.feed(CLIENT_HEADER.as_bytes());
    assert_eq!(framer.next_event(), Err(err));
    assert_eq!(framer.buffered_len(), 10, "input after an error is dropped");
}

#[test]
fn escaping_round_trips() {
    let table: &[&str] = &[
        "<a xmlns='urn:a' b='&lt;&amp;&gt;&apos;&quot;' c=\"'\">&lt;x&gt; &amp; ]]&gt; \"'</a>",
        "<a b='tab&#9;nl&#10;cr&#13;' c='lit\tnl\ncr\r\nx'>l1\r\nl2\rl3&#13;&#x1F600;</a>",
        "<a><![CDATA[<not a tag> & ]]]]><![CDATA[>]]>tail</a>",
        "<p:a xmlns:p='urn:p' xmlns='urn:d' p:x='1' xml:lang='fr'><b/><p:c xmlns:p='urn:q'/></p:a>",
        "<a xmlns='urn:a'><b xmlns=''><c/></b> <d>é€😀</d></a>",
        "<a>&#65;&#x42;&#x10FFFF;</a>",
    ];
    for input in table {
        let first = Element::parse(input.as_bytes()).unwrap_or_else(|e| panic!("{input}: {e:?}"));
        let bytes = first.to_bytes("");
        let second = Element::parse(&bytes).unwrap();
        assert_eq!(first, second, "{input} -> {}", String::from_utf8_lossy(&bytes));
    }
    let e = Element::parse(table[1].as_bytes()).unwrap();
    assert_eq!(e.attr("b"), Some("tab\tnl\ncr\r"));
    assert_eq!(e.attr("c"), Some("lit nl cr x"));
    assert_eq!(e.text(), "l1\nl2\nl3\r\u{1F600}");
    let e = Element::parse(table[2].as_bytes()).unwrap();
    assert_eq!(e.text(), "<not a tag> & ]]>tail");
    assert_eq!(e.children.len(), 1);
}

#[test]
fn declined_elements_are_consumed_unbuilt_and_still_framed() {
    let input = format!("{CLIENT_HEADER}<presence from='a'/><message><body>1</body></message><presence/><iq/>");
    let mut framer = Framer::new(Limits::default());
    framer.feed(input.as_bytes());
    let mut seen = Vec::new();
    let mut names = Vec::new();
    let mut not_presence = |raw: &[u8]| {
        seen.push(String::from_utf8_lossy(raw).into_owned());
        !raw.starts_with(b"<presence")
    };
    while let Some(event) = framer.next_event_where(&mut not_presence).unwrap() {
        if let FrameEvent::Element(el) = event {
            names.push(el.name);
        }
    }
    assert_eq!(names, ["message", "iq"]);
    assert_eq!(seen, ["<presence from='a'/>", "<message><body>1</body></message>", "<presence/>", "<iq/>"]);
    assert_eq!(framer.buffered_len(), 0);
    // A declined element is still checked for well-formedness.
    framer.feed(b"<presence></iq>");
    assert!(framer.next_event_where(&mut |_| false).is_err());
}
