//! TLS between servers (RFC 6120 §5, §13.7.2; XEP-0178 certificates for SASL EXTERNAL).
//!
//! - Outgoing: we present our domain's certificate as the client certificate, so that a peer
//!   that trusts it may let us in with SASL EXTERNAL. With `require_valid_certs`, the peer's
//!   certificate must chain to the system's certificate authorities (the Debian bundle) or to
//!   one of `ca_files` and name the peer domain; without it, any certificate encrypts the
//!   link and dialback (XEP-0220) authenticates the peer.
//! - Incoming: the handshake asks for (does not require) a client certificate and accepts any;
//!   the stream layer then checks it with [`PeerCheck`] against the domain the peer claims,
//!   as a server certificate (the serverAuth usage; many public server certificates no longer
//!   carry clientAuth, so the client-certificate rules would refuse them).

use crate::stream::tls::CertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where Debian (and most Linux systems) keep the trusted authorities.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(crate::stream::tls::crypto_provider())
}

/// The authorities trusted for peers: the system's and `ca_files` (read once, at start-up).
pub fn roots(ca_files: &[PathBuf]) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    if Path::new(SYSTEM_BUNDLE).exists() {
        add_pem(&mut roots, Path::new(SYSTEM_BUNDLE))?;
    }
    for file in ca_files {
        add_pem(&mut roots, file)?;
    }
    Ok(Arc::new(roots))
}

/// The configuration for outgoing TLS from one of our domains (`own`: its certificate).
pub fn client_config(
    require_valid: bool,
    roots: &Arc<RootCertStore>,
    own: Option<Arc<CertifiedKey>>,
) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = if require_valid {
        builder.with_root_certificates(roots.clone())
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    };
    let config = match own {
        Some(own) => builder.with_client_cert_resolver(Arc::new(OwnCertificate(own))),
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The configuration for incoming server streams: our certificates by SNI, and a request for
/// the peer's certificate, checked later by [`PeerCheck`].
pub fn server_config(store: Arc<CertStore>) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = crate::stream::tls::server_provider();
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(Arc::new(AnyCertificate(provider)))
        .with_cert_resolver(store);
    // The cipher suite as for client streams (see `server_provider`).
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// Checks a peer's certificate chain for a domain it claims.
pub struct PeerCheck(Arc<WebPkiServerVerifier>);

impl PeerCheck {
    /// A checker trusting `roots`; `None` when there are none.
    pub fn new(roots: &Arc<RootCertStore>) -> anyhow::Result<Option<PeerCheck>> {
        if roots.is_empty() {
            return Ok(None);
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider()).build()?;
        Ok(Some(PeerCheck(verifier)))
    }

    /// Whether the chain (leaf first) is valid now and names `domain`.
    pub fn names(&self, chain: &[CertificateDer<'_>], domain: &str) -> bool {
        let (Some(leaf), Ok(name)) = (chain.first(), ServerName::try_from(domain)) else { return false };
        self.0.verify_server_cert(leaf, &chain[1..], &name, &[], UnixTime::now()).is_ok()
    }
}

fn add_pem(roots: &mut RootCertStore, path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    roots.add_parsable_certificates(certs);
    Ok(())
}

/// Our domain's certificate, offered whenever a peer asks for one.
#[derive(Debug)]
struct OwnCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for OwnCertificate {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts any certificate but still checks the handshake signatures, so the connection is
/// encrypted to whoever holds the key; who that is, SASL EXTERNAL or dialback establishes.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl AnyCertificate {
    fn tls12(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> SignatureResult {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn tls13(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> SignatureResult {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
}

type SignatureResult = Result<HandshakeSignatureValid, rustls::Error>;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> SignatureResult {
        self.tls12(m, c, d)
    }

    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> SignatureResult {
        self.tls13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for AnyCertificate {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> SignatureResult {
        self.tls12(m, c, d)
    }

    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> SignatureResult {
        self.tls13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
