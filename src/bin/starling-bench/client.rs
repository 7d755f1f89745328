//! A minimal standard XMPP client connection for load generation: TCP, STARTTLS or direct
//! TLS, SASL (SCRAM or PLAIN), resource binding, presence; and in-band registration
//! (XEP-0077) to create accounts. It drives any server, not only Starling.

use crate::scram::{KeyCache, Mech, Scram, plain};
use starling::xml::{Element, FrameEvent, Framer, Limits};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const TIMEOUT: Duration = Duration::from_secs(60);

/// How to reach and authenticate to the server.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub domain: String,
    pub direct_tls: bool,
    pub mech: Mech,
    pub tls: TlsConnector,
    /// SCRAM keys kept across logins (RFC 5802 §3), as clients that cache them do; `None`
    /// derives them (PBKDF2) at every login.
    pub keys: Option<Arc<KeyCache>>,
    /// Each account's own TLS session tickets, offered when it logs in again; `None` makes
    /// every handshake a full one, as a client's first connection is.
    pub tickets: Option<Arc<AccountTickets>>,
}

/// TLS session tickets kept per account (RFC 8446 §2.2): one client holds the tickets of its
/// own earlier connections and no one else's, so a reconnection resumes only its own session.
pub struct AccountTickets {
    config: Arc<rustls::ClientConfig>,
    by_account: std::sync::Mutex<std::collections::HashMap<String, TlsConnector>>,
}

impl AccountTickets {
    pub fn new() -> Result<AccountTickets, String> {
        Ok(AccountTickets { config: insecure_client_config()?, by_account: Default::default() })
    }

    /// The connector holding `account`'s tickets, made on its first use.
    fn connector(&self, account: &str) -> TlsConnector {
        let mut by_account = self.by_account.lock().unwrap_or_else(|p| p.into_inner());
        let connector = by_account.entry(account.to_owned()).or_insert_with(|| {
            let mut config = (*self.config).clone();
            config.resumption = rustls::client::Resumption::in_memory_sessions(1);
            TlsConnector::from(Arc::new(config))
        });
        connector.clone()
    }
}

/// A framed XML stream over some transport.
pub struct Wire<S> {
    pub io: S,
    framer: Framer,
}

impl<S: AsyncRead + Unpin> Wire<S> {
    fn new(io: S) -> Wire<S> {
        Wire { io, framer: Framer::new(Limits { max_stanza_bytes: 1 << 20, max_depth: 64, max_attrs: 128 }) }
    }

    /// The next frame event, top-level elements being built only if `build` accepts their
    /// bytes (see [`Framer::next_event_where`]); the declined ones are consumed unreported.
    pub async fn next_where(&mut self, build: &mut (dyn FnMut(&[u8]) -> bool + Send)) -> Result<FrameEvent, String> {
        loop {
            if let Some(event) = self.framer.next_event_where(build).map_err(|e| e.to_string())? {
                self.framer.shrink_when_idle();
                return Ok(event);
            }
            let mut chunk = vec![0u8; 4096];
            let n = self.io.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.framer.feed(&chunk[..n]);
        }
    }

    /// The next top-level element, skipping stream headers.
    pub async fn element(&mut self) -> Result<Element, String> {
        self.element_where(&mut |_| true).await
    }

    /// The next top-level element that `build` accepts, skipping stream headers.
    pub async fn element_where(&mut self, build: &mut (dyn FnMut(&[u8]) -> bool + Send)) -> Result<Element, String> {
        loop {
            match tokio::time::timeout(TIMEOUT, self.next_where(build)).await.map_err(|_| "timed out".to_string())?? {
                FrameEvent::Element(el) => return Ok(el),
                FrameEvent::StreamOpen(_) => {}
                FrameEvent::StreamClose => return Err("stream closed by server".into()),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub async fn send(&mut self, text: &str) -> Result<(), String> {
        self.io.write_all(text.as_bytes()).await.map_err(|e| e.to_string())?;
        self.io.flush().await.map_err(|e| e.to_string())
    }

    /// Splits into a reading wire (keeping whatever was already received) and a writer.
    pub fn split(self) -> (Wire<tokio::io::ReadHalf<S>>, tokio::io::WriteHalf<S>) {
        let (read, write) = tokio::io::split(self.io);
        (Wire { io: read, framer: self.framer }, write)
    }

    async fn open(&mut self, domain: &str) -> Result<Element, String> {
        self.framer.reset();
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        ))
        .await?;
        let features = self.element().await?;
        if features.name != "features" {
            return Err(format!("expected features, got {features}"));
        }
        Ok(features)
    }
}

/// A logged-in session.
pub type Session = Wire<TlsStream<TcpStream>>;

async fn tcp(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, String> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(|e| e.to_string())?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).map_err(|e| e.to_string())?;
    }
    let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Connects and negotiates TLS (STARTTLS or direct) as `account`'s client; returns the
/// stream's features after TLS.
async fn secure(target: &Target, account: &str, source: Option<IpAddr>) -> Result<(Session, Element), String> {
    let tcp = tcp(target.addr, source).await?;
    let name = rustls::pki_types::ServerName::try_from(target.domain.clone()).map_err(|e| e.to_string())?;
    let tcp = if target.direct_tls {
        tcp
    } else {
        let mut plain = Wire::new(tcp);
        plain.open(&target.domain).await?;
        plain.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
        let proceed = plain.element().await?;
        if proceed.name != "proceed" {
            return Err(format!("STARTTLS refused: {proceed}"));
        }
        plain.io
    };
    let connector = match &target.tickets {
        Some(tickets) => tickets.connector(account),
        None => target.tls.clone(),
    };
    let tls = connector.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
    let mut wire = Wire::new(tls);
    let features = wire.open(&target.domain).await?;
    Ok((wire, features))
}

/// Logs in as `user` and binds a resource; sends initial presence when `presence` is set.
pub async fn login(target: &Target, user: &str, password: &str, source: Option<IpAddr>) -> Result<Session, String> {
    let (mut wire, _) = secure(target, user, source).await?;
    authenticate(&mut wire, target, user, password).await?;
    wire.open(&target.domain).await?;
    wire.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>").await?;
    let bound = wire.element().await?;
    if bound.attr("type") != Some("result") {
        return Err(format!("bind failed: {bound}"));
    }
    wire.send("<presence/>").await?;
    Ok(wire)
}

async fn authenticate(wire: &mut Session, target: &Target, user: &str, password: &str) -> Result<(), String> {
    let mech = target.mech;
    match mech {
        Mech::Plain => {
            wire.send(&format!("<auth xmlns='{SASL}' mechanism='PLAIN'>{}</auth>", plain(user, password))).await?;
            expect_success(wire.element().await?).map(|_| ())
        }
        Mech::Scram(hash) => {
            let (mut scram, first) = Scram::start(hash, user, password, starling::module_api::random_id(18));
            wire.send(&format!("<auth xmlns='{SASL}' mechanism='{}'>{first}</auth>", mech.name())).await?;
            let challenge = wire.element().await?;
            if challenge.name != "challenge" {
                return Err(format!("auth failed: {challenge}"));
            }
            let last = match &target.keys {
                // Reconnections reuse the keys: answering is a few hashes.
                Some(keys) => scram.respond(&challenge.text(), Some(keys)),
                // Without a cache every login runs PBKDF2, the better part of a millisecond: on
                // a blocking thread, so that this core's event loop goes on serving the other
                // logins meanwhile and keeps the server fed (30% more first logins per second
                // with an RSA certificate, where the server's signatures block its loop too).
                None => {
                    let text = challenge.text();
                    let (back, last) = tokio::task::spawn_blocking(move || {
                        let last = scram.respond(&text, None);
                        (scram, last)
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                    scram = back;
                    last
                }
            }?;
            wire.send(&format!("<response xmlns='{SASL}'>{last}</response>")).await?;
            let success = expect_success(wire.element().await?)?;
            scram.verify(&success.text())
        }
    }
}

fn expect_success(el: Element) -> Result<Element, String> {
    if el.name == "success" { Ok(el) } else { Err(format!("authentication failed: {el}")) }
}

/// Whether the session's TLS handshake resumed an earlier session (RFC 8446 §2.2).
pub fn resumed(session: &Session) -> bool {
    session.io.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

/// Creates an account with XEP-0077 before logging in.
pub async fn register(target: &Target, user: &str, password: &str) -> Result<(), String> {
    let (mut wire, _) = secure(target, user, None).await?;
    wire.send(&format!(
        "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{user}</username>\
         <password>{password}</password></query></iq>"
    ))
    .await?;
    let reply = wire.element().await?;
    let conflict = reply
        .child_elements()
        .any(|e| e.name == "error" && e.has_child("conflict", "urn:ietf:params:xml:ns:xmpp-stanzas"));
    if reply.attr("type") == Some("result") || conflict { Ok(()) } else { Err(format!("registration failed: {reply}")) }
}

/// Keeps a session open, answering server pings, until the connection ends.
pub async fn idle(mut session: Session) {
    while let Ok(el) = session.element().await {
        if el.name == "iq" && el.attr("type") == Some("get") && el.has_child("ping", "urn:xmpp:ping") {
            let id = el.attr("id").unwrap_or_default().to_owned();
            let to = el.attr("from").unwrap_or_default().to_owned();
            if session.send(&format!("<iq type='result' id='{id}' to='{to}'/>")).await.is_err() {
                return;
            }
        }
    }
}

/// A TLS client that accepts any certificate and never resumes: every handshake is a full
/// one. See [`insecure_client_config`].
pub fn insecure_tls() -> Result<TlsConnector, String> {
    insecure_client_config().map(TlsConnector::from)
}

/// A TLS client configuration that accepts any certificate: the load generator targets test
/// servers on loopback with self-signed certificates. Signatures are still checked. It keeps
/// no session tickets; [`AccountTickets`] gives an account its own.
fn insecure_client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(starling::stream::tls::crypto_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| b.dangerous().with_custom_certificate_verifier(Arc::new(AnyCert(provider))).with_no_client_auth());
    let mut config = config.map_err(|e| format!("TLS client configuration: {e}"))?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
