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
                tokio::spawn(async move { handle(server, tcp, peer, kind).await });
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

async fn handle(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr, kind: ListenerKind) {
    let deadline = server.config.c2s.negotiation_timeout.get();
    if kind == ListenerKind::DirectTls {
        let Some(acceptor) = server.tls_acceptor() else { return };
        match timeout(deadline, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => serve(&server, Conn::new(tls, peer, limits(&server))).await,
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
                Ok(Ok(tls)) => {
                    let conn = Conn::new(tls, peer, limits(&server));
                    serve(&server, conn).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "STARTTLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "STARTTLS handshake timed out"),
            }
        }
        Ok(Ok(Step::Bound { session, rx })) => bound::run(&server, &mut conn, session, rx).await,
        Ok(Err(exit)) => end(&mut conn, exit).await,
        Err(_) => conn.fail(&StreamError::new("connection-timeout")).await,
    }
}

/// Negotiates (after TLS) and runs the session.
async fn serve<S: Transport>(server: &Server, mut conn: Conn<S>) {
    let deadline = server.config.c2s.negotiation_timeout.get();
    match timeout(deadline, negotiate(server, &mut conn)).await {
        Ok(Ok(Step::Bound { session, rx })) => bound::run(server, &mut conn, session, rx).await,
        Ok(Ok(Step::StartTls)) => conn.fail(&StreamError::new("policy-violation")).await,
        Ok(Err(exit)) => end(&mut conn, exit).await,
        Err(_) => conn.fail(&StreamError::new("connection-timeout")).await,
    }
}

async fn end<S: Transport>(conn: &mut Conn<S>, exit: Exit) {
    match exit {
        Exit::Error(error) => conn.fail(&error).await,
        Exit::Closed => conn.close().await,
        Exit::Io(_) => {}
    }
}
