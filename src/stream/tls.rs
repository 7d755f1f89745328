//! TLS for c2s and s2s: certificates per virtual host, the rustls server configuration, and
//! the channel-binding data SCRAM `-PLUS` needs.
//!
//! # Certificate selection
//!
//! XMPP clients send the service domain as SNI (RFC 6120 §13.7.2.1, RFC 6066 §3). For each
//! handshake [`CertStore`] picks, in order: the certificate configured for exactly that name;
//! a wildcard match for `sub.example.org` (an entry configured as `*.example.org`, or the
//! `example.org` entry when its certificate is valid for the name, as Let's Encrypt wildcard
//! certificates and our self-signed ones are); otherwise the first configured domain. The
//! default matters because clients connecting by IP address send no SNI, and rustls's own
//! SNI resolver would then abort the handshake.
//!
//! # Channel binding (RFC 5056)
//!
//! * `tls-exporter` (RFC 9266): 32 bytes exported with label `EXPORTER-Channel-Binding` and no
//!   context. Only produced on TLS 1.3: on TLS 1.2 it is only safe with extended master secret
//!   (RFC 9266 §3), which rustls does not let us confirm per connection.
//! * `tls-server-end-point` (RFC 5929 §4.1): a hash of the leaf certificate we presented.
//!   Resumed sessions skip certificate selection, so the served leaf is recomputed from the
//!   connection's SNI with the same deterministic rules rather than remembered per handshake.
//! * `tls-unique` is not offered: rustls does not expose the Finished messages.
//!
//! # Crypto provider
//!
//! rustls runs on aws-lc-rs, the only provider compiled in (with two, rustls cannot pick a
//! process-wide default). A full handshake signs with the server's key (RFC 8446 §4.4.3), and
//! RSA-2048 certificates are common: aws-lc signs with the processor's wide-integer
//! instructions where they exist, and a Starling login with a full RSA handshake took a third
//! less server CPU on aws-lc-rs than on ring (BENCHMARKS.md). Its key exchanges are X25519,
//! P-256, P-384 and, last, the X25519MLKEM768 hybrid.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ProtocolVersion, ServerConfig, ServerConnection};
use sha2::Digest as _;

use crate::stream::sasl::ChannelBindings;

/// TLS 1.2 sessions kept in memory for resumption by session ID; bounded so that clients
/// cannot grow it.
const SESSION_CACHE_SIZE: usize = 4096;

/// RFC 9266 §2 exporter label and output length.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
const EXPORTER_LEN: usize = 32;

/// Where a domain's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// A PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate for the domain and `*.domain`, generated on first use into
    /// `dir/<domain>.crt` and `dir/<domain>.key` and reused afterwards, so that clients which
    /// pinned it keep working across restarts.
    SelfSigned { dir: PathBuf },
}

/// Certificate loading failures; each names the domain and, where relevant, the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no TLS domains configured")]
    NoDomains,
    #[error("{domain}: not a valid DNS name for a certificate")]
    InvalidDomain { domain: String },
    #[error("{domain}: configured more than once")]
    DuplicateDomain { domain: String },
    #[error("{domain}: cannot read {path}: {source}")]
    Read { domain: String, path: PathBuf, source: io::Error },
    #[error("{domain}: cannot write {path}: {source}")]
    Write { domain: String, path: PathBuf, source: io::Error },
    #[error("{domain}: {path}: bad PEM: {source}")]
    Pem { domain: String, path: PathBuf, source: pem::Error },
    #[error("{domain}: {path} contains no {what}")]
    Missing { domain: String, path: PathBuf, what: &'static str },
    #[error("{domain}: key {key} unusable with certificate {cert}: {source}")]
    Key { domain: String, cert: PathBuf, key: PathBuf, source: Box<rustls::Error> },
    #[error("{domain}: cannot generate a self-signed certificate: {source}")]
    Generate { domain: String, source: rcgen::Error },
    #[error("{domain}: {cert} exists but its key {key} does not; remove both to regenerate")]
    OrphanCertificate { domain: String, cert: PathBuf, key: PathBuf },
    #[error("cannot build TLS configuration: {0}")]
    Config(Box<rustls::Error>),
}

/// The certificates of all served domains; the rustls certificate resolver.
pub struct CertStore {
    /// Lower-case domain (possibly `*.parent`) to its key and chain.
    by_name: HashMap<String, Arc<CertifiedKey>>,
    /// The first configured domain, for clients without SNI or with an unknown name.
    default: Arc<CertifiedKey>,
    default_name: String,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("CertStore").field("domains", &names).field("default", &self.default_name).finish()
    }
}

impl CertStore {
    /// Loads (or generates) every domain's certificate. The first entry is the default.
    pub fn load(domains: &[(String, CertSource)]) -> Result<CertStore, TlsError> {
        let provider = crypto_provider();
        let mut by_name = HashMap::with_capacity(domains.len());
        let mut default = None;
        for (domain, source) in domains {
            let name = normalize(domain);
            let wildcard = name.strip_prefix("*.");
            if DnsName::try_from(wildcard.unwrap_or(&name)).is_err()
                || (wildcard.is_some() && matches!(source, CertSource::SelfSigned { .. }))
            {
                return Err(TlsError::InvalidDomain { domain: domain.clone() });
            }
            if by_name.contains_key(&name) {
                return Err(TlsError::DuplicateDomain { domain: name });
            }
            let key = Arc::new(match source {
                CertSource::Files { cert, key } => load_files(&name, cert, key, &provider)?,
                CertSource::SelfSigned { dir } => load_self_signed(&name, dir, &provider)?,
            });
            default.get_or_insert_with(|| (name.clone(), key.clone()));
            by_name.insert(name, key);
        }
        let (default_name, default) = default.ok_or(TlsError::NoDomains)?;
        Ok(CertStore { by_name, default, default_name })
    }

    /// The certificate for an SNI name (see the module docs for the order); never fails.
    pub fn resolve_name(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni.map(normalize) else {
            return self.default.clone();
        };
        if let Some(key) = self.by_name.get(&name) {
            return key.clone();
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(key) = self.by_name.get(&format!("*.{parent}")) {
                return key.clone();
            }
            if let Some(key) = self.by_name.get(parent)
                && certificate_covers(key, &name)
            {
                return key.clone();
            }
        }
        self.default.clone()
    }

    /// The leaf certificate that was presented on `conn` (for `tls-server-end-point`).
    pub fn served_leaf(&self, conn: &ServerConnection) -> Option<CertificateDer<'static>> {
        let key = self.resolve_name(conn.server_name());
        key.end_entity_cert().ok().map(|der| der.clone().into_owned())
    }

    /// Every binding this connection can offer to SCRAM `-PLUS`; call after the handshake.
    pub fn channel_bindings(&self, conn: &ServerConnection) -> ChannelBindings {
        if conn.is_handshaking() {
            return ChannelBindings::default();
        }
        ChannelBindings {
            tls_exporter: tls_exporter(conn),
            tls_server_end_point: self.served_leaf(conn).map(|der| tls_server_end_point(&der)),
        }
    }

    /// The configured domain names, wildcards included, in no particular order.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.resolve_name(client_hello.server_name()))
    }
}

/// DNS names compare case-insensitively and may carry a trailing root dot.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a parent domain's certificate is valid for `name` (i.e. has a matching wildcard).
fn certificate_covers(key: &CertifiedKey, name: &str) -> bool {
    let (Ok(leaf), Ok(server_name)) = (key.end_entity_cert(), ServerName::try_from(name)) else {
        return false;
    };
    ParsedCertificate::try_from(leaf).and_then(|cert| rustls::client::verify_server_name(&cert, &server_name)).is_ok()
}

/// The rustls configuration for incoming TLS (direct TLS and STARTTLS alike).
///
/// TLS 1.3 and 1.2 on the aws-lc-rs provider, given explicitly so that no process-wide default
/// provider is needed; no client certificates (s2s authenticates with its own verifier);
/// no ALPN, since XMPP on 5222/5223 does not negotiate one. The server chooses the cipher
/// suite (see [`server_provider`]). Sessions resume from `tickets` (see [`TicketKeys`]).
pub fn server_config(store: Arc<CertStore>, tickets: Arc<TicketKeys>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(server_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(Box::new(e)))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    // Mobile clients reconnect often; resumption saves a full handshake. TLS 1.3 tickets and
    // TLS 1.2 tickets (RFC 5077) carry the session themselves, sealed with keys every node
    // shares. TLS 1.2 sessions are also kept under their session ID in this bounded store of
    // this node, for clients that resume by ID (RFC 5246 §7.4.1.2).
    config.ticketer = tickets;
    config.session_storage = Arc::new(SessionStore::new(SESSION_CACHE_SIZE));
    // One TLS 1.3 ticket per handshake (rustls sends two by default). An XMPP client holds one
    // connection at a time, and every handshake, resumed ones too, hands it a fresh ticket
    // (RFC 8446 §4.6.1), so a second ticket would only cost a seal and bytes on the wire.
    config.send_tls13_tickets = 1;
    config.alpn_protocols = Vec::new();
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// The crypto provider of every TLS connection of ours, as server or client (c2s, s2s, the
/// load generator, tests): aws-lc-rs, chosen in this one place (the module docs say why).
pub fn crypto_provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// The provider for servers ([`crypto_provider`]), its cipher suites in the order in which
/// the server picks one the client offers (with `ignore_client_order`): AES-128-GCM first,
/// then ChaCha20-Poly1305, then AES-256-GCM, within each TLS version as given.
///
/// Most clients list AES-256-GCM with SHA-384 first. Its key schedule hashes with SHA-512,
/// which has no instructions of its own on common x86 processors, while SHA-256 does (SHA-NI):
/// measured, SHA-512 was 6% of the server's CPU per login, and AES-256 takes 14 rounds per block
/// where AES-128 takes 10. AES-128-GCM is the suite every TLS 1.3 peer must implement
/// (RFC 8446 §9.1), at the 128-bit security level of the X25519 and P-256 key exchanges.
pub fn server_provider() -> Arc<CryptoProvider> {
    use rustls::CipherSuite as Suite;
    let mut provider = crypto_provider();
    provider.cipher_suites.sort_by_key(|suite| match suite.suite() {
        Suite::TLS13_AES_128_GCM_SHA256
        | Suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | Suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        Suite::TLS13_CHACHA20_POLY1305_SHA256
        | Suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | Suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => 1,
        _ => 2,
    });
    Arc::new(provider)
}

/// RFC 9266 `tls-exporter` data, or `None` before the handshake ends or below TLS 1.3.
pub fn tls_exporter(conn: &ServerConnection) -> Option<Vec<u8>> {
    if conn.is_handshaking() || conn.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
        return None;
    }
    conn.export_keying_material(vec![0; EXPORTER_LEN], EXPORTER_LABEL, None).ok()
}

/// RFC 5929 §4.1 `tls-server-end-point` data for a leaf certificate.
///
/// The hash is the one of the certificate's signature algorithm, except that MD5 and SHA-1
/// are replaced by SHA-256. Algorithms without a single hash (Ed25519) or that cannot be
/// parsed also use SHA-256, which is what common client libraries assume.
pub fn tls_server_end_point(cert_der: &[u8]) -> Vec<u8> {
    match der::signature_hash(cert_der) {
        Some(der::Hash::Sha384) => sha2::Sha384::digest(cert_der).to_vec(),
        Some(der::Hash::Sha512) => sha2::Sha512::digest(cert_der).to_vec(),
        None => sha2::Sha256::digest(cert_der).to_vec(),
    }
}

/// Reads the certificate chain and key of a `Files` source.
fn load_files(
    domain: &str,
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| TlsError::Read { domain: domain.to_owned(), path: path.to_owned(), source })
    };
    let bad_pem = |path: &Path, source| TlsError::Pem { domain: domain.to_owned(), path: path.to_owned(), source };
    let missing = |path: &Path, what| TlsError::Missing { domain: domain.to_owned(), path: path.to_owned(), what };
    let chain = CertificateDer::pem_slice_iter(&read(cert_path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(cert_path, e))?;
    if chain.is_empty() {
        return Err(missing(cert_path, "CERTIFICATE section"));
    }
    let key = match PrivateKeyDer::from_pem_slice(&read(key_path)?) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => return Err(missing(key_path, "private key section")),
        Err(e) => return Err(bad_pem(key_path, e)),
    };
    // from_der also checks that the key belongs to the leaf certificate.
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
        domain: domain.to_owned(),
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source: Box::new(source),
    })
}

/// Loads `dir/<domain>.{crt,key}`, generating them first if the certificate does not exist.
fn load_self_signed(domain: &str, dir: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert = dir.join(format!("{domain}.crt"));
    let key = dir.join(format!("{domain}.key"));
    match (cert.exists(), key.exists()) {
        (true, true) => {}
        (true, false) => {
            return Err(TlsError::OrphanCertificate { domain: domain.to_owned(), cert, key });
        }
        // A key without a certificate is left over from an interrupted generation (the key
        // is written first), so it is safe to replace.
        (false, _) => generate_self_signed(domain, &cert, &key)?,
    }
    load_files(domain, &cert, &key, provider)
}

fn generate_self_signed(domain: &str, cert: &Path, key: &Path) -> Result<(), TlsError> {
    let names = vec![domain.to_owned(), format!("*.{domain}")];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|source| TlsError::Generate { domain: domain.to_owned(), source })?;
    tracing::info!(%domain, cert = %cert.display(), "generated a self-signed certificate");
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Write { domain: domain.to_owned(), path, source }
    };
    if let Some(dir) = cert.parent() {
        fs::create_dir_all(dir).map_err(write_error(dir))?;
    }
    write_atomically(key, generated.signing_key.serialize_pem().as_bytes(), true).map_err(write_error(key))?;
    write_atomically(cert, generated.cert.pem().as_bytes(), false).map_err(write_error(cert))
}

/// Writes through a temporary file and a rename, so a crash never leaves a truncated file.
fn write_atomically(path: &Path, contents: &[u8], private: bool) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Created 0600 from the start: the key is never readable by others, not even briefly.
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

mod der;
mod sessions;
mod tickets;

pub use sessions::SessionStore;
pub use tickets::TicketKeys;

#[cfg(test)]
mod tests;
