//! The TLS echo reference: the ceiling for one-to-one chat on the same machine.
//!
//! `echo-server` is a trivial TLS server (Starling's own rustls configuration and the same
//! certificate) that writes back whatever it reads. `echo` drives it with P connections, each
//! sending M message stanzas shaped as in the `chat` scenario (same addressing and body),
//! keeping at most W not yet returned, and reports what `chat` reports: messages per second
//! and latency from send to return. Each message is decrypted and encrypted once by the
//! server, as a chat message is between a sender's and a receiver's connection, with no XML
//! parsing, routing or storage in between.

use crate::chat::{chat_message, percentiles};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Serves the echo on `listen` until killed.
pub async fn serve(listen: SocketAddr, cert: PathBuf, key: PathBuf) -> Result<(), String> {
    use starling::stream::tls::{CertSource, CertStore, TicketKeys, server_config};
    let store =
        CertStore::load(&[("localhost".to_owned(), CertSource::Files { cert, key })]).map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(
        server_config(Arc::new(store), TicketKeys::in_process()).map_err(|e| e.to_string())?,
    );
    let listener = TcpListener::bind(listen).await.map_err(|e| e.to_string())?;
    loop {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(mut tls) = acceptor.accept(tcp).await else { return };
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = tls.read(&mut buf).await {
                if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
            }
        });
    }
}

/// What one run against the echo server does.
#[derive(Clone, Debug)]
pub struct EchoPlan {
    pub connections: usize,
    pub messages: usize,
    pub window: usize,
    pub body_bytes: usize,
    pub deadline: Duration,
    /// The echo server's process, whose CPU time is reported.
    pub server_pid: Option<u32>,
}

/// Runs the client side; returns the JSON fields of the result.
pub async fn run(server: SocketAddr, plan: EchoPlan) -> Result<String, String> {
    let tls = crate::client::insecure_tls()?;
    let mut streams = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        let tcp = TcpStream::connect(server).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        streams.push(tls.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?);
    }
    let base = Instant::now();
    let (bench_clock, server_clock) = (crate::CpuClock::own(), crate::CpuClock::server(plan.server_pid));
    let mut tasks = Vec::with_capacity(plan.connections);
    for (i, stream) in streams.into_iter().enumerate() {
        tasks.push(tokio::spawn(one_connection(stream, i, plan.clone(), base)));
    }
    let (mut returned, mut latencies) = (0usize, Vec::with_capacity(plan.connections * plan.messages));
    for task in tasks {
        let (count, samples) = task.await.map_err(|e| e.to_string())?;
        returned += count;
        latencies.extend(samples);
    }
    let elapsed = base.elapsed().as_secs_f64();
    let (bench_cpu, server_cpu) = (bench_clock.json(), server_clock.json());
    let expected = plan.connections * plan.messages;
    Ok(format!(
        "\"connections\":{},\"messages_per_connection\":{},\"window\":{},\"expected\":{expected},\
         \"delivered\":{returned},\"lost\":{},\"seconds\":{elapsed:.3},\"delivered_per_sec\":{:.1},\
         \"delivery_ms\":{},\"bench_cpu_s\":{bench_cpu},\"server_cpu_s\":{server_cpu}",
        plan.connections,
        plan.messages,
        plan.window,
        expected.saturating_sub(returned),
        returned as f64 / elapsed,
        percentiles(&mut latencies),
    ))
}

type Stream = tokio_rustls::client::TlsStream<TcpStream>;

/// Sends a connection's messages and reads them back; returns how many came back and their
/// latencies in microseconds.
async fn one_connection(stream: Stream, i: usize, plan: EchoPlan, base: Instant) -> (usize, Vec<u32>) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let window = Arc::new(Semaphore::new(plan.window));
    let until = tokio::time::Instant::from_std(base + plan.deadline);
    let sending = {
        let (window, plan) = (window.clone(), plan.clone());
        tokio::spawn(async move {
            let to = format!("bench{}@localhost", 2 * i + 1);
            let pad = "x".repeat(plan.body_bytes.saturating_sub(24));
            for k in 0..plan.messages {
                match tokio::time::timeout_at(until, window.acquire()).await {
                    Ok(Ok(permit)) => permit.forget(),
                    _ => break,
                }
                let now = base.elapsed().as_micros() as u64;
                let message = chat_message(&to, k, now, &pad);
                if writer.write_all(message.as_bytes()).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
            }
            writer
        })
    };
    let (mut pending, mut chunk) = (Vec::new(), vec![0u8; 16 * 1024]);
    let (mut returned, mut latencies) = (0usize, Vec::with_capacity(plan.messages));
    while returned < plan.messages {
        let n = match tokio::time::timeout_at(until, reader.read(&mut chunk)).await {
            Ok(Ok(n @ 1..)) => n,
            _ => break,
        };
        pending.extend_from_slice(&chunk[..n]);
        let now = base.elapsed().as_micros() as u64;
        let consumed = take_messages(&pending, |sent_at| {
            latencies.push(u32::try_from(now.saturating_sub(sent_at)).unwrap_or(u32::MAX));
            returned += 1;
            window.add_permits(1);
        });
        pending.drain(..consumed);
    }
    // The writer half goes with the connection once both sides are done.
    let _ = sending.await;
    (returned, latencies)
}

/// Calls `each` with the send time of every whole message at the start of `bytes`; returns how
/// many bytes those messages took.
fn take_messages(bytes: &[u8], mut each: impl FnMut(u64)) -> usize {
    const END: &[u8] = b"</message>";
    let mut consumed = 0;
    while let Some(at) = crate::find_bytes(&bytes[consumed..], END) {
        let message = &bytes[consumed..consumed + at];
        let body = crate::find_bytes(message, b"<body>").map(|b| &message[b + 6..]);
        let sent_at = body
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|b| b.split(':').nth(1))
            .and_then(|t| t.parse::<u64>().ok());
        if let Some(sent_at) = sent_at {
            each(sent_at);
        }
        consumed += at + END.len();
    }
    consumed
}

#[cfg(test)]
mod tests {
    #[test]
    fn whole_messages_are_taken_and_a_partial_one_is_left() {
        let bytes = b"<message id='0'><body>0:15:xx</body></message><message id='1'><body>1:2";
        let mut times = Vec::new();
        let consumed = super::take_messages(bytes, |t| times.push(t));
        assert_eq!(times, [15]);
        assert_eq!(&bytes[consumed..], b"<message id='1'><body>1:2");
    }
}
