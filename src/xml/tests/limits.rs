//! Size, depth and attribute limits, reset, and buffer memory behaviour.

use super::*;

/// A `<a>xxx</a>` element of exactly `len` bytes (len >= 7).
fn element_of_len(len: usize) -> String {
    format!("<a>{}</a>", "x".repeat(len - 7))
}

#[test]
fn stanza_size_limit_boundary() {
    let limits = Limits { max_stanza_bytes: 300, ..Limits::default() };
    let short = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";
    let at = format!("{short}{}", element_of_len(300));
    let (events, err) = frame_with(at.as_bytes(), limits);
    assert_eq!((events.len(), err), (2, None));

    let over = format!("{short}{}", element_of_len(301));
    let (events, err) = frame_with(over.as_bytes(), limits);
    assert_eq!(events.len(), 1);
    assert_eq!(err, Some(XmlError::PolicyViolation(Limit::StanzaSize)));

    // An incomplete element is rejected once it passes the limit, not when it ends.
    let mut framer = Framer::new(limits);
    framer.feed(short.as_bytes());
    framer.next_event().unwrap();
    framer.feed(b"<a>");
    framer.feed(&[b'x'; 297]);
    assert_eq!(framer.next_event(), Ok(None));
    assert_eq!(framer.buffered_len(), 300);
    framer.feed(b"x");
    assert_eq!(framer.next_event(), Err(XmlError::PolicyViolation(Limit::StanzaSize)));

    // The header (with its declaration) is bounded too.
    let header_limits = Limits { max_stanza_bytes: short.len(), ..Limits::default() };
    assert_eq!(frame_with(short.as_bytes(), header_limits).1, None);
    let padded = format!(" {short}");
    let (_, err) = frame_with(padded.as_bytes(), header_limits);
    assert_eq!(err, Some(XmlError::PolicyViolation(Limit::StanzaSize)));
}

#[test]
fn depth_and_attribute_limit_boundaries() {
    let limits = Limits { max_depth: 3, max_attrs: 2, ..Limits::default() };
    let h = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";
    let table: &[(String, Option<Limit>)] = &[
        (format!("{h}<a><b><c/></b></a>"), None),
        (format!("{h}<a><b><c><d/></c></b></a>"), Some(Limit::Depth)),
        (format!("{h}<a><b><c><d></d></c></b></a>"), Some(Limit::Depth)),
        (format!("{h}<a x='1' y='2'/>"), None),
        (format!("{h}<a x='1' y='2' z='3'/>"), Some(Limit::Attributes)),
        (format!("{h}<a xmlns='urn:a' x='1' y='2'/>"), Some(Limit::Attributes)),
        (format!("{h}<a><b x='1' y='2' z='3'/></a>"), Some(Limit::Attributes)),
    ];
    for (input, want) in table {
        let (_, err) = frame_with(input.as_bytes(), limits);
        assert_eq!(err, want.map(XmlError::PolicyViolation), "{input}");
    }
    let deep = format!("<a>{}", "<a>".repeat(40));
    assert_eq!(Element::parse(deep.as_bytes()), Err(XmlError::PolicyViolation(Limit::Depth)));
}

#[test]
fn reset_expects_a_new_header_and_drops_pending_bytes() {
    let mut framer = Framer::new(Limits::default());
    framer.feed(CLIENT_HEADER.as_bytes());
    framer.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message><body>inj");
    assert!(matches!(framer.next_event(), Ok(Some(FrameEvent::StreamOpen(_)))));
    assert!(matches!(framer.next_event(), Ok(Some(FrameEvent::Element(_)))));
    assert_eq!(framer.next_event(), Ok(None));
    assert!(framer.buffered_len() > 0);

    framer.reset();
    assert_eq!(framer.buffered_len(), 0);
    framer.feed(b"</body></message>");
    assert!(framer.next_event().is_err(), "old partial stanza is gone");

    framer.reset();
    let second = "<stream:stream xmlns='jabber:client' \
                  xmlns:stream='http://etherx.jabber.org/streams' to='im.example.com'>";
    framer.feed(second.as_bytes());
    match framer.next_event() {
        Ok(Some(FrameEvent::StreamOpen(h))) => assert_eq!(h.to.as_deref(), Some("im.example.com")),
        other => panic!("{other:?}"),
    }
    framer.feed(b"<presence/>");
    assert!(matches!(framer.next_event(), Ok(Some(FrameEvent::Element(_)))));
}

#[test]
fn shrink_when_idle_frees_the_buffer() {
    let mut framer = Framer::new(Limits::default());
    framer.feed(CLIENT_HEADER.as_bytes());
    framer.next_event().unwrap();
    let big = format!("<message><body>{}</body></message>", "x".repeat(10_000));
    framer.feed(big.as_bytes());
    framer.feed(b"<presence");
    assert!(matches!(framer.next_event(), Ok(Some(FrameEvent::Element(_)))));
    assert_eq!(framer.next_event(), Ok(None));

    framer.shrink_when_idle();
    assert_eq!(framer.buffered_len(), 9);
    assert!(framer.capacity() < 1000, "partial data compacted and shrunk");
    framer.feed(b"/>");
    assert!(matches!(framer.next_event(), Ok(Some(FrameEvent::Element(_)))));
    framer.shrink_when_idle();
    assert_eq!(framer.capacity(), 0);
    framer.feed(b"<presence/>");
    assert!(matches!(framer.next_event(), Ok(Some(FrameEvent::Element(_)))));
}

#[test]
fn open_tag_stack_is_bounded_by_max_depth_and_freed_when_idle() {
    for max_depth in [1, 3, 5, 32] {
        let limits = Limits { max_depth, ..Limits::default() };
        let mut framer = Framer::new(limits);
        framer.feed(CLIENT_HEADER.as_bytes());
        framer.next_event().unwrap();
        let names: Vec<String> = (0..max_depth).map(|i| format!("e{i}")).collect();
        let open: String = names.iter().map(|n| format!("<{n}>")).collect();
        let close: String = names.iter().rev().map(|n| format!("</{n}>")).collect();
        framer.feed(open.as_bytes());
        assert_eq!(framer.next_event(), Ok(None));
        assert!(framer.open_capacity() <= max_depth, "{} > {max_depth}", framer.open_capacity());
        framer.feed(close.as_bytes());
        assert!(matches!(framer.next_event(), Ok(Some(FrameEvent::Element(_)))), "max_depth {max_depth}");
        framer.shrink_when_idle();
        assert_eq!(framer.open_capacity(), 0);
    }
}

#[test]
fn buffer_is_reused_across_stanzas() {
    let mut framer = Framer::new(Limits::default());
    framer.feed(CLIENT_HEADER.as_bytes());
    framer.next_event().unwrap();
    framer.feed(&[b' '; 4096]);
    assert_eq!(framer.next_event(), Ok(None));
    let capacity = framer.capacity();
    for _ in 0..100 {
        framer.feed(b"<message to='a@b'><body>hello</body></message><presence");
        assert!(framer.next_event().unwrap().is_some());
        assert_eq!(framer.next_event(), Ok(None));
        framer.feed(b"/>");
        assert!(framer.next_event().unwrap().is_some());
    }
    assert_eq!(framer.capacity(), capacity);
}
