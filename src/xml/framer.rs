//! The incremental stream framer: bytes in, stream header and top-level elements out.
//!
//! See the module documentation of [`crate::xml`] for the overall flow. This file holds the
//! state machine: which phase the stream is in, where the current top-level element started,
//! and which of its elements are still open. An end tag that does not repeat the name of the
//! innermost open start tag fails the stream at once, without waiting for the top-level element
//! to end (a peer could otherwise leave it open indefinitely).

use super::build::{build_element, build_open_tag};
use super::element::Element;
use super::error::{Limit, XmlError, nwf};
use super::header::{STREAMS_NS, StreamHeader, check_declaration};
use super::lexer::{Lexer, Token, TokenKind};
use super::names::NsScope;

/// Hard limits applied to every incoming element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest top-level element, in bytes from its `<` to its final `>` (also the largest
    /// stream header including any XML declaration before it). Default 256 KiB.
    pub max_stanza_bytes: usize,
    /// Deepest nesting; a top-level element is at depth 1, its children at 2. Default 32.
    pub max_depth: usize,
    /// Most attributes on one element, namespace declarations included. Default 64.
    pub max_attrs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_stanza_bytes: 256 * 1024, max_depth: 32, max_attrs: 64 }
    }
}

/// What the framer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEvent {
    /// The peer opened (or, after [`Framer::reset`], re-opened) the stream.
    StreamOpen(StreamHeader),
    /// A complete top-level element: a stanza or a nonza.
    Element(Element),
    /// The peer sent `</stream:stream>`.
    StreamClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Before the stream header: optional XML declaration and whitespace.
    Prolog,
    /// Inside the stream: top-level elements and whitespace.
    Stanzas,
    /// After `</stream:stream>`: only whitespace may follow.
    Closed,
    /// A fatal error was returned; it is returned again on every call.
    Failed(XmlError),
}

/// Incremental framer for one direction of an XMPP stream; see the [module docs](crate::xml).
#[derive(Debug, Clone)]
pub struct Framer {
    limits: Limits,
    buf: Vec<u8>,
    /// First byte of `buf` not yet consumed by an event.
    start: usize,
    lexer: Lexer,
    phase: Phase,
    /// The elements open inside the current top-level element, outermost first (empty between
    /// elements), each as the offset of its start tag's `<` from `item_start`: the names stay in
    /// `buf` until the element is emitted, so they are not copied. At most `max_depth` entries.
    open: Vec<usize>,
    /// Where the current top-level element began, when `open` is not empty.
    item_start: usize,
    /// Namespaces declared on the stream header, inherited by top-level elements.
    scope: NsScope,
    /// The root's qualified name as written, which `</...>` must repeat.
    root_qname: String,
    /// A self-closed header (`<stream:stream/>`) still owes a `StreamClose`.
    pending_close: bool,
    /// Parsing a lone element (`Element::parse`): no header, no stream end tag.
    fragment: bool,
    /// A server stream: its default namespace `jabber:server` is read as `jabber:client`.
    server_as_client: bool,
}

impl Framer {
    /// A framer expecting a stream header.
    pub fn new(limits: Limits) -> Self {
        Framer {
            limits,
            buf: Vec::new(),
            start: 0,
            lexer: Lexer::new(0),
            phase: Phase::Prolog,
            open: Vec::new(),
            item_start: 0,
            scope: NsScope::default(),
            root_qname: String::new(),
            pending_close: false,
            fragment: false,
            server_as_client: false,
        }
    }

    /// Stanzas of a server stream (`jabber:server`, RFC 6120 §4.8.3) come out in the
    /// `jabber:client` namespace, the one the router and modules know; the two carry the same
    /// stanzas. Elements in any other namespace are left as they are.
    pub fn present_server_as_client(&mut self) {
        self.server_as_client = true;
    }

    /// A framer that expects top-level elements straight away, with nothing in scope.
    pub(crate) fn fragment(limits: Limits) -> Self {
        let mut framer = Framer::new(limits);
        framer.fragment = true;
        framer.phase = Phase::Stanzas;
        framer
    }

    /// Appends received bytes. Call [`next_event`](Self::next_event) until it returns
    /// `Ok(None)` afterwards: the size limit is checked there, so the memory held is bounded by
    /// `max_stanza_bytes` plus whatever one `feed` delivered.
    pub fn feed(&mut self, data: &[u8]) {
        if matches!(self.phase, Phase::Failed(_)) {
            return;
        }
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// The next event, `Ok(None)` if more bytes are needed. After an error the stream is dead
    /// (RFC 6120 §4.9.1.1): every further call returns the same error.
    pub fn next_event(&mut self) -> Result<Option<FrameEvent>, XmlError> {
        self.next_event_where(&mut |_| true)
    }

    /// As [`next_event`](Self::next_event), but a complete top-level element is built only if
    /// `build` accepts its bytes; the others are consumed unbuilt, after the same framing
    /// checks. For a reader that looks at a few of the elements it receives (a load generator
    /// counting presence floods): building is most of the cost of reading an element.
    pub fn next_event_where(&mut self, build: &mut dyn FnMut(&[u8]) -> bool) -> Result<Option<FrameEvent>, XmlError> {
        if let Phase::Failed(err) = &self.phase {
            return Err(err.clone());
        }
        let result = self.advance(build);
        if let Err(err) = &result {
            self.phase = Phase::Failed(err.clone());
        }
        result
    }

    /// Forgets everything, including bytes already received but not yet framed, and expects
    /// a new stream header. Call it right after sending `<proceed/>` (RFC 6120 §5.4.3.3) or
    /// `<success/>` (§6.4.6): dropping pending bytes is what stops a peer from injecting
    /// plaintext that would be read as if it came through TLS.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.lexer = Lexer::new(0);
        self.phase = if self.fragment { Phase::Stanzas } else { Phase::Prolog };
        self.open.clear();
        self.item_start = 0;
        self.scope = NsScope::default();
        self.root_qname.clear();
        self.pending_close = false;
    }

    /// Bytes received but not yet returned as part of an event.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Gives the buffer's memory back when nothing is pending, so an idle connection holds no
    /// heap here; a partial element is kept, compacted to the front.
    pub fn shrink_when_idle(&mut self) {
        self.compact();
        if self.buf.is_empty() {
            // Nothing buffered means no element is open either.
            self.buf = Vec::new();
            self.open = Vec::new();
        } else if self.buf.capacity() > 2 * self.buf.len() {
            self.buf.shrink_to_fit();
        }
    }

    /// Capacity of the internal buffer, for tests of the memory behaviour.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Capacity of the open-element stack, for tests of the memory behaviour.
    #[cfg(test)]
    pub(crate) fn open_capacity(&self) -> usize {
        self.open.capacity()
    }

    /// Moves unconsumed bytes to the front. The allocation is kept, so steady traffic does not
    /// reallocate; only the (usually short) partial tail is copied.
    fn compact(&mut self) {
        let n = self.start;
        if n == 0 {
            return;
        }
        self.buf.drain(..n);
        self.start = 0;
        self.item_start = self.item_start.saturating_sub(n);
        self.lexer.shift(n);
    }

    fn advance(&mut self, build: &mut dyn FnMut(&[u8]) -> bool) -> Result<Option<FrameEvent>, XmlError> {
        if self.pending_close {
            self.pending_close = false;
            self.phase = Phase::Closed;
            return Ok(Some(FrameEvent::StreamClose));
        }
        while let Some(tok) = self.next_token()? {
            let event = match self.phase {
                Phase::Prolog => self.on_prolog(tok)?,
                Phase::Stanzas if self.open.is_empty() => self.on_top_level(tok, build)?,
                Phase::Stanzas => self.inside_element(tok, build)?,
                Phase::Closed | Phase::Failed(_) => self.after_close(tok)?,
            };
            if event.is_some() {
                return Ok(event);
            }
        }
        Ok(None)
    }

    /// Runs the lexer within the size budget of whatever is being buffered: the whole prolog,
    /// the current top-level element, or the current token between elements.
    fn next_token(&mut self) -> Result<Option<Token>, XmlError> {
        let base = match self.phase {
            Phase::Prolog => self.start,
            Phase::Stanzas if !self.open.is_empty() => self.item_start,
            _ => self.lexer.token_start(),
        };
        let limit = base.saturating_add(self.limits.max_stanza_bytes);
        // The XML declaration is only legal as the very first bytes of the stream.
        let pi_allowed = self.phase == Phase::Prolog && self.lexer.token_start() == self.start;
        match self.lexer.next(&self.buf, limit, pi_allowed)? {
            Some(tok) => Ok(Some(tok)),
            None if self.buf.len() > limit => Err(XmlError::PolicyViolation(Limit::StanzaSize)),
            None => Ok(None),
        }
    }

    fn on_prolog(&mut self, tok: Token) -> Result<Option<FrameEvent>, XmlError> {
        match tok.kind {
            TokenKind::Text if is_whitespace(&self.buf[tok.start..tok.end]) => Ok(None),
            TokenKind::Text => Err(nwf("text before the stream header")),
            TokenKind::Pi => check_declaration(&self.buf[tok.start..tok.end]).map(|()| None),
            TokenKind::Restricted(why) => Err(XmlError::RestrictedXml(why)),
            TokenKind::Start | TokenKind::Empty => self.open_stream(tok).map(Some),
            TokenKind::End | TokenKind::CData => Err(nwf("expected the stream header")),
        }
    }

    fn open_stream(&mut self, tok: Token) -> Result<FrameEvent, XmlError> {
        let mut scope = NsScope::default();
        let (qname, tag) = build_open_tag(&self.buf[tok.start..tok.end], &mut scope, &self.limits)?;
        if tag.local != "stream" || tag.ns != STREAMS_NS {
            return Err(XmlError::InvalidNamespace);
        }
        if self.server_as_client && scope.resolve("") == Some("jabber:server") {
            scope.declare("", "jabber:client")?;
        }
        self.scope = scope;
        self.root_qname = qname;
        self.start = tok.end;
        self.phase = Phase::Stanzas;
        self.pending_close = tok.kind == TokenKind::Empty;
        let header = StreamHeader::from_attrs(tag.local, tag.ns, tag.raw_attrs);
        Ok(FrameEvent::StreamOpen(header))
    }

    /// A token directly inside the stream element (depth 1 in RFC 6120 §4.1 terms).
    fn on_top_level(
        &mut self,
        tok: Token,
        build: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Option<FrameEvent>, XmlError> {
        match tok.kind {
            // Whitespace keepalives (RFC 6120 §4.6.1) are consumed, never buffered.
            TokenKind::Text if is_whitespace(&self.buf[tok.start..tok.end]) => {
                self.start = tok.end;
                Ok(None)
            }
            TokenKind::Text | TokenKind::CData => Err(XmlError::BadFormat),
            TokenKind::Start => {
                self.check_depth(1)?;
                self.item_start = tok.start;
                self.push_open(tok.start);
                Ok(None)
            }
            TokenKind::Empty => {
                self.check_depth(1)?;
                self.emit_element(tok.start, tok.end, build)
            }
            TokenKind::End => self.close_stream(tok).map(Some),
            TokenKind::Restricted(why) => Err(XmlError::RestrictedXml(why)),
            TokenKind::Pi => Err(XmlError::RestrictedXml("processing instructions are not allowed")),
        }
    }

    /// A token inside a top-level element: only the open start tags are tracked until the
    /// element ends; everything else is checked when it is built.
    fn inside_element(
        &mut self,
        tok: Token,
        build: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Option<FrameEvent>, XmlError> {
        match tok.kind {
            TokenKind::Text | TokenKind::CData => Ok(None),
            TokenKind::Start => {
                self.check_depth(self.open.len() + 1)?;
                self.push_open(tok.start);
                Ok(None)
            }
            TokenKind::Empty => self.check_depth(self.open.len() + 1).map(|()| None),
            TokenKind::End => {
                let open = self.open.pop().ok_or(nwf("unexpected end tag"))?;
                let start_tag = &self.buf[self.item_start + open..tok.start];
                if end_tag_name(&self.buf[tok.start..tok.end]) != start_tag_name(start_tag) {
                    return Err(nwf("end tag does not match the start tag"));
                }
                if !self.open.is_empty() {
                    return Ok(None);
                }
                self.emit_element(self.item_start, tok.end, build)
            }
            TokenKind::Restricted(why) => Err(XmlError::RestrictedXml(why)),
            TokenKind::Pi => Err(XmlError::RestrictedXml("processing instructions are not allowed")),
        }
    }

    fn after_close(&mut self, tok: Token) -> Result<Option<FrameEvent>, XmlError> {
        if tok.kind == TokenKind::Text && is_whitespace(&self.buf[tok.start..tok.end]) {
            self.start = tok.end;
            return Ok(None);
        }
        Err(nwf("data after the end of the stream"))
    }

    /// Records a start tag beginning at buffer index `start`; the caller has checked the depth.
    /// The stack grows to at most `max_depth` entries, not to the next power of two.
    fn push_open(&mut self, start: usize) {
        if self.open.len() == self.open.capacity() {
            let want = (self.open.capacity() * 2).max(4).min(self.limits.max_depth);
            self.open.reserve_exact(want.saturating_sub(self.open.len()));
        }
        self.open.push(start - self.item_start);
    }

    fn check_depth(&self, depth: usize) -> Result<(), XmlError> {
        if depth > self.limits.max_depth {
            return Err(XmlError::PolicyViolation(Limit::Depth));
        }
        Ok(())
    }

    /// The element in `buf[start..end]` is complete: built into an event, or consumed without
    /// one when `build` declines it.
    fn emit_element(
        &mut self,
        start: usize,
        end: usize,
        build: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Option<FrameEvent>, XmlError> {
        let bytes = &self.buf[start..end];
        let element = if build(bytes) { Some(build_element(bytes, &mut self.scope, &self.limits)?) } else { None };
        self.start = end;
        self.open.clear();
        Ok(element.map(FrameEvent::Element))
    }

    fn close_stream(&mut self, tok: Token) -> Result<FrameEvent, XmlError> {
        if self.fragment || end_tag_name(&self.buf[tok.start..tok.end]) != self.root_qname.as_bytes() {
            return Err(nwf("end tag does not match the stream header"));
        }
        self.start = tok.end;
        self.phase = Phase::Closed;
        Ok(FrameEvent::StreamClose)
    }
}

/// The qualified name of a start tag as written: from after `<` up to whitespace, `/` or `>`.
/// Anything else wrong with the name is reported when the element is built.
fn start_tag_name(tag: &[u8]) -> &[u8] {
    let rest = tag.get(1..).unwrap_or_default();
    let len = rest.iter().position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>')).unwrap_or(rest.len());
    &rest[..len]
}

/// The name of an end tag `</name S?>` as written: the delimiters and the optional trailing
/// whitespace stripped.
fn end_tag_name(tag: &[u8]) -> &[u8] {
    tag.get(2..tag.len().saturating_sub(1)).unwrap_or_default().trim_ascii_end()
}

fn is_whitespace(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}
