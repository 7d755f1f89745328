//! Server-to-server federation (RFC 6120 with `jabber:server` streams, XEP-0220 dialback,
//! XEP-0368 direct TLS for incoming streams).
//!
//! Stanzas for a domain that is neither served here nor a component go to [`send`]: an
//! outgoing link ([`outgoing`]) per peer domain, created on demand, with a bounded queue; our
//! other domains (a second host, `conference.*`) join an open link by dialback; stanzas that
//! cannot be queued or delivered bounce to their sender.
//! Incoming streams ([`incoming`]) authenticate their peer domains by dialback and hand
//! stanzas to the router as if they came from a local component: the router never sees the
//! difference between a local and a remote sender beyond the JID.
//!
//! Stanzas travel as `jabber:client` elements inside the server: the framer reads a server
//! stream's default namespace as `jabber:client`, and stanzas are written without a namespace
//! declaration, so they inherit `jabber:server` from our stream header.

pub mod dialback;
pub mod incoming;
mod outgoing;
pub mod resolve;
pub mod tls;

use crate::router::error::{ErrorType, StanzaError};
use crate::router::stanza::Stanza;
use crate::server::Server;
use crate::xml::Limits;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Federation state: the links in use, the dialback secret and the TLS configurations.
pub struct S2s {
    links: Mutex<HashMap<(String, String), LinkHandle>>,
    /// Secret behind our dialback keys (XEP-0185), new at each start: keys are only checked
    /// while the link that presented them is being set up.
    pub(crate) secret: Vec<u8>,
    /// Outgoing TLS per local domain (each presents its own certificate), and for others.
    client_tls: HashMap<String, Arc<rustls::ClientConfig>>,
    anonymous_tls: Arc<rustls::ClientConfig>,
    /// Incoming TLS: our certificates, and a request for the peer's.
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    /// SRV lookups (none when no resolver could be set up).
    pub(crate) resolver: Option<hickory_resolver::TokioResolver>,
    /// Checks peers' certificates (system authorities and `ca_files`).
    pub(crate) peer_check: Option<tls::PeerCheck>,
    /// Peer domains authenticated on incoming streams, by dialback and by SASL EXTERNAL.
    pub authenticated_by_dialback: std::sync::atomic::AtomicU64,
    /// See `authenticated_by_dialback`.
    pub authenticated_by_certificate: std::sync::atomic::AtomicU64,
    /// Outgoing links that authenticated with SASL EXTERNAL (the rest used dialback).
    pub links_by_certificate: std::sync::atomic::AtomicU64,
    /// Incoming server streams that reached TLS.
    pub streams_accepted: std::sync::atomic::AtomicU64,
    /// Becomes true when the server shuts down: every server stream closes.
    closing: tokio::sync::watch::Sender<bool>,
}

impl S2s {
    /// Federation state for a configuration; `domains` are ours, with certificates in `certs`.
    pub fn new(
        config: &crate::config::S2sSection,
        domains: &[String],
        certs: Arc<crate::stream::tls::CertStore>,
    ) -> anyhow::Result<S2s> {
        let roots = tls::roots(&config.ca_files)?;
        let mut client_tls = HashMap::new();
        for domain in domains {
            let own = Some(certs.resolve_name(Some(domain)));
            client_tls.insert(domain.clone(), tls::client_config(config.require_valid_certs, &roots, own)?);
        }
        Ok(S2s {
            links: Mutex::new(HashMap::new()),
            secret: crate::module_api::random_id(32).into_bytes(),
            client_tls,
            anonymous_tls: tls::client_config(config.require_valid_certs, &roots, None)?,
            acceptor: tokio_rustls::TlsAcceptor::from(tls::server_config(certs)?),
            peer_check: tls::PeerCheck::new(&roots)?,
            resolver: resolve::resolver(&config.dns_servers),
            authenticated_by_dialback: Default::default(),
            authenticated_by_certificate: Default::default(),
            links_by_certificate: Default::default(),
            streams_accepted: Default::default(),
            closing: tokio::sync::watch::Sender::new(false),
        })
    }

    /// The outgoing TLS configuration for links from `local`.
    pub(crate) fn client_tls(&self, local: &str) -> Arc<rustls::ClientConfig> {
        self.client_tls.get(local).cloned().unwrap_or_else(|| self.anonymous_tls.clone())
    }

    /// Closes every server stream, in both directions (`system-shutdown`).
    pub fn shut_down(&self) {
        self.closing.send_replace(true);
    }

    /// Whether the server is shutting down.
    pub(crate) fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Resolves when the server shuts down.
    pub(crate) async fn closed(&self) {
        let mut closing = self.closing.subscribe();
        let _ = closing.wait_for(|closing| *closing).await;
    }
}

impl S2s {
    /// Our dialback key for a stream `stream_id` that `receiving` opened for our domain
    /// `originating` (XEP-0185).
    pub fn dialback_key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        dialback::key(&self.secret, receiving, originating, stream_id)
    }
}

/// Why a peer could not be reached or refused us.
#[derive(Debug, thiserror::Error)]
pub enum S2sError {
    /// No connection could be made.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer refused or broke the protocol.
    #[error("refused: {0}")]
    Refused(String),
}

impl From<crate::c2s::connection::Exit> for S2sError {
    fn from(exit: crate::c2s::connection::Exit) -> S2sError {
        S2sError::Refused(format!("{exit:?}"))
    }
}

/// A stanza waiting for a link, with the number of links that already failed to deliver it.
pub(crate) struct Queued {
    stanza: Stanza,
    tries: u8,
}

/// Sends a stanza to another server: queued on the link for its (sender domain, addressee
/// domain), which is opened if needed. The sender's domain must be one of ours.
pub async fn send(server: &Server, stanza: Stanza) {
    resend(server, Queued { stanza, tries: 0 }).await;
}

async fn resend(server: &Server, queued: Queued) {
    let (Some(from), Some(to)) = (queued.stanza.from_ref(), queued.stanza.to_ref()) else { return };
    let local = from.domain().as_str().to_owned();
    let remote = to.domain().as_str().to_owned();
    if !is_ours(server, &local) {
        return; // only our own users' and services' stanzas leave through us
    }
    let Some(me) = server.me() else { return };
    let mut queued = queued;
    for _ in 0..2 {
        let sender = link(&me, &local, &remote);
        // A full queue holds the sender back (its own stream stops being read) for a while;
        // a peer that stays slower than that makes stanzas bounce.
        match sender.send_timeout(queued, QUEUE_WAIT).await {
            Ok(()) => return,
            Err(mpsc::error::SendTimeoutError::Timeout(refused)) => {
                let error = StanzaError::new(ErrorType::Wait, "resource-constraint")
                    .with_text("too many stanzas are waiting for this server");
                return crate::router::bounce(server, &refused.stanza, error).await;
            }
            // The link just ended; a new one is made on the second pass.
            Err(mpsc::error::SendTimeoutError::Closed(refused)) => {
                link_ended(server);
                queued = refused;
            }
        }
    }
    crate::router::bounce(server, &queued.stanza, StanzaError::remote_server_not_found()).await;
}

/// How long a stanza may wait for room in a full link queue before it bounces.
const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A link's queue, and whether it takes stanzas of our other domains too.
#[derive(Clone)]
struct LinkHandle {
    sender: mpsc::Sender<Queued>,
    /// Set once the link authenticated by dialback: other domains of ours are then added to
    /// it with dialback (XEP-0220 §4.1), so one connection serves all of them.
    shared: Arc<AtomicBool>,
}

/// The queue for stanzas from `local` to `remote`: that pair's link; else an open link to the
/// same peer that takes our other domains; else a new link.
fn link(server: &Arc<Server>, local: &str, remote: &str) -> mpsc::Sender<Queued> {
    let mut links = server.s2s.links.lock().unwrap_or_else(|p| p.into_inner());
    let key = (local.to_owned(), remote.to_owned());
    if let Some(handle) = links.get(&key).filter(|h| !h.sender.is_closed()) {
        return handle.sender.clone();
    }
    let shared = links
        .iter()
        .find(|((_, r), h)| r == remote && !h.sender.is_closed() && h.shared.load(Ordering::Acquire))
        .map(|(_, h)| h.clone());
    if let Some(handle) = shared {
        links.insert(key, handle.clone());
        return handle.sender;
    }
    let (sender, queue) = mpsc::channel(server.config.s2s.max_queued.max(1));
    let shared = Arc::new(AtomicBool::new(false));
    links.insert(key, LinkHandle { sender: sender.clone(), shared: shared.clone() });
    tokio::spawn(outgoing::run_link(server.clone(), local.to_owned(), remote.to_owned(), queue, shared));
    sender
}

/// Forgets links that ended (every pair that used them).
fn link_ended(server: &Server) {
    let mut links = server.s2s.links.lock().unwrap_or_else(|p| p.into_inner());
    links.retain(|_, handle| !handle.sender.is_closed());
}

/// Whether a domain is ours: served here or a component of ours.
fn is_ours(server: &Server, domain: &str) -> bool {
    server.host(domain).is_some() || server.component(domain).is_some()
}

/// Our `jabber:server` stream header, with the dialback namespace declared (XEP-0220 §2.4).
fn header(from: &str, to: &str, id: Option<&str>) -> Vec<u8> {
    let escape = |s: &str| s.replace('&', "&amp;").replace('\'', "&apos;").replace('<', "&lt;");
    let mut out = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='{}' \
         xmlns:db='{}' from='{}' version='1.0'",
        crate::stream::NS_STREAMS,
        dialback::NS_DIALBACK,
        escape(from)
    );
    if !to.is_empty() {
        out.push_str(&format!(" to='{}'", escape(to)));
    }
    if let Some(id) = id {
        out.push_str(&format!(" id='{}'", escape(id)));
    }
    out.push('>');
    out.into_bytes()
}

/// The limits on peer streams: those of client streams.
fn negotiation_limits(server: &Server) -> Limits {
    Limits {
        max_stanza_bytes: server.config.c2s.max_stanza_size.as_usize(),
        max_depth: server.config.c2s.max_depth,
        max_attrs: server.config.c2s.max_attributes,
    }
}
