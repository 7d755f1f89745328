//! The HTTP listener answers `GET /health` with the node's status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn health_reports_ok_with_the_session_count() {
    let server = support::start("", "[http]\nlisten = [\"127.0.0.1:0\"]\n").await;
    let addr = server.running.http[0];
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("application/json"), "{response}");
    assert!(response.contains("\"status\":\"ok\"") && response.contains("\"sessions\":0"), "{response}");
}
