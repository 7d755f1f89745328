//! Real handshakes over an in-memory duplex pipe with a rustls client.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore};
use sha2::Digest as _;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use super::*;

fn self_signed(dir: &Path, domains: &[&str]) -> Vec<(String, CertSource)> {
    let source = CertSource::SelfSigned { dir: dir.to_owned() };
    domains.iter().map(|d| (d.to_string(), source.clone())).collect()
}

fn leaf(store: &CertStore, name: &str) -> CertificateDer<'static> {
    store.resolve_name(Some(name)).end_entity_cert().unwrap().clone().into_owned()
}

fn client_config(trusted: &[CertificateDer<'static>], tls12: bool, sni: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.clone()).unwrap();
    }
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls12 { &[&rustls::version::TLS12] } else { &[&rustls::version::TLS13] };
    let mut config = ClientConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.enable_sni = sni;
    Arc::new(config)
}

type ServerStream = server::TlsStream<tokio::io::DuplexStream>;
type ClientStream = client::TlsStream<tokio::io::DuplexStream>;

/// Handshakes a client that verifies the certificate against `name`.
async fn handshake(
    server: &Arc<rustls::ServerConfig>,
    client: &Arc<ClientConfig>,
    name: &str,
) -> (ServerStream, ClientStream) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server.clone());
    let connector = TlsConnector::from(client.clone());
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let (s, c) = tokio::join!(acceptor.accept(server_io), connector.connect(server_name, client_io));
    (s.unwrap(), c.unwrap())
}

/// Handshakes, then exchanges a byte, which lets the client take in the TLS 1.3 session
/// ticket the server sends after the handshake.
async fn handshake_and_take_ticket(
    server: &Arc<rustls::ServerConfig>,
    client: &Arc<ClientConfig>,
    name: &str,
) -> (ServerStream, ClientStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut s, mut c) = handshake(server, client, name).await;
    s.write_all(b"x").await.unwrap();
    s.flush().await.unwrap();
    c.read_exact(&mut [0u8; 1]).await.unwrap();
    (s, c)
}

fn peer_leaf(c: &client::TlsStream<tokio::io::DuplexStream>) -> CertificateDer<'static> {
    c.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test]
async fn sni_exact_wildcard_and_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CertStore::load(&self_signed(dir.path(), &["example.org", "example.net"])).unwrap());
    let org = leaf(&store, "example.org");
    let net = leaf(&store, "example.net");
    assert_ne!(org, net);
    let trusted = [org.clone(), net.clone()];
    let cases = [
        ("example.net", true, &net),
        ("example.org", true, &org),
        ("conference.example.net", true, &net),
        // No SNI: the first domain, whatever name the client has in mind.
        ("example.org", false, &org),
        ("muc.example.org", false, &org),
    ];
    let config = server_config(store.clone(), TicketKeys::in_process()).unwrap();
    for (name, sni, expected) in cases {
        let (s, c) = handshake(&config, &client_config(&trusted, false, sni), name).await;
        assert_eq!(&peer_leaf(&c), expected, "{name} sni={sni}");
        let conn = s.get_ref().1;
        assert_eq!(store.served_leaf(conn).as_ref(), Some(expected), "{name} sni={sni}");
    }
}

#[test]
fn resolve_name_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut domains = self_signed(dir.path(), &["example.org", "example.net"]);
    // A separately configured wildcard, written as files.
    let wild = rcgen::generate_simple_self_signed(vec!["*.example.com".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("wild.crt"), dir.path().join("wild.key"));
    std::fs::write(&cert, wild.cert.pem()).unwrap();
    std::fs::write(&key, wild.signing_key.serialize_pem()).unwrap();
    domains.push(("*.Example.com".into(), CertSource::Files { cert, key }));
    let store = CertStore::load(&domains).unwrap();
    let org = leaf(&store, "example.org");
    let net = leaf(&store, "example.net");
    let com = wild.cert.der().clone();
    let table: [(Option<&str>, &CertificateDer); 9] = [
        (None, &org),
        (Some("example.net"), &net),
        (Some("EXAMPLE.NET."), &net),
        (Some("upload.example.net"), &net),
        (Some("a.b.example.net"), &org), // wildcards cover one label only
        (Some("muc.example.com"), &com),
        (Some("example.com"), &org),
        (Some("unknown.test"), &org),
        (Some("net"), &org),
    ];
    for (sni, expected) in table {
        let got = store.resolve_name(sni);
        assert_eq!(got.end_entity_cert().unwrap(), expected, "{sni:?}");
    }
    let mut names: Vec<&str> = store.domains().collect();
    names.sort_unstable();
    assert_eq!(names, ["*.example.com", "example.net", "example.org"]);
}

#[tokio::test]
async fn channel_bindings_match_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CertStore::load(&self_signed(dir.path(), &["localhost"])).unwrap());
    let trusted = [leaf(&store, "localhost")];

    let config = server_config(store.clone(), TicketKeys::in_process()).unwrap();
    let (s, c) = handshake(&config, &client_config(&trusted, false, true), "localhost").await;
    let (conn, client) = (s.get_ref().1, c.get_ref().1);
    assert_eq!(conn.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    let bindings = store.channel_bindings(conn);
    let client_ekm = client.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None).unwrap();
    assert_eq!(bindings.tls_exporter.as_deref(), Some(&client_ekm[..]));
    let expected_end_point = sha2::Sha256::digest(peer_leaf(&c).as_ref()).to_vec();
    assert_eq!(bindings.tls_server_end_point, Some(expected_end_point.clone()));

    // TLS 1.2: no tls-exporter (RFC 9266 needs extended master secret), end-point still works.
    let (s, _c) = handshake(&config, &client_config(&trusted, true, true), "localhost").await;
    let conn = s.get_ref().1;
    assert_eq!(conn.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(tls_exporter(conn), None);
    let bindings = store.channel_bindings(conn);
    assert_eq!(bindings.tls_exporter, None);
    assert_eq!(bindings.tls_server_end_point, Some(expected_end_point));
}

#[tokio::test]
async fn resumption_keeps_the_served_certificate() {
    use rustls::HandshakeKind;

    let dir = tempfile::tempdir().unwrap();
    let domains = self_signed(dir.path(), &["example.org", "example.net"]);
    let store = Arc::new(CertStore::load(&domains).unwrap());
    let net = leaf(&store, "example.net");
    let config = server_config(store.clone(), TicketKeys::in_process()).unwrap();
    for tls12 in [false, true] {
        let client = client_config(std::slice::from_ref(&net), tls12, true);
        let mut kinds = Vec::new();
        // Three in a row: each handshake, resumed ones too, leaves the client a fresh ticket.
        for _ in 0..3 {
            let (s, _c) = handshake_and_take_ticket(&config, &client, "example.net").await;
            let conn = s.get_ref().1;
            kinds.push(conn.handshake_kind());
            assert_eq!(store.served_leaf(conn).as_ref(), Some(&net), "tls12={tls12}");
            let end_point = store.channel_bindings(conn).tls_server_end_point;
            assert_eq!(end_point, Some(sha2::Sha256::digest(&net).to_vec()));
        }
        let expected = [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed), Some(HandshakeKind::Resumed)];
        assert_eq!(kinds, expected, "tls12={tls12}");
    }
}

/// Another node, or this one after a restart: its own certificate store and TLS
/// configuration, the ticket keys read from the same database.
#[tokio::test]
async fn tickets_resume_on_another_node_of_the_same_database() {
    use rustls::HandshakeKind;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("shared.db").display());
    let domains = self_signed(dir.path(), &["example.org"]);
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let storage = crate::storage::Storage::open(&url).await.unwrap();
        let tickets = TicketKeys::from_storage(&storage).await.unwrap();
        let store = Arc::new(CertStore::load(&domains).unwrap());
        nodes.push((server_config(store, tickets).unwrap(), storage));
    }
    let trusted = [leaf(&CertStore::load(&domains).unwrap(), "example.org")];
    for tls12 in [false, true] {
        let client = client_config(&trusted, tls12, true);
        let mut kinds = Vec::new();
        for (config, _) in [&nodes[0], &nodes[1], &nodes[0]] {
            let (s, _c) = handshake_and_take_ticket(config, &client, "example.org").await;
            kinds.push(s.get_ref().1.handshake_kind());
        }
        let expected = [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed), Some(HandshakeKind::Resumed)];
        assert_eq!(kinds, expected, "tls12={tls12}");
    }
}

#[test]
fn self_signed_files_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let domains = self_signed(&certs, &["example.org"]);
    let first = CertStore::load(&domains).unwrap();
    let cert_path = certs.join("example.org.crt");
    let key_path = certs.join("example.org.key");
    let (cert_bytes, key_bytes) = (std::fs::read(&cert_path).unwrap(), std::fs::read(&key_path).unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let second = CertStore::load(&domains).unwrap();
    assert_eq!(std::fs::read(&cert_path).unwrap(), cert_bytes);
    assert_eq!(std::fs::read(&key_path).unwrap(), key_bytes);
    assert_eq!(leaf(&first, "example.org"), leaf(&second, "example.org"));

    // A certificate whose key vanished is an operator problem, not something to paper over.
    std::fs::remove_file(&key_path).unwrap();
    let err = CertStore::load(&domains).unwrap_err();
    assert!(matches!(err, TlsError::OrphanCertificate { .. }), "{err}");
    // A key without a certificate is a half-finished generation and gets replaced.
    std::fs::write(&key_path, b"junk").unwrap();
    std::fs::remove_file(&cert_path).unwrap();
    CertStore::load(&domains).unwrap();
}

#[test]
fn bad_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let a = rcgen::generate_simple_self_signed(vec!["example.org".to_owned()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["example.org".to_owned()]).unwrap();
    std::fs::write(p("a.crt"), a.cert.pem()).unwrap();
    std::fs::write(p("b.key"), b.signing_key.serialize_pem()).unwrap();
    std::fs::write(p("junk.pem"), "not a PEM file\n").unwrap();
    std::fs::write(p("broken.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
    let files =
        |cert: &str, key: &str| vec![("example.org".to_owned(), CertSource::Files { cert: p(cert), key: p(key) })];
    let table = [
        (files("missing.crt", "b.key"), "cannot read", "missing.crt"),
        (files("a.crt", "missing.key"), "cannot read", "missing.key"),
        (files("junk.pem", "b.key"), "no CERTIFICATE", "junk.pem"),
        (files("broken.pem", "b.key"), "bad PEM", "broken.pem"),
        (files("a.crt", "junk.pem"), "no private key", "junk.pem"),
        (files("a.crt", "b.key"), "unusable", "b.key"),
    ];
    for (domains, what, file) in table {
        let message = CertStore::load(&domains).unwrap_err().to_string();
        assert!(message.starts_with("example.org: "), "{message}");
        assert!(message.contains(what) && message.contains(file), "{message}");
    }
    let source = CertSource::SelfSigned { dir: p("x") };
    let load = |names: &[&str]| {
        let domains: Vec<_> = names.iter().map(|n| (n.to_string(), source.clone())).collect();
        CertStore::load(&domains).unwrap_err()
    };
    assert!(matches!(load(&[]), TlsError::NoDomains));
    assert!(matches!(load(&["../etc"]), TlsError::InvalidDomain { .. }));
    assert!(matches!(load(&["*.example.org"]), TlsError::InvalidDomain { .. }));
    assert!(matches!(load(&["a.test", "A.test"]), TlsError::DuplicateDomain { .. }));
}

#[test]
fn end_point_hash_follows_signature_algorithm() {
    let make = |alg: &'static rcgen::SignatureAlgorithm| {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["example.org".to_owned()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    };
    let p256 = make(&rcgen::PKCS_ECDSA_P256_SHA256);
    let p384 = make(&rcgen::PKCS_ECDSA_P384_SHA384);
    let ed25519 = make(&rcgen::PKCS_ED25519);
    assert_eq!(tls_server_end_point(&p256), sha2::Sha256::digest(&p256).to_vec());
    assert_eq!(tls_server_end_point(&p384), sha2::Sha384::digest(&p384).to_vec());
    assert_eq!(tls_server_end_point(&ed25519), sha2::Sha256::digest(&ed25519).to_vec());
    // Truncated or garbage input must not panic.
    for len in 0..p384.len() {
        let _ = tls_server_end_point(&p384[..len]);
    }
    assert_eq!(tls_server_end_point(b"\x30\x84\xff\xff\xff\xff").len(), 32);
}

#[test]
fn der_reads_pss_parameters() {
    // AlgorithmIdentifier for RSASSA-PSS with SHA-512, as in RFC 4055 §3.1.
    let mut alg = vec![0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    let hash = [0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    let explicit = [&[0xa0, hash.len() as u8][..], &hash].concat();
    alg.extend([&[0x30, explicit.len() as u8][..], &explicit].concat());
    let wrap = |tag: u8, body: &[u8]| [&[tag, body.len() as u8][..], body].concat();
    let cert = wrap(0x30, &[wrap(0x30, b"tbs"), wrap(0x30, &alg), vec![0x03, 0x01, 0x00]].concat());
    assert_eq!(der::signature_hash(&cert), Some(der::Hash::Sha512));
}

/// The server picks AES-128-GCM although the client (rustls, like most clients) lists
/// AES-256-GCM first; a client that offers only AES-256-GCM still gets it.
#[tokio::test]
async fn server_prefers_aes_128_gcm() {
    use rustls::CipherSuite as Suite;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CertStore::load(&self_signed(dir.path(), &["localhost"])).unwrap());
    let trusted = [leaf(&store, "localhost")];
    let config = server_config(store, TicketKeys::in_process()).unwrap();
    for (tls12, expected) in
        [(false, Suite::TLS13_AES_128_GCM_SHA256), (true, Suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)]
    {
        let client = client_config(&trusted, tls12, true);
        assert_ne!(client.crypto_provider().cipher_suites[0].suite(), expected, "the client prefers another");
        let (s, _c) = handshake(&config, &client, "localhost").await;
        assert_eq!(s.get_ref().1.negotiated_cipher_suite().map(|suite| suite.suite()), Some(expected));
    }
    let mut roots = RootCertStore::empty();
    roots.add(trusted[0].clone()).unwrap();
    let mut provider = crypto_provider();
    provider.cipher_suites.retain(|suite| suite.suite() == Suite::TLS13_AES_256_GCM_SHA384);
    let only_aes_256 = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (s, _c) = handshake(&config, &Arc::new(only_aes_256), "localhost").await;
    assert_eq!(
        s.get_ref().1.negotiated_cipher_suite().map(|suite| suite.suite()),
        Some(Suite::TLS13_AES_256_GCM_SHA384)
    );
}
