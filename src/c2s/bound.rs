//! The bound client session: reads stanzas and routes them, writes what the router queues
//! for it, and pings a silent client (XEP-0199 §4.2) to find dead connections.
//!
//! The loop waits on three things at once: the socket (cancel-safe reads into the framer),
//! the outbound queue, and the idle timer. Stanzas from the client are routed one at a time,
//! in order. When the loop ends for any reason, the session is unbound and
//! [`SessionClosed`] fires, so that presence modules send unavailable presence.

use super::connection::{Conn, Exit, Transport};
use super::sm::{NS_SM, StreamManagement};
use crate::module_api::{Flow, random_id};
use crate::router::error::StanzaError;
use crate::router::events::{SessionBound, SessionClosed};
use crate::router::stanza::{EnvelopeError, NS_CLIENT, Stanza};
use crate::server::Server;
use crate::session::{Outbound, SessionRef};
use crate::stream::{NS_SESSION, StreamError};
use crate::xml::{Element, FrameEvent};

use tokio::time::Instant;

/// Most queued stanzas written in one batch before flushing.
const WRITE_BATCH: usize = 64;

/// Runs a bound session until it ends.
///
/// A plain function returning an `async move` block rather than an `async fn`: an async fn
/// keeps a second copy of by-value arguments in its state, which for the connection (with
/// its TLS state inline) would cost every idle session about 1.4 KiB.
#[allow(clippy::manual_async_fn)] // deliberate, see above: an async fn would be 1.4 KiB larger
pub fn run<S: Transport>(
    server: std::sync::Arc<Server>,
    mut conn: Conn<S>,
    session: SessionRef,
) -> impl Future<Output = ()> + Send {
    async move {
        let server = &*server;
        if let Some(host) = server.host(session.jid.domain().as_str()) {
            Box::pin(host.bus.fire(&mut SessionBound { session: session.clone() })).await;
        }
        let mut sm = StreamManagement::default();
        let exit = session_loop(server, &mut conn, &session, &mut sm).await;
        let unwritten = server.sessions.unbind(&session);
        Box::pin(finish(server, &mut conn, &session, exit)).await;
        Box::pin(reroute(server, &session, sm.take_unacked(), unwritten)).await;
        tracing::debug!(jid = %session.jid, "session ended");
    }
}

async fn finish<S: Transport>(server: &Server, conn: &mut Conn<S>, session: &SessionRef, exit: Exit) {
    match exit {
        Exit::Error(error) => conn.fail(&error).await,
        Exit::Closed => conn.close().await,
        Exit::Io(_) => {}
    }
    if let Some(host) = server.host(session.jid.domain().as_str()) {
        host.bus.fire(&mut SessionClosed { session: session.clone() }).await;
    }
}

/// Messages this connection took but cannot be shown to have delivered (written and not
/// acknowledged under stream management, or queued and never written) are routed again: to
/// another resource, or to offline storage (XEP-0198 §5, "treat as undeliverable"). Copies the
/// server made for this account itself (from its bare JID, such as carbons) are not.
async fn reroute(server: &Server, session: &SessionRef, unacked: Vec<Element>, unwritten: Vec<Outbound>) {
    let account = session.jid.to_bare();
    let stanzas = unacked.into_iter().chain(unwritten.into_iter().filter_map(|o| match o {
        Outbound::Stanza(el) => Some(*el),
        Outbound::Close(_) => None,
    }));
    for el in stanzas {
        let Ok(stanza) = Stanza::from_element(el) else { continue };
        let reroutable = stanza.kind == crate::router::stanza::StanzaKind::Message
            && !matches!(stanza.type_attr(), Some("error" | "groupchat" | "headline"))
            && stanza.from().is_some_and(|f| !(f.is_bare() && f.to_bare() == account));
        if reroutable {
            crate::router::route(server, stanza, None).await;
        }
    }
}

async fn session_loop<S: Transport>(
    server: &Server,
    conn: &mut Conn<S>,
    session: &SessionRef,
    sm: &mut StreamManagement,
) -> Exit {
    let idle = server.config.c2s.ping_after_idle.get();
    let ping_timeout = server.config.c2s.ping_timeout.get();
    let mut deadline = Instant::now() + idle;
    let mut ping_outstanding = false;
    loop {
        // Stanzas already buffered are handled before waiting on anything.
        match conn.buffered() {
            Ok(Some(event)) => {
                // Boxed: routing futures are large and must not size the idle task.
                if let Err(exit) = Box::pin(handle_event(server, conn, session, sm, event)).await {
                    return exit;
                }
                continue;
            }
            Ok(None) => {}
            Err(exit) => return exit,
        }
        let woke = tokio::select! {
            read = conn.fill() => Wake::Read(read),
            out = session.next_outbound() => Wake::Outbound(out),
            () = tokio::time::sleep_until(deadline) => Wake::Idle,
        };
        let step = match woke {
            Wake::Read(read) => {
                deadline = Instant::now() + idle;
                ping_outstanding = false;
                read
            }
            Wake::Outbound(out) => Box::pin(write_outbound(conn, out, session, sm)).await,
            Wake::Idle if ping_outstanding => {
                Err(Exit::Error(StreamError::with_text("connection-timeout", "no answer to ping")))
            }
            Wake::Idle => {
                ping_outstanding = true;
                deadline = Instant::now() + ping_timeout;
                Box::pin(send_ping(conn, session)).await
            }
        };
        if let Err(exit) = step {
            return exit;
        }
    }
}

enum Wake {
    Read(Result<(), Exit>),
    Outbound(Outbound),
    Idle,
}

async fn handle_event<S: Transport>(
    server: &Server,
    conn: &mut Conn<S>,
    session: &SessionRef,
    sm: &mut StreamManagement,
    event: FrameEvent,
) -> Result<(), Exit> {
    let el = match event {
        FrameEvent::Element(el) => el,
        FrameEvent::StreamClose => return Err(Exit::Closed),
        FrameEvent::StreamOpen(_) => return Err(StreamError::new("not-well-formed").into()),
    };
    let stanza = match Stanza::from_element(el) {
        Ok(stanza) => stanza,
        Err((EnvelopeError::BadJid(_), el)) => {
            sm.on_handled();
            let stanza = Stanza::new(crate::router::stanza::StanzaKind::Message, el);
            return reply_error(conn, &stanza, StanzaError::jid_malformed()).await;
        }
        Err((EnvelopeError::NotAStanza, el)) if el.ns == NS_SM => {
            return match sm.on_nonza(&el)? {
                Some(reply) => conn.send(&reply).await,
                None => Ok(()),
            };
        }
        Err((EnvelopeError::NotAStanza, el)) => return handle_nonza(server, session, el).await,
    };
    sm.on_handled();
    if is_legacy_session_request(&stanza) {
        // RFC 3921 session establishment: a no-op kept for old clients (RFC 6121 Appendix E).
        if let Some(reply) = crate::router::iq::reply(&stanza, Ok(None)) {
            conn.send_element(&reply.el).await?;
        }
        return Ok(());
    }
    crate::router::from_client(server, session, stanza).await;
    Ok(())
}

/// Top-level elements that are not stanzas (stream management, CSI and the like) go to the
/// modules; unknown ones end the stream (RFC 6120 §4.9.3.22 `unsupported-stanza-type`).
async fn handle_nonza(server: &Server, session: &SessionRef, el: Element) -> Result<(), Exit> {
    if let Some(host) = server.host(session.jid.domain().as_str()) {
        let mut event = crate::router::events::NonzaReceived { session: session.clone(), element: el };
        if host.bus.fire(&mut event).await == Flow::Handled {
            return Ok(());
        }
        return Err(StreamError::with_text(
            "unsupported-stanza-type",
            format!("<{}/> in {}", event.element.name, event.element.ns),
        )
        .into());
    }
    Err(StreamError::new("unsupported-stanza-type").into())
}

fn is_legacy_session_request(stanza: &Stanza) -> bool {
    stanza.kind == crate::router::stanza::StanzaKind::Iq
        && stanza.type_attr() == Some("set")
        && stanza.el.has_child("session", NS_SESSION)
}

async fn reply_error<S: Transport>(conn: &mut Conn<S>, stanza: &Stanza, error: StanzaError) -> Result<(), Exit> {
    if let Some(reply) = error.reply_to(stanza) {
        conn.send_element(&reply.el).await?;
    }
    Ok(())
}

/// Writes one queued item and whatever else is queued (up to a batch), then flushes once.
async fn write_outbound<S: Transport>(
    conn: &mut Conn<S>,
    first: Outbound,
    session: &SessionRef,
    sm: &mut StreamManagement,
) -> Result<(), Exit> {
    let mut buffer = Vec::new();
    let mut next = Some(first);
    let mut written = 0;
    while let Some(item) = next.take() {
        match item {
            Outbound::Stanza(el) => {
                el.write_to(&mut buffer, NS_CLIENT);
                sm.on_sent(&el);
            }
            Outbound::Close(condition) => {
                conn.send(&buffer).await?;
                return Err(StreamError::new(condition).into());
            }
        }
        written += 1;
        if written < WRITE_BATCH {
            next = session.try_next_outbound();
        }
    }
    if let Some(request) = sm.ack_request() {
        buffer.extend_from_slice(request);
    }
    conn.send(&buffer).await
}

async fn send_ping<S: Transport>(conn: &mut Conn<S>, session: &SessionRef) -> Result<(), Exit> {
    let ping = Element::new("iq", NS_CLIENT)
        .with_attr("type", "get")
        .with_attr("id", format!("ping-{}", random_id(6)))
        .with_attr("from", session.jid.domain().as_str())
        .with_attr("to", session.jid.as_str())
        .with_child(Element::new("ping", crate::module_api::ns::PING));
    conn.send_element(&ping).await
}
