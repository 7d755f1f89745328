//! Outgoing server streams (RFC 6120): one link per (local domain, peer domain), opened on
//! demand and closed when idle.
//!
//! A link is a task with a bounded queue. It connects (static route, else the peer domain on
//! port 5269 through the system resolver, which honours the hosts file), opens a
//! `jabber:server` stream, upgrades it with STARTTLS (required), and authenticates with
//! dialback (XEP-0220 §2.1): `<db:result>` with our key, answered `type='valid'` once the peer
//! asked our domain's authoritative server (us) to verify it. Stanzas queued meanwhile then
//! go out in order. If the peer cannot be reached or refuses, every queued stanza bounces to
//! its sender with `remote-server-not-found` (or `remote-server-timeout` when the time given
//! runs out), and the link ends; the next stanza opens a new one.
//!
//! [`verify`] is the other use of an outgoing connection: asking a peer's authoritative server
//! whether a key it presented to us is genuine (`<db:verify>`, XEP-0220 §2.3).

use super::dialback::{self, NS_DIALBACK};
use super::{S2sError, negotiation_limits};
use crate::c2s::connection::{Conn, Exit, Transport};
use crate::router::error::StanzaError;
use crate::router::stanza::Stanza;
use crate::server::Server;
use crate::stream::{NS_STREAMS, NS_TLS};
use crate::xml::{Element, FrameEvent};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

type TlsConn = Conn<tokio_rustls::client::TlsStream<TcpStream>>;

/// Runs one link until it fails or idles out; what is left in its queue bounces.
pub(super) async fn run_link(server: Arc<Server>, local: String, remote: String, mut queue: mpsc::Receiver<Stanza>) {
    let limit = server.config.s2s.connect_timeout.get();
    let outcome = timeout(limit, open_authenticated(&server, &local, &remote)).await;
    let error = match outcome {
        Ok(Ok(mut conn)) => {
            tracing::info!(%local, %remote, "server link up");
            let end = carry(&server, &mut conn, &mut queue).await;
            conn.close().await;
            tracing::info!(%local, %remote, reason = %end, "server link closed");
            StanzaError::remote_server_not_found()
        }
        Ok(Err(e)) => {
            tracing::info!(%local, %remote, error = %e, "cannot reach peer server");
            StanzaError::remote_server_not_found().with_text(e.to_string())
        }
        Err(_) => {
            tracing::info!(%local, %remote, "peer server did not answer in time");
            StanzaError::new(crate::router::error::ErrorType::Wait, "remote-server-timeout")
        }
    };
    super::link_ended(&server, &local, &remote);
    queue.close();
    while let Some(stanza) = queue.recv().await {
        crate::router::bounce(&server, &stanza, error.clone()).await;
    }
}

/// Writes queued stanzas until the link has been idle for `idle_timeout` or fails.
async fn carry(server: &Server, conn: &mut TlsConn, queue: &mut mpsc::Receiver<Stanza>) -> String {
    let idle = server.config.s2s.idle_timeout.get();
    let mut out = Vec::with_capacity(4096);
    loop {
        tokio::select! {
            next = timeout(idle, queue.recv()) => match next {
                Ok(Some(stanza)) => {
                    out.clear();
                    stanza.write_to(&mut out);
                    // Whatever else is waiting goes in the same write.
                    while out.len() < 64 * 1024 {
                        match queue.try_recv() {
                            Ok(more) => more.write_to(&mut out),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = conn.send(&out).await {
                        return format!("write failed: {e:?}");
                    }
                }
                Ok(None) => return "shutting down".into(),
                Err(_) => return "idle".into(),
            },
            event = conn.next() => match event {
                // Nothing but whitespace is expected on our outgoing stream once it carries
                // stanzas; the peer closing it ends the link.
                Ok(FrameEvent::StreamClose) | Err(Exit::Closed) => return "closed by peer".into(),
                Ok(_) => {}
                Err(e) => return format!("{e:?}"),
            },
        }
    }
}

/// Where a peer domain listens: the static route if one is configured, else the domain on
/// port 5269 through the system resolver (hosts file included).
async fn addresses(server: &Server, remote: &str) -> Result<Vec<SocketAddr>, S2sError> {
    let target = match server.config.s2s.routes.get(remote) {
        Some(route) => route.clone(),
        None => format!("{remote}:5269"),
    };
    let found: Vec<SocketAddr> = tokio::net::lookup_host(&target)
        .await
        .map_err(|e| S2sError::Unreachable(format!("resolving {target}: {e}")))?
        .collect();
    if found.is_empty() {
        return Err(S2sError::Unreachable(format!("{target} has no address")));
    }
    Ok(found)
}

/// Connects to the peer and secures the stream with STARTTLS; returns the connection right
/// after the restarted stream's features, with the peer's stream id.
async fn open_secured(server: &Server, local: &str, remote: &str) -> Result<(TlsConn, String), S2sError> {
    let mut last_error = S2sError::Unreachable(format!("no address for {remote}"));
    let mut tcp = None;
    for addr in addresses(server, remote).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                tcp = Some((stream, addr));
                break;
            }
            Err(e) => last_error = S2sError::Unreachable(format!("{addr}: {e}")),
        }
    }
    let Some((tcp, addr)) = tcp else { return Err(last_error) };
    let _ = tcp.set_nodelay(true);
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
    let name = rustls::pki_types::ServerName::try_from(remote.to_owned())
        .map_err(|_| S2sError::Refused(format!("'{remote}' is not a name TLS can check")))?;
    let connector = tokio_rustls::TlsConnector::from(server.s2s.client_tls.clone());
    let tls = connector.connect(name, conn.io).await.map_err(|e| S2sError::Refused(format!("TLS: {e}")))?;
    let mut conn = Conn::new(tls, addr, negotiation_limits(server)).server_stream();
    let (id, _) = open_stream(&mut conn, local, remote).await?;
    Ok((conn, id))
}

/// Opens a link and authenticates our domain with dialback.
async fn open_authenticated(server: &Server, local: &str, remote: &str) -> Result<TlsConn, S2sError> {
    let (mut conn, id) = open_secured(server, local, remote).await?;
    let key = dialback::key(&server.s2s.secret, remote, local, &id);
    conn.send(&dialback::element("result", local, remote, None, None, Some(&key))).await.map_err(S2sError::from)?;
    loop {
        let answer = next_element(&mut conn).await?;
        if answer.is("result", NS_DIALBACK) {
            return match answer.attr("type") {
                Some("valid") => Ok(conn),
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
        let (mut conn, _) = open_secured(server, local, remote).await?;
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
