//! A resumable byte-level scanner that finds markup boundaries.
//!
//! It does not parse: it only knows enough XML to say where a tag, a text run or a CDATA section
//! ends (quotes inside tags, `]]>` inside CDATA) and to reject restricted constructs (RFC 6120
//! §11.1) as soon as their first bytes are seen. Its whole state is a few integers, so the framer
//! can stop at any byte when the socket has nothing more and resume later without rescanning:
//! total work stays linear in the input however it is split.
//!
//! All positions are absolute indices into the framer's buffer; the framer shifts them when it
//! compacts the buffer.

use super::error::{XmlError, nwf};

/// What kind of markup a [`Token`] covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A run of character data. Long runs may be reported in several pieces.
    Text,
    /// A start tag `<name ...>`.
    Start,
    /// An empty-element tag `<name .../>`.
    Empty,
    /// An end tag `</name>`.
    End,
    /// A complete `<![CDATA[...]]>` section.
    CData,
    /// A complete processing instruction; only produced when the caller allows one (the XML
    /// declaration).
    Pi,
    /// The start of a comment, DTD, declaration or processing instruction, with the reason.
    Restricted(&'static str),
}

/// One delimited piece of markup: `buf[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between tokens.
    Idle,
    /// Inside character data.
    Text,
    /// Just after `<`.
    Lt,
    /// Inside a start tag; `quote` is the open quote byte or 0, `slash` means the last byte was
    /// an unquoted `/`.
    Start { quote: u8, slash: bool },
    /// Inside an end tag.
    End,
    /// After `<!`, having matched this many bytes of `[CDATA[`.
    Bang(usize),
    /// Inside CDATA, having seen this many consecutive `]` (at most 2).
    CData(u8),
    /// Inside a processing instruction; `question` means the last byte was `?`.
    Pi { question: bool },
}

const CDATA_OPEN: &[u8] = b"[CDATA[";

/// The scanner state; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Lexer {
    pos: usize,
    tok_start: usize,
    state: State,
}

impl Lexer {
    /// A scanner that starts at buffer index `pos`.
    pub(crate) fn new(pos: usize) -> Self {
        Lexer { pos, tok_start: pos, state: State::Idle }
    }

    /// Where the token currently being scanned began (or the next one will begin).
    pub(crate) fn token_start(&self) -> usize {
        if self.state == State::Idle { self.pos } else { self.tok_start }
    }

    /// Adjusts positions after the first `n` bytes of the buffer were removed.
    pub(crate) fn shift(&mut self, n: usize) {
        self.pos = self.pos.saturating_sub(n);
        self.tok_start = self.tok_start.saturating_sub(n);
    }

    /// Scans `buf` up to (not including) index `limit` for the next token.
    ///
    /// `Ok(None)` means the bytes below `limit` end inside a token; the caller decides whether
    /// that means "wait for more" or "too large". A text run reaching the end is reported as a
    /// token anyway, so whitespace between stanzas never has to be buffered. `pi_allowed` makes
    /// `<?` scan as a processing instruction instead of failing at once.
    pub(crate) fn next(&mut self, buf: &[u8], limit: usize, pi_allowed: bool) -> Result<Option<Token>, XmlError> {
        let end = buf.len().min(limit);
        while self.pos < end {
            if let Some(tok) = self.step(buf, end, pi_allowed)? {
                return Ok(Some(tok));
            }
        }
        if self.state == State::Text && self.pos > self.tok_start {
            return Ok(Some(self.emit(TokenKind::Text)));
        }
        Ok(None)
    }

    fn emit(&mut self, kind: TokenKind) -> Token {
        self.state = State::Idle;
        Token { kind, start: self.tok_start, end: self.pos }
    }

    /// Advances by at least one byte (`self.pos < end` on entry).
    fn step(&mut self, buf: &[u8], end: usize, pi_allowed: bool) -> Result<Option<Token>, XmlError> {
        match self.state {
            State::Idle => {
                self.tok_start = self.pos;
                if buf[self.pos] == b'<' {
                    self.pos += 1;
                    self.state = State::Lt;
                } else {
                    self.state = State::Text;
                }
                Ok(None)
            }
            State::Text => Ok(self.text(buf, end)),
            State::Lt => Ok(self.after_lt(buf[self.pos], pi_allowed)),
            State::Start { quote, slash } => self.start_tag(buf, end, quote, slash),
            State::End => self.end_tag(buf, end),
            State::Bang(matched) => self.bang(buf[self.pos], matched),
            State::CData(brackets) => Ok(self.cdata(buf, end, brackets)),
            State::Pi { question } => Ok(self.pi(buf, end, question)),
        }
    }

    fn text(&mut self, buf: &[u8], end: usize) -> Option<Token> {
        match buf[self.pos..end].iter().position(|&b| b == b'<') {
            Some(i) => {
                self.pos += i;
                Some(self.emit(TokenKind::Text))
            }
            None => {
                self.pos = end;
                None
            }
        }
    }

    fn after_lt(&mut self, b: u8, pi_allowed: bool) -> Option<Token> {
        match b {
            b'/' => {
                self.pos += 1;
                self.state = State::End;
            }
            b'!' => {
                self.pos += 1;
                self.state = State::Bang(0);
            }
            b'?' if pi_allowed => {
                self.pos += 1;
                self.state = State::Pi { question: false };
            }
            b'?' => {
                self.pos += 1;
                let why = "processing instructions are not allowed";
                return Some(self.emit(TokenKind::Restricted(why)));
            }
            // The name is checked by the parser later; here it is just part of the tag.
            _ => self.state = State::Start { quote: 0, slash: false },
        }
        None
    }

    fn start_tag(&mut self, buf: &[u8], end: usize, mut quote: u8, mut slash: bool) -> Result<Option<Token>, XmlError> {
        while self.pos < end {
            if quote != 0 {
                // Skip the attribute value in one search; `<` is never allowed inside it.
                let rest = &buf[self.pos..end];
                match rest.iter().position(|&b| b == quote || b == b'<') {
                    Some(i) if rest[i] == b'<' => return Err(nwf("'<' in an attribute value")),
                    Some(i) => {
                        self.pos += i + 1;
                        quote = 0;
                        continue;
                    }
                    None => {
                        self.pos = end;
                        break;
                    }
                }
            }
            let b = buf[self.pos];
            self.pos += 1;
            match b {
                b'>' if slash => return Ok(Some(self.emit(TokenKind::Empty))),
                b'>' => return Ok(Some(self.emit(TokenKind::Start))),
                _ if slash => return Err(nwf("'/' not followed by '>' in a tag")),
                b'\'' | b'"' => quote = b,
                b'<' => return Err(nwf("'<' inside a tag")),
                b'/' => slash = true,
                _ => {}
            }
        }
        self.state = State::Start { quote, slash };
        Ok(None)
    }

    fn end_tag(&mut self, buf: &[u8], end: usize) -> Result<Option<Token>, XmlError> {
        let rest = &buf[self.pos..end];
        match rest.iter().position(|&b| b == b'>' || b == b'<') {
            Some(i) if rest[i] == b'<' => Err(nwf("'<' inside an end tag")),
            Some(i) => {
                self.pos += i + 1;
                Ok(Some(self.emit(TokenKind::End)))
            }
            None => {
                self.pos = end;
                Ok(None)
            }
        }
    }

    fn bang(&mut self, b: u8, matched: usize) -> Result<Option<Token>, XmlError> {
        if matched == 0 && b != b'[' {
            self.pos += 1;
            let why = match b {
                b'-' => "comments are not allowed",
                b'A'..=b'Z' => "DTDs and markup declarations are not allowed",
                _ => return Err(nwf("invalid markup after '<!'")),
            };
            return Ok(Some(self.emit(TokenKind::Restricted(why))));
        }
        if CDATA_OPEN.get(matched) != Some(&b) {
            return Err(nwf("invalid CDATA section"));
        }
        self.pos += 1;
        self.state = if matched + 1 == CDATA_OPEN.len() { State::CData(0) } else { State::Bang(matched + 1) };
        Ok(None)
    }

    fn cdata(&mut self, buf: &[u8], end: usize, mut brackets: u8) -> Option<Token> {
        while self.pos < end {
            let b = buf[self.pos];
            self.pos += 1;
            match b {
                b'>' if brackets == 2 => return Some(self.emit(TokenKind::CData)),
                b']' => brackets = (brackets + 1).min(2),
                _ => brackets = 0,
            }
        }
        self.state = State::CData(brackets);
        None
    }

    fn pi(&mut self, buf: &[u8], end: usize, mut question: bool) -> Option<Token> {
        while self.pos < end {
            let b = buf[self.pos];
            self.pos += 1;
            if b == b'>' && question {
                return Some(self.emit(TokenKind::Pi));
            }
            question = b == b'?';
        }
        self.state = State::Pi { question };
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lexes everything, returning (kind, text) pairs; text tokens are merged for comparison.
    fn lex_all(input: &[u8], chunk: usize) -> Result<Vec<(TokenKind, String)>, XmlError> {
        let mut lexer = Lexer::new(0);
        let mut out: Vec<(TokenKind, String)> = Vec::new();
        let mut visible = 0;
        while visible < input.len() {
            visible = (visible + chunk).min(input.len());
            while let Some(tok) = lexer.next(&input[..visible], usize::MAX, false)? {
                let text = String::from_utf8_lossy(&input[tok.start..tok.end]).into_owned();
                match out.last_mut() {
                    Some((TokenKind::Text, prev)) if tok.kind == TokenKind::Text => prev.push_str(&text),
                    _ => out.push((tok.kind, text)),
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn tokens_are_independent_of_splits() {
        let input = b"<a x='>' y=\"'/>\"> t<![CDATA[<x>]]]>]]><b/></a >";
        let want = vec![
            (TokenKind::Start, "<a x='>' y=\"'/>\">".to_owned()),
            (TokenKind::Text, " t".to_owned()),
            (TokenKind::CData, "<![CDATA[<x>]]]>".to_owned()),
            (TokenKind::Text, "]]>".to_owned()),
            (TokenKind::Empty, "<b/>".to_owned()),
            (TokenKind::End, "</a >".to_owned()),
        ];
        for chunk in 1..input.len() {
            assert_eq!(lex_all(input, chunk).unwrap(), want, "chunk {chunk}");
        }
    }

    #[test]
    fn restricted_and_malformed_markup() {
        let table: &[(&[u8], Result<TokenKind, &str>)] = &[
            (b"<!-- c -->", Ok(TokenKind::Restricted("comments are not allowed"))),
            (b"<!DOCTYPE x>", Ok(TokenKind::Restricted("DTDs and markup declarations are not allowed"))),
            (b"<!ENTITY x 'y'>", Ok(TokenKind::Restricted("DTDs and markup declarations are not allowed"))),
            (b"<?pi x?>", Ok(TokenKind::Restricted("processing instructions are not allowed"))),
            (b"<!x>", Err("not-well-formed")),
            (b"<![CDATX[", Err("not-well-formed")),
            (b"<a b='<'>", Err("not-well-formed")),
            (b"<a / >", Err("not-well-formed")),
            (b"<a <b>", Err("not-well-formed")),
            (b"</a <b>", Err("not-well-formed")),
        ];
        for (input, want) in table {
            let got = lex_all(input, 1).map(|toks| toks[0].0);
            match (got, want) {
                (Ok(kind), Ok(w)) => assert_eq!(kind, *w),
                (Err(e), Err(cond)) => assert_eq!(e.condition(), *cond),
                (got, _) => panic!("{:?}: {got:?}", String::from_utf8_lossy(input)),
            }
        }
    }

    #[test]
    fn pi_scanned_when_allowed_and_limit_respected() {
        let mut lexer = Lexer::new(0);
        let input = b"<?xml version='1.0'?><a>";
        let tok = lexer.next(input, usize::MAX, true).unwrap().unwrap();
        assert_eq!((tok.kind, tok.end), (TokenKind::Pi, 21));
        // The tag `<a>` needs 3 bytes; with a limit of 2 bytes past its start it stays pending.
        assert_eq!(lexer.next(input, 23, false).unwrap(), None);
        assert_eq!(lexer.token_start(), 21);
        let tok = lexer.next(input, 24, false).unwrap().unwrap();
        assert_eq!((tok.kind, tok.start, tok.end), (TokenKind::Start, 21, 24));
    }
}
