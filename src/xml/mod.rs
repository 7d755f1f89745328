//! Framing of an XMPP XML stream into a header and complete top-level elements.
//!
//! An XMPP stream (RFC 6120 §4) is one long XML document: the initiating entity sends a
//! `<stream:stream>` start tag (§4.7), then any number of first-level children (stanzas and
//! nonzas, §4.1), then `</stream:stream>` (§4.4). The server must act on each first-level
//! child as soon as it is complete, long before the document ends, so this module turns bytes
//! into those units:
//!
//! ```text
//! socket bytes ──feed──▶ buffer ──lexer──▶ token boundaries ──▶ open-tag tracking
//!                                                                   │ element complete
//!                                                                   ▼
//!                      FrameEvent ◀── owned Element ◀── quick-xml over that exact slice
//! ```
//!
//! 1. [`Framer::feed`] appends whatever the socket delivered. The caller owns the socket, so
//!    framing is synchronous and cancel-safe: the framer only keeps plain state between calls.
//! 2. A resumable byte scanner finds where the next tag, text run or CDATA section ends,
//!    remembering quotes and partial markup across calls. It resumes where it stopped, so a
//!    stanza delivered one byte per read costs the same as one delivered whole. It rejects
//!    comments, DTDs and processing instructions (§11.1) as soon as they start.
//! 3. The framer tracks the open start tags from those tokens (as offsets into the buffer, at
//!    most `max_depth` of them) and fails the stream as soon as an end tag does not repeat the
//!    qualified name of the innermost one, so a peer cannot park a broken element and keep the
//!    connection idle. Before the header it accepts an optional XML declaration (which must
//!    name UTF-8 if it names an encoding, §11.6). Between elements it drops whitespace
//!    keepalives (§4.6.1) and rejects other text as `bad-format`.
//!    While an element is incomplete, the scanner never looks past `max_stanza_bytes` from its
//!    first byte: a peer cannot make us buffer or scan more than that (§13.12, resource
//!    exhaustion) before it gets `policy-violation`. Depth is limited the same way.
//! 4. When the last open tag is closed, quick-xml's slice reader parses exactly that element's
//!    bytes into an owned [`Element`], resolving namespaces against the declarations of the
//!    stream header (§4.8: so `<message/>` gets `jabber:client` and `<stream:features/>` gets
//!    `http://etherx.jabber.org/streams`). Names, characters, references and attribute counts
//!    are checked there; anything wrong becomes the matching stream error condition (§4.9.3).
//! 5. [`Framer::reset`] starts over after STARTTLS (§5.4.3.3) and SASL success (§6.4.6), when
//!    both sides open a new stream.
//!
//! [`Element::write_to`] serialises a tree back, declaring a namespace only where it differs
//! from the surrounding default, and escaping so that parsing the output gives the same tree.

mod build;
mod element;
mod error;
mod framer;
mod header;
mod lexer;
mod names;
mod write;

#[cfg(test)]
mod tests;

pub use element::{Element, Node};
pub use error::{Limit, XmlError};
pub use framer::{FrameEvent, Framer, Limits};
pub use header::{STREAMS_NS, StreamHeader};
pub use write::write_attr;
