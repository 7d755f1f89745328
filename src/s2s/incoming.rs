//! Incoming server streams (RFC 6120, `jabber:server`).
//!
//! Flow of one connection: the peer opens a stream to one of our domains (else
//! `host-unknown`); we answer with a fresh stream id and offer STARTTLS, which is required
//! before anything else; after the TLS restart we offer dialback (XEP-0220 §2.4). Then, in
//! any order:
//! - `<db:result from='O' to='R'>KEY</db:result>`: the peer claims domain O. We ask O's
//!   authoritative server, on a connection of our own, whether KEY is genuine
//!   (`<db:verify>`), and answer `type='valid'` (O may now send stanzas on this stream; several
//!   domains may be added this way) or `type='invalid'` and close the stream.
//! - `<db:verify from='R' to='O' id='…'>KEY</db:verify>`: a peer checks a key one of our
//!   outgoing links presented; we recompute it and answer `valid` or `invalid`.
//! - stanzas: their `from` must be a domain authenticated on this stream (else the stream
//!   ends with `invalid-from`, RFC 6120 §4.9.3.9) and their `to` one of ours (else
//!   `host-unknown`). They are read as `jabber:client` stanzas and routed like any other.
//!
//! Time: a peer that has not authenticated within `connect_timeout`, or stalls in the TLS
//! handshake, is dropped; everything it held is freed with the task.

use super::dialback::{self, NS_DIALBACK, NS_DIALBACK_FEATURE};
use super::negotiation_limits;
use crate::c2s::connection::{Conn, Exit, Transport};
use crate::router::stanza::Stanza;
use crate::server::Server;
use crate::session::sm::NS_SM;
use crate::stream::{NS_SASL, NS_STREAMS, NS_TLS, StreamError};
use crate::xml::{Element, FrameEvent};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Accepts server connections forever.
pub async fn accept_loop(server: Arc<Server>, listener: TcpListener, direct_tls: bool) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(handle(server.clone(), tcp, peer, direct_tls));
            }
            Err(e) => {
                tracing::warn!(error = %e, "s2s accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr, direct_tls: bool) {
    let limit = server.config.s2s.connect_timeout.get();
    let acceptor = server.s2s.acceptor.clone();
    let tls = if direct_tls {
        match timeout(limit, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            _ => return tracing::debug!(%peer, "s2s TLS handshake failed or timed out"),
        }
    } else {
        let mut conn = Conn::new(tcp, peer, negotiation_limits(&server)).server_stream();
        match timeout(limit, plain_phase(&server, &mut conn)).await {
            Ok(Ok(())) => {}
            Ok(Err(exit)) => return end(&mut conn, exit).await,
            Err(_) => return conn.fail(&StreamError::new("connection-timeout")).await,
        }
        match timeout(limit, acceptor.accept(conn.io)).await {
            Ok(Ok(tls)) => tls,
            _ => return tracing::debug!(%peer, "s2s STARTTLS handshake failed or timed out"),
        }
    };
    server.s2s.streams_accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let peer_certs = tls.get_ref().1.peer_certificates().map(|c| c.to_vec()).unwrap_or_default();
    let mut conn = Conn::new(tls, peer, negotiation_limits(&server)).server_stream();
    let mut stream = Incoming {
        server: &server,
        id: String::new(),
        claimed: None,
        peer_certs,
        authenticated: HashSet::new(),
        handled: None,
        owed: None,
        claims: 0,
    };
    let exit = stream.run(&mut conn).await;
    if let Some(exit) = exit {
        end(&mut conn, exit).await;
    }
}

/// Before TLS: the header, the features with STARTTLS, and `<starttls/>`; anything else is a
/// policy violation.
async fn plain_phase<S: Transport>(server: &Server, conn: &mut Conn<S>) -> Result<(), Exit> {
    let mut reply = open(server, conn).await?.header;
    let features = Element::new("starttls", NS_TLS).with_child(Element::new("required", NS_TLS));
    crate::stream::write_features(&mut reply, &[features], "jabber:server");
    conn.send(&reply).await?;
    match conn.next().await? {
        FrameEvent::Element(el) if el.is("starttls", NS_TLS) => {
            conn.send(format!("<proceed xmlns='{NS_TLS}'/>").as_bytes()).await?;
            Ok(())
        }
        FrameEvent::StreamClose => Err(Exit::Closed),
        _ => Err(StreamError::with_text("policy-violation", "TLS is required").into()),
    }
}

/// Our answer to the peer's stream header.
struct Opened {
    /// Our stream id.
    id: String,
    /// The domain the peer's header names as its own, if any.
    claimed: Option<String>,
    /// Our header, for the caller to send with the features in one write.
    header: Vec<u8>,
}

/// Reads the peer's header and prepares ours. A header we refuse is answered at once with
/// ours and the stream error.
async fn open<S: Transport>(server: &Server, conn: &mut Conn<S>) -> Result<Opened, Exit> {
    let header = match conn.next().await? {
        FrameEvent::StreamOpen(header) => header,
        _ => return Err(StreamError::new("bad-format").into()),
    };
    let to = header.to.clone().unwrap_or_default();
    let id = crate::module_api::random_id(12);
    if header.default_ns.as_deref() != Some("jabber:server") {
        conn.send(&super::header(&to, "", Some(&id))).await?;
        return Err(StreamError::new("invalid-namespace").into());
    }
    let ours = super::header(&to, header.from.as_deref().unwrap_or_default(), Some(&id));
    if !super::is_ours(server, &to) {
        conn.send(&ours).await?;
        return Err(StreamError::with_text("host-unknown", format!("{to} is not served here")).into());
    }
    Ok(Opened { id, claimed: header.from, header: ours })
}

/// Whether the stream goes on with a new header (after SASL success) or ends.
enum Restart {
    Stream,
    No(Exit),
}

/// One authenticated-or-not incoming stream after TLS.
struct Incoming<'a> {
    server: &'a Arc<Server>,
    id: String,
    /// The domain the peer's header names as its own.
    claimed: Option<String>,
    /// The certificate chain the peer presented in the TLS handshake, leaf first.
    peer_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Peer domains proven by dialback on this stream.
    authenticated: HashSet<String>,
    /// With stream management (XEP-0198) enabled: stanzas handled so far, modulo 2^32.
    handled: Option<u32>,
    /// An ack asked for and not yet sent: the count to send and the storage commit it waits
    /// for.
    owed: Option<(u32, u64)>,
    /// Dialback claims made on this stream.
    claims: usize,
}

/// Most dialback claims (`<db:result/>`) one incoming stream may make.
const MAX_CLAIMS: usize = 32;

impl Incoming<'_> {
    /// Runs the stream; `Some(exit)` when it must end with an error or close.
    async fn run<S: Transport>(&mut self, conn: &mut Conn<S>) -> Option<Exit> {
        let limit = self.server.config.s2s.connect_timeout.get();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut reply = match tokio::time::timeout_at(deadline, open(self.server, conn)).await {
                Ok(Ok(opened)) => {
                    (self.id, self.claimed) = (opened.id, opened.claimed);
                    opened.header
                }
                Ok(Err(exit)) => return Some(exit),
                Err(_) => return Some(StreamError::new("connection-timeout").into()),
            };
            self.write_features(&mut reply);
            if let Err(exit) = conn.send(&reply).await {
                return Some(exit);
            }
            match self.read(conn, deadline).await {
                Restart::Stream => conn.restart(),
                Restart::No(exit) => return Some(exit),
            }
        }
    }

    /// Appends the features after TLS: SASL EXTERNAL when the peer's certificate names the domain it
    /// claims (XEP-0178), dialback (without <errors/>: dialback errors, XEP-0220 §2.4, are not
    /// sent; refusals end the stream), stream management.
    fn write_features(&self, out: &mut Vec<u8>) {
        let mut features = Vec::new();
        if self.authenticated.is_empty() {
            if self.certified().is_some() {
                features.push(
                    Element::new("mechanisms", NS_SASL)
                        .with_child(Element::new("mechanism", NS_SASL).with_text("EXTERNAL")),
                );
            }
            features.push(Element::new("dialback", NS_DIALBACK_FEATURE));
        }
        features.push(Element::new("sm", NS_SM));
        crate::stream::write_features(out, &features, "jabber:server");
    }

    /// The domain the peer claims, if its certificate is valid for it.
    fn certified(&self) -> Option<&str> {
        let claimed = self.claimed.as_deref()?;
        let check = self.server.s2s.peer_check.as_ref()?;
        check.names(&self.peer_certs, claimed).then_some(claimed)
    }

    /// SASL EXTERNAL (XEP-0178 §2): the peer is the domain its certificate names; an
    /// authorization identity, if given, must be that domain.
    async fn external<S: Transport>(&mut self, conn: &mut Conn<S>, auth: &Element) -> Result<Restart, Exit> {
        use base64::Engine;
        let text = auth.text();
        let authzid = match text.trim() {
            "" | "=" => None,
            encoded => {
                base64::engine::general_purpose::STANDARD.decode(encoded).ok().and_then(|b| String::from_utf8(b).ok())
            }
        };
        let Some(domain) = self.certified().map(str::to_owned) else {
            conn.send(format!("<failure xmlns='{NS_SASL}'><not-authorized/></failure>").as_bytes()).await?;
            return Err(StreamError::with_text("not-authorized", "no valid certificate for that domain").into());
        };
        if authzid.as_deref().is_some_and(|a| a != domain) {
            conn.send(format!("<failure xmlns='{NS_SASL}'><invalid-authzid/></failure>").as_bytes()).await?;
            return Err(StreamError::new("not-authorized").into());
        }
        conn.send(format!("<success xmlns='{NS_SASL}'/>").as_bytes()).await?;
        tracing::info!(peer = %domain, "peer server authenticated by certificate (SASL EXTERNAL)");
        self.server.s2s.authenticated_by_certificate.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.authenticated.insert(domain);
        Ok(Restart::Stream)
    }

    /// Reads the stream until it ends or must restart (after SASL).
    async fn read<S: Transport>(&mut self, conn: &mut Conn<S>, deadline: tokio::time::Instant) -> Restart {
        loop {
            let commits = self.server.storage.commits();
            let owed_seq = self.owed.map(|(_, seq)| seq).unwrap_or_default();
            let event = tokio::select! {
                event = conn.next() => event,
                () = commits.committed(owed_seq), if self.owed.is_some() => {
                    // The ack the peer asked for, now that what it counts is on disk; the
                    // stream was read meanwhile, so the peer's next stanzas joined the commit.
                    if let Some((handled, _)) = self.owed.take()
                        && let Err(exit) = conn.send(format!("<a xmlns='{NS_SM}' h='{handled}'/>").as_bytes()).await
                    {
                        return Restart::No(exit);
                    }
                    continue;
                }
                () = tokio::time::sleep_until(deadline), if self.authenticated.is_empty() => {
                    return Restart::No(StreamError::new("connection-timeout").into());
                }
                () = self.server.s2s.closed() => return Restart::No(StreamError::new("system-shutdown").into()),
            };
            let el = match event {
                Ok(FrameEvent::Element(el)) => el,
                Ok(FrameEvent::StreamClose) | Err(Exit::Closed) => return Restart::No(Exit::Closed),
                Ok(FrameEvent::StreamOpen(_)) => return Restart::No(StreamError::new("bad-format").into()),
                Err(exit) => return Restart::No(exit),
            };
            let outcome = if el.is("auth", NS_SASL) && el.attr("mechanism") == Some("EXTERNAL") {
                self.external(conn, &el).await
            } else {
                self.element(conn, el).await.map(|()| Restart::No(Exit::Closed))
            };
            match outcome {
                Ok(Restart::Stream) => return Restart::Stream,
                Ok(Restart::No(_)) => {}
                Err(exit) => return Restart::No(exit),
            }
        }
    }

    async fn element<S: Transport>(&mut self, conn: &mut Conn<S>, el: Element) -> Result<(), Exit> {
        if el.ns == NS_DIALBACK {
            return match el.name.as_str() {
                "result" => self.dialback_result(conn, &el).await,
                "verify" => self.dialback_verify(conn, &el).await,
                _ => Err(StreamError::new("unsupported-stanza-type").into()),
            };
        }
        if el.is("error", NS_STREAMS) {
            return Err(Exit::Closed);
        }
        if el.ns == NS_SM {
            return self.stream_management(conn, &el).await;
        }
        let stanza = match Stanza::from_element(el) {
            Ok(stanza) => stanza,
            Err(_) => return Err(StreamError::new("unsupported-stanza-type").into()),
        };
        let from_domain = stanza.from_ref().map(|f| f.domain().as_str().to_owned());
        let to_domain = stanza.to_ref().map(|t| t.domain().as_str().to_owned());
        let (Some(from), Some(to)) = (from_domain, to_domain) else {
            return Err(StreamError::new("improper-addressing").into());
        };
        if !self.authenticated.contains(&from) {
            return Err(StreamError::with_text("invalid-from", format!("{from} is not authenticated here")).into());
        }
        if !super::is_ours(self.server, &to) {
            return Err(StreamError::with_text("host-unknown", format!("{to} is not served here")).into());
        }
        crate::router::route(self.server, stanza, None).await;
        if let Some(handled) = &mut self.handled {
            *handled = handled.wrapping_add(1);
        }
        Ok(())
    }

    /// Stream management on a server stream (XEP-0198 §3, §4): once enabled by an
    /// authenticated peer, `<r/>` is answered with the count of stanzas handled once what
    /// they stored is committed, so an acknowledged stanza survives a crash here; reading goes
    /// on while the commit is pending.
    async fn stream_management<S: Transport>(&mut self, conn: &mut Conn<S>, el: &Element) -> Result<(), Exit> {
        match el.name.as_str() {
            "enable" if self.authenticated.is_empty() => {
                conn.send(format!("<failed xmlns='{NS_SM}'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>").as_bytes()).await
            }
            "enable" => {
                self.handled = Some(0);
                conn.send(format!("<enabled xmlns='{NS_SM}'/>").as_bytes()).await
            }
            "r" => {
                let Some(handled) = self.handled else { return Ok(()) };
                let commits = self.server.storage.commits();
                let seq = commits.enqueued();
                if commits.committed_seq() >= seq {
                    return conn.send(format!("<a xmlns='{NS_SM}' h='{handled}'/>").as_bytes()).await;
                }
                // Answered by the read loop when the commit lands (a later <r/> replaces it).
                self.owed = Some((handled, seq));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The peer claims a domain (XEP-0220 §2.1.1): verified with that domain's authoritative
    /// server before it may send anything from it.
    async fn dialback_result<S: Transport>(&mut self, conn: &mut Conn<S>, el: &Element) -> Result<(), Exit> {
        let (Some(from), Some(to)) = (el.attr("from"), el.attr("to")) else {
            return Err(StreamError::new("improper-addressing").into());
        };
        if !super::is_ours(self.server, to) {
            return Err(StreamError::with_text("host-unknown", format!("{to} is not served here")).into());
        }
        // Each claim makes us open a connection to the claimed domain: a stream gets a few.
        self.claims += 1;
        if self.claims > MAX_CLAIMS {
            return Err(StreamError::with_text("policy-violation", "too many dialback requests").into());
        }
        // With require_valid_certs, dialback only confirms what the certificate shows.
        let certificate_ok = !self.server.config.s2s.require_valid_certs
            || self.server.s2s.peer_check.as_ref().is_some_and(|c| c.names(&self.peer_certs, from));
        let valid = certificate_ok && super::outgoing::verify(self.server, to, from, &self.id, el.text().trim()).await;
        let kind = if valid { "valid" } else { "invalid" };
        conn.send(&dialback::element("result", to, from, None, Some(kind), None)).await?;
        if !valid {
            return Err(StreamError::with_text("not-authorized", "dialback failed").into());
        }
        tracing::info!(peer = %from, local = %to, "peer server authenticated by dialback");
        self.server.s2s.authenticated_by_dialback.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.authenticated.insert(from.to_owned());
        Ok(())
    }

    /// A peer checks a key one of our links gave it (XEP-0220 §2.3.2).
    async fn dialback_verify<S: Transport>(&mut self, conn: &mut Conn<S>, el: &Element) -> Result<(), Exit> {
        let (Some(from), Some(to), Some(id)) = (el.attr("from"), el.attr("to"), el.attr("id")) else {
            return Err(StreamError::new("improper-addressing").into());
        };
        let expected = dialback::key(&self.server.s2s.secret, from, to, id);
        let valid = super::is_ours(self.server, to) && dialback::same_key(&expected, el.text().trim());
        let kind = if valid { "valid" } else { "invalid" };
        conn.send(&dialback::element("verify", to, from, Some(id), Some(kind), None)).await
    }
}

async fn end<S: Transport>(conn: &mut Conn<S>, exit: Exit) {
    match exit {
        Exit::Error(error) => conn.fail(&error).await,
        Exit::Closed => conn.close().await,
        Exit::Io(_) | Exit::TakenOver => {}
    }
}
