//! Outgoing server streams (RFC 6120): one link per (local domain, peer domain), opened on
//! demand and closed when idle.
//!
//! A link is a task with a bounded queue. It connects (static route, else SRV records, else
//! the peer domain on port 5269; see [`super::resolve`]), opens a
//! `jabber:server` stream, upgrades it with STARTTLS (required) presenting our certificate,
//! and authenticates with SASL EXTERNAL (XEP-0178) when the peer offers it (it found the
//! certificate valid for our domain), else with dialback (XEP-0220 §2.1): `<db:result>` with
//! our key, answered `type='valid'` once the peer asked our domain's authoritative server (us)
//! to verify it; then stream management
//! (XEP-0198) if the peer offers it. Stanzas queued meanwhile then go out in order. If the
//! peer cannot be reached or refuses, every queued stanza bounces to its sender with
//! `remote-server-not-found` (or `remote-server-timeout` when the time given runs out), and
//! the link ends; the next stanza opens a new one. If a link that was up breaks (the peer
//! restarts), what the peer had not acknowledged is sent again on a new link, once; so a
//! stanza is delivered or bounced, never silently lost.
//!
//! [`verify`] is the other use of an outgoing connection: asking a peer's authoritative server
//! whether a key it presented to us is genuine (`<db:verify>`, XEP-0220 §2.3).

use super::dialback::{self, NS_DIALBACK};
use super::resolve::{self, Target};
use super::{Queued, S2sError, negotiation_limits};
use crate::c2s::connection::{Conn, Exit, Transport};
use crate::router::error::StanzaError;
use crate::server::Server;
use crate::session::sm::NS_SM;
use crate::stream::{NS_SASL, NS_STREAMS, NS_TLS};
use crate::xml::{Element, FrameEvent};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

type TlsConn = Conn<tokio_rustls::client::TlsStream<TcpStream>>;

/// Runs one link until it fails or idles out. If it never came up, everything queued
/// bounces. If it was up, stanzas the peer did not acknowledge (stream management) and
/// stanzas still queued go to a new link, once; after that they bounce.
pub(super) async fn run_link(
    server: Arc<Server>,
    local: String,
    remote: String,
    mut queue: mpsc::Receiver<Queued>,
    shared: Arc<AtomicBool>,
) {
    let limit = server.config.s2s.connect_timeout.get();
    let outcome = timeout(limit, open_authenticated(&server, &local, &remote)).await;
    let (error, mut unacked) = match outcome {
        Ok(Ok((mut conn, opened))) => {
            tracing::info!(%local, %remote, stream_management = opened.sm, "server link up");
            // Our other domains may now use this link (see `super::link`).
            shared.store(opened.by_dialback, Ordering::Release);
            let ended = carry(&server, &mut conn, &mut queue, &opened).await;
            conn.close().await;
            tracing::info!(%local, %remote, reason = %ended.reason, unacked = ended.unacked.len(), "server link closed");
            (None, ended.unacked)
        }
        Ok(Err(e)) => {
            tracing::info!(%local, %remote, error = %e, "cannot reach peer server");
            (Some(StanzaError::remote_server_not_found().with_text(e.to_string())), Vec::new())
        }
        Err(_) => {
            tracing::info!(%local, %remote, "peer server did not answer in time");
            (Some(StanzaError::new(crate::router::error::ErrorType::Wait, "remote-server-timeout")), Vec::new())
        }
    };
    super::link_ended(&server);
    queue.close();
    while let Some(queued) = queue.recv().await {
        unacked.push(queued);
    }
    for queued in unacked {
        match &error {
            None if queued.tries == 0 && !server.s2s.is_closing() => {
                super::resend(&server, Queued { tries: 1, ..queued }).await;
            }
            None => crate::router::bounce(&server, &queued.stanza, StanzaError::remote_server_not_found()).await,
            Some(error) => crate::router::bounce(&server, &queued.stanza, error.clone()).await,
        }
    }
}

/// How a link that was up ended.
struct Ended {
    reason: String,
    /// Sent but not acknowledged (with stream management), and held for a verdict, oldest
    /// first.
    unacked: Vec<Queued>,
}

/// An up link's state while it carries stanzas.
struct Carrier<'a> {
    server: &'a Server,
    remote: &'a str,
    /// The stream id the peer gave, for dialback keys of further domains.
    stream_id: String,
    sm: bool,
    /// Further domains of ours may be added with dialback (XEP-0220 §4.1).
    piggyback: bool,
    /// Our domains the peer accepted on this link.
    authenticated: HashSet<String>,
    /// Stanzas of our domains whose dialback verdict is awaited.
    waiting: HashMap<String, Vec<Queued>>,
    unacked: VecDeque<Queued>,
    acked: u32,
    /// Bytes to write.
    out: Vec<u8>,
    /// Stanzas the link cannot carry (the peer refused their domain).
    refused: Vec<Queued>,
}

impl Carrier<'_> {
    /// Writes a stanza into the buffer, or holds it until its domain is accepted (asking for
    /// that the first time).
    fn take(&mut self, queued: Queued) {
        let domain = queued.stanza.from_ref().map(|f| f.domain().as_str().to_owned()).unwrap_or_default();
        if self.authenticated.contains(&domain) {
            queued.stanza.write_to(&mut self.out);
            if self.sm {
                self.unacked.push_back(queued);
            }
        } else if let Some(held) = self.waiting.get_mut(&domain) {
            held.push(queued);
        } else if self.piggyback {
            let key = dialback::key(&self.server.s2s.secret, self.remote, &domain, &self.stream_id);
            self.out.extend(dialback::element("result", &domain, self.remote, None, None, Some(&key)));
            self.waiting.insert(domain, vec![queued]);
        } else {
            self.refused.push(queued);
        }
    }

    /// The peer's verdict on one of our domains: its held stanzas go out, or are refused.
    fn verdict(&mut self, el: &Element) {
        let Some(domain) = el.attr("to") else { return };
        let Some(held) = self.waiting.remove(domain) else { return };
        if el.attr("type") == Some("valid") {
            tracing::info!(local = domain, remote = self.remote, "domain added to a server link");
            self.authenticated.insert(domain.to_owned());
            for queued in held {
                self.take(queued);
            }
        } else {
            self.refused.extend(held);
        }
    }

    /// Writes what the buffer holds (with an ack request under stream management) and
    /// bounces what the link cannot carry.
    async fn flush(&mut self, conn: &mut TlsConn) -> Result<(), String> {
        for queued in std::mem::take(&mut self.refused) {
            let error = StanzaError::remote_server_not_found().with_text("the peer did not accept the sending domain");
            crate::router::bounce(self.server, &queued.stanza, error).await;
        }
        if self.out.is_empty() {
            return Ok(());
        }
        if self.sm && !self.unacked.is_empty() {
            self.out.extend_from_slice(format!("<r xmlns='{NS_SM}'/>").as_bytes());
        }
        let result = conn.send(&self.out).await.map_err(|e| format!("write failed: {e:?}"));
        self.out.clear();
        result
    }

    /// The peer's `<a h/>`: acknowledged stanzas are released.
    fn acknowledged(&mut self, el: &Element) -> Result<(), String> {
        let h = el.attr("h").and_then(|h| h.parse::<u32>().ok()).unwrap_or(self.acked);
        let newly = h.wrapping_sub(self.acked) as usize;
        if newly > self.unacked.len() {
            return Err("the peer acknowledged more than was sent".into());
        }
        self.unacked.drain(..newly);
        self.acked = h;
        Ok(())
    }
}

/// Writes queued stanzas until the link has been idle for `idle_timeout` or fails. With
/// stream management (XEP-0198 on server links), each write ends with `<r/>` and stanzas are
/// kept until the peer's `<a h/>` counts them. Stanzas of our other domains join the link
/// once the peer accepts their domain by dialback (when the link allows it).
async fn carry(server: &Server, conn: &mut TlsConn, queue: &mut mpsc::Receiver<Queued>, link: &Opened<'_>) -> Ended {
    let idle = server.config.s2s.idle_timeout.get();
    let mut carrier = Carrier {
        server,
        remote: link.remote,
        stream_id: link.stream_id.clone(),
        sm: link.sm,
        piggyback: link.by_dialback,
        authenticated: HashSet::from([link.local.to_owned()]),
        waiting: HashMap::new(),
        unacked: VecDeque::new(),
        acked: 0,
        out: Vec::with_capacity(4096),
        refused: Vec::new(),
    };
    let reason = loop {
        let step = tokio::select! {
            next = timeout(idle, queue.recv()) => match next {
                Ok(Some(queued)) => {
                    carrier.take(queued);
                    // Whatever else is waiting goes in the same write.
                    while carrier.out.len() < 64 * 1024 {
                        match queue.try_recv() {
                            Ok(more) => carrier.take(more),
                            Err(_) => break,
                        }
                    }
                    Ok(())
                }
                Ok(None) => Err("no more senders".to_owned()),
                Err(_) if carrier.unacked.is_empty() && carrier.waiting.is_empty() => Err("idle".to_owned()),
                Err(_) => Ok(()),
            },
            () = server.s2s.closed() => Err("shutting down".to_owned()),
            event = conn.next() => match event {
                Ok(FrameEvent::Element(el)) if link.sm && el.is("a", NS_SM) => carrier.acknowledged(&el),
                Ok(FrameEvent::Element(el)) if el.is("result", NS_DIALBACK) => {
                    carrier.verdict(&el);
                    Ok(())
                }
                // The peer closing the stream ends the link.
                Ok(FrameEvent::StreamClose) | Err(Exit::Closed) => Err("closed by peer".to_owned()),
                Ok(_) => Ok(()),
                Err(e) => Err(format!("{e:?}")),
            },
        };
        if let Err(reason) = step {
            break reason;
        }
        if let Err(reason) = carrier.flush(conn).await {
            break reason;
        }
    };
    let mut unacked: Vec<Queued> = carrier.unacked.into();
    unacked.extend(carrier.waiting.into_values().flatten());
    Ended { reason, unacked }
}

/// What the link knows once it is authenticated.
struct Opened<'a> {
    local: &'a str,
    remote: &'a str,
    stream_id: String,
    sm: bool,
    /// Authenticated by dialback: further domains may be added the same way.
    by_dialback: bool,
}

/// Where a peer domain listens (see [`super::resolve`]).
async fn targets(server: &Server, remote: &str) -> Result<Vec<Target>, S2sError> {
    if let Some(route) = server.config.s2s.routes.get(remote) {
        let (host, port) = route.rsplit_once(':').unwrap_or((route.as_str(), "5269"));
        let port = port.parse().map_err(|_| S2sError::Unreachable(format!("bad route {route}")))?;
        return Ok(vec![Target { host: host.to_owned(), port, direct_tls: false }]);
    }
    let records = match &server.s2s.resolver {
        Some(resolver) => resolve::srv_records(resolver, remote).await,
        None => Vec::new(),
    };
    resolve::order(records, remote, resolve::random_roll)
}

/// A TCP connection to the first target that answers, and whether it speaks TLS at once.
async fn connect(server: &Server, remote: &str) -> Result<(TcpStream, SocketAddr, bool), S2sError> {
    let mut last_error = S2sError::Unreachable(format!("no address for {remote}"));
    for target in targets(server, remote).await? {
        let addrs = match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
            Ok(addrs) => addrs,
            Err(e) => {
                last_error = S2sError::Unreachable(format!("resolving {}: {e}", target.host));
                continue;
            }
        };
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    return Ok((tcp, addr, target.direct_tls));
                }
                Err(e) => last_error = S2sError::Unreachable(format!("{addr}: {e}")),
            }
        }
    }
    Err(last_error)
}

/// Connects to the peer and secures the stream, with direct TLS (XEP-0368, ALPN
/// `xmpp-server`) or STARTTLS; the certificate is checked against the peer domain whatever
/// host the DNS named. Returns the connection right after the secured stream's features,
/// with the peer's stream id and those features.
async fn open_secured(server: &Server, local: &str, remote: &str) -> Result<(TlsConn, String, Element), S2sError> {
    let (tcp, addr, direct_tls) = connect(server, remote).await?;
    let name = rustls::pki_types::ServerName::try_from(remote.to_owned())
        .map_err(|_| S2sError::Refused(format!("'{remote}' is not a name TLS can check")))?;
    let mut config = server.s2s.client_tls(local);
    let io = if direct_tls {
        let mut with_alpn = (*config).clone();
        with_alpn.alpn_protocols = vec![b"xmpp-server".to_vec()];
        config = Arc::new(with_alpn);
        tcp
    } else {
        let mut conn = Conn::new(tcp, addr, negotiation_limits(server)).server_stream();
        let (_, features) = open_stream(&mut conn, local, remote).await?;
        if !features.has_child("starttls", NS_TLS) {
            return Err(S2sError::Refused("the peer does not offer TLS".into()));
        }
        conn.send(format!("<starttls xmlns='{NS_TLS}'/>").as_bytes()).await.map_err(S2sError::from)?;
        let proceed = next_element(&mut conn).await?;
        if !proceed.is("proceed", NS_TLS) {
            return Err(S2sError::Refused(format!("STARTTLS answered with <{}>", proceed.name)));
        }
        conn.io
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = connector.connect(name, io).await.map_err(|e| S2sError::Refused(format!("TLS: {e}")))?;
    let mut conn = Conn::new(tls, addr, negotiation_limits(server)).server_stream();
    let (id, features) = open_stream(&mut conn, local, remote).await?;
    Ok((conn, id, features))
}

/// Opens a link and authenticates our domain (SASL EXTERNAL or dialback); then enables stream
/// management if the peer offers it.
async fn open_authenticated<'a>(
    server: &Server,
    local: &'a str,
    remote: &'a str,
) -> Result<(TlsConn, Opened<'a>), S2sError> {
    let (mut conn, id, mut features) = open_secured(server, local, remote).await?;
    let offers_external = features
        .get_child("mechanisms", NS_SASL)
        .is_some_and(|m| m.child_elements().any(|c| c.is("mechanism", NS_SASL) && c.text().trim() == "EXTERNAL"));
    let external_done = match offers_external {
        true => external(&mut conn, local, remote).await?,
        false => None,
    };
    let by_dialback = match external_done {
        Some(restarted) => {
            server.s2s.links_by_certificate.fetch_add(1, Ordering::Relaxed);
            features = restarted;
            false
        }
        // A peer may offer EXTERNAL whatever our certificate is, and refuse it then; dialback
        // on the same stream is the fallback (XEP-0178 §3).
        None => {
            dialback(server, &mut conn, local, remote, &id).await?;
            true
        }
    };
    let mut opened = Opened { local, remote, stream_id: id, sm: false, by_dialback };
    if !features.has_child("sm", NS_SM) {
        return Ok((conn, opened));
    }
    conn.send(format!("<enable xmlns='{NS_SM}'/>").as_bytes()).await?;
    loop {
        let answer = next_element(&mut conn).await?;
        if answer.is("enabled", NS_SM) || answer.is("failed", NS_SM) {
            opened.sm = answer.is("enabled", NS_SM);
            return Ok((conn, opened));
        }
    }
}

/// SASL EXTERNAL (XEP-0178 §3) with our certificate; after success the stream restarts.
/// Returns the features of the new stream, or `None` when the peer refused.
async fn external(conn: &mut TlsConn, local: &str, remote: &str) -> Result<Option<Element>, S2sError> {
    use base64::Engine;
    let authzid = base64::engine::general_purpose::STANDARD.encode(local);
    conn.send(format!("<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{authzid}</auth>").as_bytes()).await?;
    let answer = next_element(conn).await?;
    if answer.is("failure", NS_SASL) {
        return Ok(None);
    }
    if !answer.is("success", NS_SASL) {
        return Err(S2sError::Refused(format!("SASL EXTERNAL answered <{}>", answer.name)));
    }
    conn.restart();
    let (_, features) = open_stream(conn, local, remote).await?;
    Ok(Some(features))
}

/// Dialback (XEP-0220 §2.1): our key, then the peer's verdict once it asked us about it.
async fn dialback(server: &Server, conn: &mut TlsConn, local: &str, remote: &str, id: &str) -> Result<(), S2sError> {
    let key = dialback::key(&server.s2s.secret, remote, local, id);
    conn.send(&dialback::element("result", local, remote, None, None, Some(&key))).await?;
    loop {
        let answer = next_element(conn).await?;
        if answer.is("result", NS_DIALBACK) {
            return match answer.attr("type") {
                Some("valid") => Ok(()),
                other => Err(S2sError::Refused(format!("dialback answered {}", other.unwrap_or("nothing")))),
            };
        }
    }
}

/// Asks `remote`'s authoritative server whether `key` is the one it gave for the stream `id`
/// it opened to our `local` domain (XEP-0220 §2.3). Any failure counts as "not valid".
pub(super) async fn verify(server: &Server, local: &str, remote: &str, id: &str, key: &str) -> bool {
    let limit = server.config.s2s.connect_timeout.get();
    let asked = timeout(limit, async {
        let (mut conn, _, _) = open_secured(server, local, remote).await?;
        conn.send(&dialback::element("verify", local, remote, Some(id), None, Some(key))).await?;
        loop {
            let answer = next_element(&mut conn).await?;
            if answer.is("verify", NS_DIALBACK) && answer.attr("id") == Some(id) {
                conn.close().await;
                return Ok::<bool, S2sError>(answer.attr("type") == Some("valid"));
            }
        }
    })
    .await;
    match asked {
        Ok(Ok(valid)) => valid,
        Ok(Err(e)) => {
            tracing::info!(%remote, error = %e, "dialback verification failed");
            false
        }
        Err(_) => {
            tracing::info!(%remote, "dialback verification timed out");
            false
        }
    }
}

/// Sends our stream header and reads the peer's header and features; returns the peer's
/// stream id and the features.
async fn open_stream<S: Transport>(
    conn: &mut Conn<S>,
    local: &str,
    remote: &str,
) -> Result<(String, Element), S2sError> {
    conn.send(&super::header(local, remote, None)).await?;
    let id = match conn.next().await? {
        FrameEvent::StreamOpen(header) => header.id.clone(),
        other => return Err(S2sError::Refused(format!("expected a stream header, got {other:?}"))),
    };
    let Some(id) = id.filter(|id| !id.is_empty()) else {
        return Err(S2sError::Refused("the peer's stream header has no id".into()));
    };
    let features = next_element(conn).await?;
    if !features.is("features", NS_STREAMS) {
        return Err(S2sError::Refused(format!("expected stream features, got <{}>", features.name)));
    }
    Ok((id, features))
}

/// The next top-level element; a stream error or close from the peer is a refusal.
async fn next_element<S: Transport>(conn: &mut Conn<S>) -> Result<Element, S2sError> {
    match conn.next().await? {
        FrameEvent::Element(el) if el.is("error", NS_STREAMS) => {
            let condition = el.child_elements().next().map(|c| c.name.clone()).unwrap_or_default();
            Err(S2sError::Refused(format!("stream error {condition}")))
        }
        FrameEvent::Element(el) => Ok(el),
        FrameEvent::StreamClose => Err(S2sError::Refused("the peer closed the stream".into())),
        FrameEvent::StreamOpen(_) => Err(S2sError::Refused("unexpected stream header".into())),
    }
}
