//! The bound client session: reads stanzas and routes them, writes what the router queues
//! for it, and pings a silent client (XEP-0199 §4.2) to find dead connections.
//!
//! The loop waits on three things at once: the socket (cancel-safe reads into the framer),
//! the outbound queue, and the idle timer. Stanzas from the client are routed one at a time,
//! in order. When the loop ends for any reason, the session is unbound and
//! [`SessionClosed`] fires, so that presence modules send unavailable presence.

use super::connection::{Conn, Exit, Transport};
use crate::module_api::{Flow, random_id};
use crate::router::bare::ToBare;
use crate::router::error::StanzaError;
use crate::router::events::{MessagesDelivered, SessionBound, SessionClosed};
use crate::router::stanza::{EnvelopeError, NS_CLIENT, Stanza};
use crate::server::Server;
use crate::session::sm::NS_SM;
use crate::session::{Outbound, SessionRef};
use crate::stream::{NS_SESSION, StreamError};
use crate::xml::{Element, FrameEvent};
use futures_util::future::OptionFuture;
use std::sync::atomic::Ordering;

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
    resend: Option<Vec<Stanza>>,
) -> impl Future<Output = ()> + Send {
    async move {
        let server = &*server;
        let guard = session.attached.lock().await;
        let generation = session.generation.load(Ordering::Acquire);
        // `if let` rather than a variable holding the outcome, so that nothing of the start is
        // kept in the task's state while the loop runs.
        let exit = if let Err(exit) = Box::pin(start(server, &mut conn, &session, resend)).await {
            exit
        } else {
            session_loop(server, &mut conn, &session, generation).await
        };
        if matches!(exit, Exit::TakenOver) {
            return; // the resuming connection serves the session from now on
        }
        let resumable = session.sm().resume_id().is_some() && !matches!(exit, Exit::Closed);
        if resumable {
            Box::pin(close_connection(&mut conn, exit)).await;
            drop(conn);
            drop(guard);
            Box::pin(wait_for_resumption(server, &session, generation)).await;
            return;
        }
        let unwritten = server.sessions.unbind(&session);
        // Contacts are told before the client sees its stream closed, so that whatever the
        // client does next (such as logging in again) comes after its unavailable presence.
        Box::pin(end_session(server, &session, unwritten)).await;
        Box::pin(close_connection(&mut conn, exit)).await;
        drop(guard);
    }
}

/// Before the loop: a resumed session gets again what the client had not acknowledged; a new
/// one is announced to the modules ([`SessionBound`]).
async fn start<S: Transport>(
    server: &Server,
    conn: &mut Conn<S>,
    session: &SessionRef,
    resend: Option<Vec<Stanza>>,
) -> Result<(), Exit> {
    match resend {
        Some(stanzas) => resend_unacked(conn, &stanzas).await,
        None => {
            if let Some(host) = server.host(session.jid.domain().as_str()) {
                host.bus.fire(&mut SessionBound { session: session.clone() }).await;
            }
            Ok(())
        }
    }
}

/// A resumable session whose connection died stays bound for the resumption timeout,
/// queueing what arrives. If no connection resumed it by then, it ends like any other.
async fn wait_for_resumption(server: &Server, session: &SessionRef, generation: u64) {
    tracing::debug!(jid = %session.jid, "connection lost; session kept for resumption");
    tokio::time::sleep(server.config.c2s.resume_timeout.get()).await;
    let Ok(_guard) = session.attached.try_lock() else { return }; // resumed and attached
    if session.generation.load(Ordering::Acquire) != generation {
        return; // resumed meanwhile
    }
    let unwritten = server.sessions.unbind(session);
    if server.sessions.get(&session.jid).is_some() {
        // The resource was bound again by a fresh login: the contacts must not see it go
        // offline; only what this session never delivered is routed (to the new one).
        let unacked = session.sm().take_unacked();
        return Box::pin(reroute(server, session, unacked, unwritten)).await;
    }
    Box::pin(end_session(server, session, unwritten)).await;
}

/// Sends again, in order, what the client had not acknowledged before resuming (§5).
async fn resend_unacked<S: Transport>(conn: &mut Conn<S>, stanzas: &[Stanza]) -> Result<(), Exit> {
    let mut buffer = Vec::new();
    for stanza in stanzas {
        stanza.write_to(&mut buffer);
    }
    if buffer.is_empty() { Ok(()) } else { conn.send(&buffer).await }
}

async fn close_connection<S: Transport>(conn: &mut Conn<S>, exit: Exit) {
    match exit {
        Exit::Error(error) => conn.fail(&error).await,
        Exit::Closed => conn.close().await,
        Exit::Io(_) | Exit::TakenOver => {}
    }
}

/// The session is over: modules learn it (presence goes unavailable) and what it never
/// delivered is routed again.
async fn end_session(server: &Server, session: &SessionRef, unwritten: Vec<Outbound>) {
    if let Some(host) = server.host(session.jid.domain().as_str()) {
        host.bus.fire(&mut SessionClosed { session: session.clone() }).await;
    }
    let unacked = session.sm().take_unacked();
    reroute(server, session, unacked, unwritten).await;
    tracing::debug!(jid = %session.jid, "session ended");
}

/// Messages this connection took but cannot be shown to have delivered (written and not
/// acknowledged under stream management, or queued and never written) are routed again: to
/// another resource, or to offline storage (XEP-0198 §5, "treat as undeliverable"). Copies the
/// server made for this account itself (from its bare JID, such as carbons) are not.
async fn reroute(server: &Server, session: &SessionRef, unacked: Vec<Stanza>, unwritten: Vec<Outbound>) {
    let account = session.jid.bare();
    let stanzas = unacked.into_iter().chain(unwritten.into_iter().filter_map(|o| match o {
        Outbound::Stanza(stanza) => Some(*stanza),
        Outbound::Close(_) => None,
    }));
    for stanza in stanzas {
        let reroutable = stanza.kind == crate::router::stanza::StanzaKind::Message
            && !matches!(stanza.type_attr(), Some("error" | "groupchat" | "headline"))
            && stanza.from().is_some_and(|f| !(f.is_bare() && f.bare() == account));
        if reroutable {
            crate::router::redeliver(server, stanza).await;
        }
    }
}

/// The loop of a bound session.
///
/// The idle timer is one `Sleep`, boxed and kept for the whole session: it is not re-armed
/// for every stanza read (reads only note the time), but when it fires, which is when the
/// session may have been idle for `ping_after_idle`. Like [`run`], a plain function returning
/// an `async move` block, so that the arguments are not kept twice: with the timer boxed, this
/// keeps the session task within 2 KiB, an allocation size the allocator serves at the
/// alignment tokio's task cells ask for without padding it up.
#[allow(clippy::manual_async_fn)] // deliberate, see above
fn session_loop<'a, S: Transport>(
    server: &'a Server,
    conn: &'a mut Conn<S>,
    session: &'a SessionRef,
    generation: u64,
) -> impl Future<Output = Exit> + Send + 'a {
    async move {
        let mut last_read = Instant::now();
        let mut idle_timer = Box::pin(tokio::time::sleep_until(last_read + server.config.c2s.ping_after_idle.get()));
        let mut ping_outstanding = false;
        loop {
            // Stanzas already buffered are handled before waiting on anything.
            match conn.buffered() {
                Ok(Some(event)) => {
                    // Boxed: routing futures are large and must not size the idle task.
                    if let Err(exit) = Box::pin(handle_event(server, conn, session, event)).await {
                        return exit;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(exit) => return exit,
            }
            // Boxed, and only while an answer is owed: an idle session must not carry the wait.
            let mut commit_wait = session.sm().owed_seq().map(|seq| Box::pin(server.storage.commits().committed(seq)));
            let woke = tokio::select! {
                read = conn.fill() => Wake::Read(read),
                out = session.next_outbound(generation) => out.map_or(Wake::TakenOver, Wake::Outbound),
                () = idle_timer.as_mut() => Wake::Idle,
                Some(()) = OptionFuture::from(commit_wait.as_mut()) => Wake::Committed,
            };
            let step = match woke {
                Wake::Read(read) => {
                    last_read = Instant::now();
                    ping_outstanding = false;
                    read
                }
                Wake::Outbound(out) => Box::pin(write_outbound(server, conn, out, session)).await,
                Wake::Committed => {
                    let answer = session.sm().take_owed_answer(server.storage.commits().committed_seq());
                    match answer {
                        Some(answer) => conn.send(&answer).await,
                        None => Ok(()),
                    }
                }
                Wake::TakenOver => Err(Exit::TakenOver),
                Wake::Idle => {
                    Box::pin(on_idle_timer(
                        server,
                        conn,
                        session,
                        idle_timer.as_mut(),
                        last_read,
                        &mut ping_outstanding,
                    ))
                    .await
                }
            };
            if let Err(exit) = step {
                return exit;
            }
        }
    }
}

/// The idle timer fired (XEP-0199 §4.2 client-to-server pings). If something was read since it
/// was armed, it is armed again for `ping_after_idle` after that read; if a ping is already
/// unanswered, the connection is dead; otherwise the client is pinged and gets `ping_timeout`
/// to show it is there.
async fn on_idle_timer<S: Transport>(
    server: &Server,
    conn: &mut Conn<S>,
    session: &SessionRef,
    timer: std::pin::Pin<&mut tokio::time::Sleep>,
    last_read: Instant,
    ping_outstanding: &mut bool,
) -> Result<(), Exit> {
    let c2s = &server.config.c2s;
    let quiet_until = last_read + c2s.ping_after_idle.get();
    if *ping_outstanding {
        return Err(Exit::Error(StreamError::with_text("connection-timeout", "no answer to ping")));
    }
    let now = Instant::now();
    if quiet_until > now {
        timer.reset(quiet_until);
        return Ok(());
    }
    *ping_outstanding = true;
    timer.reset(now + c2s.ping_timeout.get());
    send_ping(conn, session).await
}

enum Wake {
    Read(Result<(), Exit>),
    Outbound(Outbound),
    Idle,
    /// A resumption took the session over.
    TakenOver,
    /// Storage committed what an owed `<a/>` waits for.
    Committed,
}

async fn handle_event<S: Transport>(
    server: &Server,
    conn: &mut Conn<S>,
    session: &SessionRef,
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
            session.sm().on_handled();
            let stanza = Stanza::new(crate::router::stanza::StanzaKind::Message, el);
            return reply_error(conn, &stanza, StanzaError::jid_malformed()).await;
        }
        Err((EnvelopeError::NotAStanza, el)) if el.ns == NS_SM => {
            return stream_management(server, conn, session, &el).await;
        }
        Err((EnvelopeError::NotAStanza, el)) => return handle_nonza(server, session, el).await,
    };
    session.sm().on_handled();
    if is_legacy_session_request(&stanza) {
        // RFC 3921 session establishment: a no-op kept for old clients (RFC 6121 Appendix E).
        if let Some(reply) = crate::router::iq::reply(&stanza, Ok(None)) {
            conn.send_stanza(&reply).await?;
        }
        return Ok(());
    }
    crate::router::from_client(server, session, stanza).await;
    session.sm().mark_routed(server.storage.commits().enqueued());
    Ok(())
}

/// `urn:xmpp:sm:3` elements; `<enable resume='true'/>` registers the session for resumption.
async fn stream_management<S: Transport>(
    server: &Server,
    conn: &mut Conn<S>,
    session: &SessionRef,
    el: &Element,
) -> Result<(), Exit> {
    let wants_resume = matches!(el.attr("resume"), Some("true" | "1"));
    if el.name == "r" && session.sm().is_enabled() {
        // Durable before acknowledged: the count covers only what storage has committed. When
        // writes are still on their way, the answer is owed and the session loop sends it on
        // commit, reading on meanwhile so that the client's next messages join the same batch.
        let mut sm = session.sm();
        if sm.routed_seq() > server.storage.commits().committed_seq() {
            sm.owe_ack();
            return Ok(());
        }
    }
    let reply = if el.name == "enable" && wants_resume && !session.sm().is_enabled() {
        let id = random_id(12);
        let max = server.config.c2s.resume_timeout.get().as_secs();
        let reply = session.sm().enable_resumable(id.clone(), max);
        server.sessions.register_resumable(&id, session);
        Some(reply)
    } else {
        session.sm().on_nonza(el)?
    };
    if el.name == "a" {
        report_delivered(server, session).await;
    }
    match reply {
        Some(reply) => conn.send(&reply).await,
        None => Ok(()),
    }
}

/// Tells the modules which messages reached the client (acknowledged, or written without
/// stream management), so that stores holding them until delivery can let go.
pub(crate) async fn report_delivered(server: &Server, session: &SessionRef) {
    let messages = session.sm().take_delivered();
    if messages.is_empty() {
        return;
    }
    if let Some(host) = server.host(session.jid.domain().as_str()) {
        host.bus.fire(&mut MessagesDelivered { session: session.clone(), messages }).await;
    }
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
        && stanza.el().has_child("session", NS_SESSION)
}

async fn reply_error<S: Transport>(conn: &mut Conn<S>, stanza: &Stanza, error: StanzaError) -> Result<(), Exit> {
    if let Some(reply) = error.reply_to(stanza) {
        conn.send_stanza(&reply).await?;
    }
    Ok(())
}

/// Writes one queued item and whatever else is queued (up to a batch), then flushes once.
async fn write_outbound<S: Transport>(
    server: &Server,
    conn: &mut Conn<S>,
    first: Outbound,
    session: &SessionRef,
) -> Result<(), Exit> {
    let mut buffer = Vec::new();
    let mut next = Some(first);
    let mut written = 0;
    while let Some(item) = next.take() {
        match item {
            Outbound::Stanza(stanza) => {
                stanza.write_to(&mut buffer);
                session.sm().on_sent(&stanza);
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
    let request = session.sm().ack_request();
    if let Some(request) = request {
        buffer.extend_from_slice(request);
    }
    conn.send(&buffer).await?;
    report_delivered(server, session).await;
    Ok(())
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

#[cfg(test)]
mod tests {
    /// The size of the future a function returns, without calling it.
    fn future_size<F: Future>(_: impl FnOnce() -> F) -> usize {
        size_of::<F>()
    }

    /// tokio allocates a task as one cell aligned to 128 bytes: a 32-byte header, 16 bytes of
    /// scheduler and task id, the future's stage (the future plus 8 bytes), a 48-byte trailer.
    /// Up to 2048 bytes, a power of two, mimalloc serves that alignment from its 2 KiB size
    /// class; one byte more and the cell takes 2176 bytes, over-allocated to a 2.5 KiB block,
    /// 512 bytes more for every session. So the future of a TLS session may be 1944 bytes.
    #[test]
    #[allow(unreachable_code, clippy::diverging_sub_expression)] // the closure is never called
    fn a_session_task_fits_the_2_kib_allocation() {
        type Tls = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
        let task = future_size(|| super::run::<Tls>(todo!(), todo!(), todo!(), None));
        assert!(task <= 2048 - 32 - 16 - 8 - 48, "the session task's future is {task} bytes");
    }
}
