//! A small XMPP test client: direct TLS (XEP-0368), SASL PLAIN, resource binding, then raw
//! stanzas in and parsed [`Element`]s out.
//!
//! It knows nothing about the conformance runner, so other test targets can include it with
//! `#[path = "../conformance/client.rs"] mod client;`. The server's certificate is not checked:
//! this is for tests against a local in-process server only.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use starling::xml::{Element, FrameEvent, Framer, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long [`Client::recv`] waits for the next element.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";

/// A connected, authenticated client with a bound resource.
pub struct Client {
    io: TlsStream<TcpStream>,
    framer: Framer,
    /// The bound full JID.
    pub jid: String,
    closed: bool,
    /// Bytes of XML received so far (after TLS).
    pub received_bytes: usize,
}

/// Something other than an element arrived.
#[derive(Debug)]
pub enum Received {
    /// A complete top-level element.
    Element(Element),
    /// The server sent `</stream:stream>` or closed the connection.
    Closed,
}

impl Client {
    /// Connects with direct TLS to `addr`, authenticates `user@domain` with PLAIN and binds
    /// `resource`.
    pub async fn connect(
        addr: SocketAddr,
        domain: &str,
        user: &str,
        password: &str,
        resource: &str,
    ) -> anyhow::Result<Client> {
        let mut client = Client::connect_authenticated(addr, domain, user, password).await?;
        client.bind(resource).await?;
        Ok(client)
    }

    /// Connects with direct TLS, authenticates with PLAIN and restarts the stream, without
    /// binding a resource (for stream resumption, XEP-0198 §5).
    pub async fn connect_authenticated(
        addr: SocketAddr,
        domain: &str,
        user: &str,
        password: &str,
    ) -> anyhow::Result<Client> {
        let tcp = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        let provider = Arc::new(starling::stream::tls::crypto_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        let name = ServerName::try_from(domain.to_owned())?;
        let io = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.context("TLS handshake")?;
        let mut client =
            Client { io, framer: Framer::new(Limits::default()), jid: String::new(), closed: false, received_bytes: 0 };

        let features = client.open_stream(domain).await?;
        let offers_plain = features
            .get_child("mechanisms", NS_SASL)
            .is_some_and(|m| m.child_elements().any(|c| c.text().trim() == "PLAIN"));
        if !offers_plain {
            bail!("PLAIN not offered: {features}");
        }
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        client.send_raw(&format!("<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{credentials}</auth>")).await?;
        let outcome = client.recv().await?;
        if !outcome.is("success", NS_SASL) {
            bail!("authentication of {user}@{domain} failed: {outcome}");
        }
        client.framer.reset();
        client.open_stream(domain).await?;
        Ok(client)
    }

    /// Binds `resource` (RFC 6120 §7).
    pub async fn bind(&mut self, resource: &str) -> anyhow::Result<()> {
        self.send_raw(&format!(
            "<iq type='set' id='bind-1'><bind xmlns='{NS_BIND}'><resource>{}</resource></bind></iq>",
            escape(resource)
        ))
        .await?;
        let bound = self.recv().await?;
        let jid = bound.get_child("bind", NS_BIND).and_then(|b| b.get_child("jid", NS_BIND)).map(Element::text);
        match (bound.attr("type"), jid) {
            (Some("result"), Some(jid)) => self.jid = jid,
            _ => bail!("binding failed: {bound}"),
        }
        Ok(())
    }

    /// Sends the stream header and returns the features that follow the server's header.
    async fn open_stream(&mut self, domain: &str) -> anyhow::Result<Element> {
        self.send_raw(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        ))
        .await?;
        match self.next_event(RECV_TIMEOUT).await? {
            Some(FrameEvent::StreamOpen(_)) => {}
            other => bail!("expected a stream header, got {other:?}"),
        }
        self.recv().await
    }

    /// Writes `xml` as it is.
    pub async fn send_raw(&mut self, xml: &str) -> anyhow::Result<()> {
        self.io.write_all(xml.as_bytes()).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Sends one element, serialised in the `jabber:client` default namespace.
    pub async fn send(&mut self, el: &Element) -> anyhow::Result<()> {
        let bytes = el.to_bytes("jabber:client");
        self.io.write_all(&bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// The next top-level element, waiting up to [`RECV_TIMEOUT`]. The end of the stream is an error.
    pub async fn recv(&mut self) -> anyhow::Result<Element> {
        match self.recv_within(RECV_TIMEOUT).await? {
            Some(Received::Element(el)) => Ok(el),
            Some(Received::Closed) => Err(anyhow!("the server closed the stream")),
            None => Err(anyhow!("nothing received within {RECV_TIMEOUT:?}")),
        }
    }

    /// The bodies of the next `n` messages that carry one, skipping everything else.
    pub async fn message_bodies(&mut self, n: usize) -> anyhow::Result<Vec<String>> {
        let mut bodies = Vec::with_capacity(n);
        while bodies.len() < n {
            let el = self.recv_named("message").await?;
            if let Some(body) = el.get_child("body", "jabber:client") {
                bodies.push(body.text());
            }
        }
        Ok(bodies)
    }

    /// The next top-level element named `name`, skipping others (presence echoes, pushes).
    pub async fn recv_named(&mut self, name: &str) -> anyhow::Result<Element> {
        loop {
            let el = self.recv().await?;
            if el.name == name {
                return Ok(el);
            }
        }
    }

    /// The next element or the end of the stream, or `None` when `wait` passes first.
    pub async fn recv_within(&mut self, wait: Duration) -> anyhow::Result<Option<Received>> {
        match self.next_event(wait).await? {
            Some(FrameEvent::Element(el)) => Ok(Some(Received::Element(el))),
            Some(FrameEvent::StreamClose) => Ok(Some(Received::Closed)),
            Some(FrameEvent::StreamOpen(_)) => bail!("unexpected stream header"),
            None if self.closed => Ok(Some(Received::Closed)),
            None => Ok(None),
        }
    }

    /// Succeeds when nothing arrives for `quiet`; otherwise returns what did arrive as an error.
    pub async fn expect_nothing(&mut self, quiet: Duration) -> anyhow::Result<()> {
        match self.recv_within(quiet).await? {
            None => Ok(()),
            Some(Received::Element(el)) => Err(anyhow!("expected nothing, received {el}")),
            Some(Received::Closed) => Err(anyhow!("expected nothing, the stream was closed")),
        }
    }

    async fn next_event(&mut self, wait: Duration) -> anyhow::Result<Option<FrameEvent>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut buf = [0u8; 8192];
        loop {
            if let Some(event) = self.framer.next_event().map_err(|e| anyhow!("server sent bad XML: {e}"))? {
                return Ok(Some(event));
            }
            if self.closed {
                return Ok(None);
            }
            match tokio::time::timeout_at(deadline, self.io.read(&mut buf)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => self.closed = true,
                Ok(Ok(n)) => {
                    self.received_bytes += n;
                    self.framer.feed(&buf[..n]);
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => self.closed = true,
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Closes the stream and waits briefly for the server to close its side.
    pub async fn close(mut self) -> anyhow::Result<()> {
        if !self.closed {
            self.send_raw("</stream:stream>").await?;
            let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
            while !self.closed && tokio::time::Instant::now() < deadline {
                if let Some(Received::Closed) = self.recv_within(Duration::from_millis(500)).await? {
                    break;
                }
            }
        }
        let _ = self.io.shutdown().await;
        Ok(())
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;")
}

/// Accepts any certificate while still checking handshake signatures.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
