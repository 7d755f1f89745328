//! Client-to-server connections (RFC 6120): listeners for STARTTLS on plain TCP and for
//! direct TLS (XEP-0368), and the life of one connection from accept to close.

pub mod auth;
pub mod bound;
pub mod connection;
pub mod negotiate;
pub mod throttle;

use crate::server::Server;
use crate::stream::StreamError;
use crate::xml::Limits;
use connection::{Conn, Exit, Transport};
use negotiate::{Step, negotiate};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Which kind of listener accepted a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain TCP; TLS through STARTTLS.
    StartTls,
    /// TLS from the first byte (XEP-0368).
    DirectTls,
}

/// Accepts connections forever.
pub async fn accept_loop(server: Arc<Server>, listener: TcpListener, kind: ListenerKind) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let server = server.clone();
                tokio::spawn(handle(server, tcp, peer, kind));
            }
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

fn limits(server: &Server) -> Limits {
    Limits {
        max_stanza_bytes: server.config.c2s.max_stanza_size.as_usize(),
        max_depth: server.config.c2s.max_depth,
        max_attrs: server.config.c2s.max_attributes,
    }
}

/// Negotiation runs in the accepting task; once a resource is bound, the session continues in
/// a task of its own that holds only the connection and the bound loop, and the (much larger)
/// negotiation future is freed. This is what keeps an idle session small.
async fn handle(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr, kind: ListenerKind) {
    let deadline = server.config.c2s.negotiation_timeout.get();
    if kind == ListenerKind::DirectTls {
        let Some(acceptor) = server.tls_acceptor() else { return };
        match timeout(deadline, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => negotiate_then_spawn(&server, Conn::new(tls, peer, limits(&server))).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
        return;
    }
    let mut conn = Conn::new(tcp, peer, limits(&server));
    match timeout(deadline, negotiate(&server, &mut conn)).await {
        Ok(Ok(Step::StartTls)) => {
            let Some(acceptor) = server.tls_acceptor() else { return };
            match timeout(deadline, acceptor.accept(conn.io)).await {
                Ok(Ok(tls)) => negotiate_then_spawn(&server, Conn::new(tls, peer, limits(&server))).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "STARTTLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "STARTTLS handshake timed out"),
            }
        }
        Ok(Ok(Step::Bound { session, resend })) => spawn_session(&server, conn, session, resend),
        Ok(Err(exit)) => end(&mut conn, exit).await,
        Err(_) => conn.fail(&StreamError::new("connection-timeout")).await,
    }
}

/// Negotiates (after TLS) and hands a bound session to its own task.
async fn negotiate_then_spawn<S: Transport>(server: &Arc<Server>, mut conn: Conn<S>) {
    let deadline = server.config.c2s.negotiation_timeout.get();
    match timeout(deadline, negotiate(server, &mut conn)).await {
        Ok(Ok(Step::Bound { session, resend })) => spawn_session(server, conn, session, resend),
        Ok(Ok(Step::StartTls)) => conn.fail(&StreamError::new("policy-violation")).await,
        Ok(Err(exit)) => end(&mut conn, exit).await,
        Err(_) => conn.fail(&StreamError::new("connection-timeout")).await,
    }
}

fn spawn_session<S: Transport>(
    server: &Arc<Server>,
    conn: Conn<S>,
    session: crate::session::SessionRef,
    resend: Option<Vec<crate::router::stanza::Stanza>>,
) {
    let task = bound::run(server.clone(), conn, session, resend);
    tracing::trace!(future_bytes = std::mem::size_of_val(&task), "session task");
    tokio::spawn(task);
}

async fn end<S: Transport>(conn: &mut Conn<S>, exit: Exit) {
    match exit {
        Exit::Error(error) => conn.fail(&error).await,
        Exit::Closed => conn.close().await,
        Exit::Io(_) | Exit::TakenOver => {}
    }
}
