//! Fuzzes the stream framer and `Element::parse`.
//!
//! Properties checked for arbitrary input:
//! * nothing panics;
//! * feeding the stream in random pieces gives exactly the events (and the error) that feeding
//!   it at once gives;
//! * every element that parses serialises to bytes that parse back to the same tree, both
//!   standalone and inside a stream whose default namespace it inherits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use starling::xml::{Element, FrameEvent, Framer, Limits, XmlError};

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
    to='example.com' version='1.0'>";

type Outcome = (Vec<FrameEvent>, Option<XmlError>);

/// Feeds `data` in pieces whose sizes come from `sizes`, collecting events until an error.
fn frame(data: &[u8], limits: Limits, mut sizes: impl FnMut() -> usize) -> Outcome {
    let mut framer = Framer::new(limits);
    let mut events = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(sizes().clamp(1, rest.len()));
        rest = tail;
        framer.feed(piece);
        loop {
            match framer.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(err) => return (events, Some(err)),
            }
        }
    }
    (events, None)
}

/// Limits roomy enough for re-parsing our own output, which may be longer than the input
/// (escapes) and carry copied-down prefix declarations.
fn relaxed(limits: Limits) -> Limits {
    Limits {
        max_stanza_bytes: usize::MAX,
        max_attrs: limits.max_attrs * 2 + 8,
        ..limits
    }
}

fn check_round_trip(element: &Element, limits: Limits) {
    let standalone = element.to_bytes("");
    let parsed = Element::parse_with_limits(&standalone, relaxed(limits));
    assert_eq!(
        parsed.as_ref(),
        Ok(element),
        "{}",
        String::from_utf8_lossy(&standalone)
    );

    let mut stream = HEADER.to_vec();
    element.write_to(&mut stream, "jabber:client");
    let (events, err) = frame(&stream, relaxed(limits), || usize::MAX);
    assert_eq!(err, None);
    assert_eq!(events.get(1), Some(&FrameEvent::Element(element.clone())));
}

fuzz_target!(|input: &[u8]| {
    let Some((&seed, data)) = input.split_first() else {
        return;
    };
    // Small limits half of the time, so the limit paths are exercised too.
    let limits = if seed & 1 == 0 {
        Limits::default()
    } else {
        Limits {
            max_stanza_bytes: 200,
            max_depth: 4,
            max_attrs: 4,
        }
    };
    let mut stream = HEADER.to_vec();
    stream.extend_from_slice(data);

    let whole = frame(&stream, limits, || usize::MAX);
    let mut state = u32::from(seed) | 0x9e37_0000;
    let pieces = frame(&stream, limits, || {
        // xorshift32: a deterministic split pattern per input.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 17) as usize
    });
    assert_eq!(whole, pieces);

    for event in &whole.0 {
        if let FrameEvent::Element(element) = event {
            check_round_trip(element, limits);
        }
    }
    if let Ok(element) = Element::parse_with_limits(data, limits) {
        check_round_trip(&element, limits);
    }
});
