//! The HTTP listener (`[http] listen`). It serves the health endpoint today; XMPP over
//! WebSocket (RFC 7395), file upload (XEP-0363) and metrics will share this listener.
//!
//! `GET /health` answers `200` with a small JSON document once storage is open and modules
//! are built (the server does not listen before that), so load balancers and service
//! managers can tell a running node from a starting or dead one.

use crate::server::Server;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The routes of the HTTP listener.
pub fn router(server: Arc<Server>) -> Router {
    Router::new().route("/health", get(health)).with_state(server)
}

async fn health(State(server): State<Arc<Server>>) -> impl IntoResponse {
    let body = format!(
        "{{\"status\":\"ok\",\"version\":\"{}\",\"uptime_seconds\":{},\"sessions\":{}}}",
        env!("CARGO_PKG_VERSION"),
        server.started.elapsed().as_secs(),
        server.sessions.count()
    );
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// Serves HTTP on `listener` until the task is aborted.
pub async fn serve(server: Arc<Server>, listener: TcpListener) {
    if let Err(e) = axum::serve(listener, router(server)).await {
        tracing::error!(error = %e, "HTTP listener stopped");
    }
}
