//! Table-driven tests of the framer against RFC 6120 examples, the error conditions of
//! §4.9.3, the limits, and arbitrary splits of the input. Every input goes through
//! [`frame_with`], which also checks that byte-at-a-time feeding gives the same result.

use super::*;

mod limits;
mod stream;

const CLIENT_HEADER: &str = "<?xml version='1.0'?><stream:stream from='juliet@im.example.com' \
    to='im.example.com' version='1.0' xml:lang='en' xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams'>";

const SERVER_HEADER: &str = "<stream:stream from='im.example.com' id='g4qSvGvBxJ+xeAd7QKezOQJFFlw=' \
    to='example.net' version='1.0' xmlns='jabber:server' xmlns:db='jabber:server:dialback' \
    xmlns:stream='http://etherx.jabber.org/streams'>";

/// Feeds `input` in `chunk`-sized pieces, collecting events until the first error.
fn run(input: &[u8], chunk: usize, limits: Limits) -> (Vec<FrameEvent>, Option<XmlError>) {
    let mut framer = Framer::new(limits);
    let mut events = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
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

/// Runs whole and byte by byte (and a few other splits), asserting identical results.
fn frame_with(input: &[u8], limits: Limits) -> (Vec<FrameEvent>, Option<XmlError>) {
    let whole = run(input, input.len(), limits);
    for chunk in [1, 2, 3, 7, 64] {
        assert_eq!(run(input, chunk, limits), whole, "chunk {chunk} differs");
    }
    whole
}

fn frame(input: &str) -> (Vec<FrameEvent>, Option<XmlError>) {
    frame_with(input.as_bytes(), Limits::default())
}

fn elements(events: &[FrameEvent]) -> Vec<&Element> {
    events
        .iter()
        .filter_map(|e| match e {
            FrameEvent::Element(el) => Some(el),
            _ => None,
        })
        .collect()
}

fn header(events: &[FrameEvent]) -> &StreamHeader {
    match events.first() {
        Some(FrameEvent::StreamOpen(h)) => h,
        other => panic!("expected a header, got {other:?}"),
    }
}
