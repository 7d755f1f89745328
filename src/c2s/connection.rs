//! One client connection's transport: the socket (plain or TLS), the framer fed from it,
//! and the write path. Reads are cancel-safe (`read` into a fresh buffer, framer state kept
//! here), so the bound session can wait on the socket and its outbound queue at once.

use crate::stream::StreamError;
use crate::xml::{Element, FrameEvent, Framer, Limits};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Size of one socket read. The buffer lives on the stack of a single poll, never across an
/// await, so an idle connection holds no read buffer at all.
const READ_CHUNK: usize = 4096;

/// What a transport can tell about itself.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether the transport is TLS.
    fn is_secure(&self) -> bool;
    /// The TLS connection state, for channel binding.
    fn tls_state(&self) -> Option<&rustls::ServerConnection>;
}

impl Transport for TcpStream {
    fn is_secure(&self) -> bool {
        false
    }
    fn tls_state(&self) -> Option<&rustls::ServerConnection> {
        None
    }
}

/// An outgoing server connection's TLS (client side of the handshake).
impl Transport for tokio_rustls::client::TlsStream<TcpStream> {
    fn is_secure(&self) -> bool {
        true
    }
    fn tls_state(&self) -> Option<&rustls::ServerConnection> {
        None
    }
}

impl Transport for TlsStream<TcpStream> {
    fn is_secure(&self) -> bool {
        true
    }
    fn tls_state(&self) -> Option<&rustls::ServerConnection> {
        Some(self.get_ref().1)
    }
}

/// Why a connection ends.
#[derive(Debug)]
pub enum Exit {
    /// The peer closed the stream or the socket.
    Closed,
    /// We must send this stream error and close.
    Error(StreamError),
    /// The socket failed; nothing more can be written.
    Io(std::io::Error),
    /// Another connection resumed this session (XEP-0198 §5); this one just lets go.
    TakenOver,
}

impl From<std::io::Error> for Exit {
    fn from(e: std::io::Error) -> Exit {
        Exit::Io(e)
    }
}

impl From<StreamError> for Exit {
    fn from(e: StreamError) -> Exit {
        Exit::Error(e)
    }
}

/// The connection: socket plus framer.
pub struct Conn<S> {
    /// The socket.
    pub io: S,
    /// The peer's address.
    pub peer: SocketAddr,
    framer: Framer,
}

impl<S: Transport> Conn<S> {
    /// Wraps a socket.
    pub fn new(io: S, peer: SocketAddr, limits: Limits) -> Conn<S> {
        Conn { io, peer, framer: Framer::new(limits) }
    }

    /// Reads the peer's stream as a server stream (see [`Framer::present_server_as_client`]).
    pub fn server_stream(mut self) -> Conn<S> {
        self.framer.present_server_as_client();
        self
    }

    /// Moves the framer to a new socket (after the TLS handshake) and resets it.
    pub fn upgrade<T: Transport>(self, io: T) -> Conn<T> {
        let mut framer = self.framer;
        framer.reset();
        Conn { io, peer: self.peer, framer }
    }

    /// Resets the framer for a stream restart (after SASL success, RFC 6120 §6.4.6).
    pub fn restart(&mut self) {
        self.framer.reset();
    }

    /// The next frame event, reading from the socket as needed.
    pub async fn next(&mut self) -> Result<FrameEvent, Exit> {
        loop {
            if let Some(event) = self.framer.next_event().map_err(StreamError::from)? {
                self.framer.shrink_when_idle();
                return Ok(event);
            }
            self.fill().await?;
        }
    }

    /// A frame event already buffered, without reading.
    pub fn buffered(&mut self) -> Result<Option<FrameEvent>, Exit> {
        let event = self.framer.next_event().map_err(StreamError::from)?;
        if event.is_some() {
            self.framer.shrink_when_idle();
        }
        Ok(event)
    }

    /// Reads once from the socket into the framer. Cancel-safe: bytes are handed to the
    /// framer inside the poll that read them.
    pub async fn fill(&mut self) -> Result<(), Exit> {
        let Conn { io, framer, .. } = self;
        std::future::poll_fn(|cx| {
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(Exit::Io(e))),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Err(Exit::Closed)),
                Poll::Ready(Ok(())) => {
                    framer.feed(buf.filled());
                    Poll::Ready(Ok(()))
                }
            }
        })
        .await
    }

    /// Writes and flushes bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), Exit> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Writes one stanza in the `jabber:client` stream.
    pub async fn send_stanza(&mut self, stanza: &crate::router::stanza::Stanza) -> Result<(), Exit> {
        self.send(&stanza.to_bytes()).await
    }

    /// Writes one element in the `jabber:client` stream.
    pub async fn send_element(&mut self, el: &Element) -> Result<(), Exit> {
        self.send(&el.to_bytes(crate::router::stanza::NS_CLIENT)).await
    }

    /// Sends a stream error, closes the stream and shuts the socket down.
    pub async fn fail(&mut self, error: &StreamError) {
        tracing::debug!(peer = %self.peer, condition = error.condition, "closing stream with error");
        let _ = self.send(&error.to_bytes()).await;
        let _ = self.io.shutdown().await;
    }

    /// Sends the closing tag and shuts the socket down.
    pub async fn close(&mut self) {
        let _ = self.send(b"</stream:stream>").await;
        let _ = self.io.shutdown().await;
    }
}
