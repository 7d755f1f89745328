//! Two Starling servers federate (RFC 6120 server streams, XEP-0220 dialback over TLS with
//! self-signed certificates): each with its own domain and database, static routes to each
//! other. Shown: messages both ways in order, presence subscription both ways, IQs across
//! (disco#info, ping, vCard);
//! a peer that is down bounces with `remote-server-not-found`; messages to a peer that
//! restarts are each delivered or bounced, none lost; a peer that sends a stanza from a domain
//! it did not authenticate loses its stream with `invalid-from`; a peer that stalls in the TLS
//! handshake is dropped after the timeout. With certificates from a common authority the
//! servers authenticate with SASL EXTERNAL (XEP-0178) instead of dialback, and a server that
//! requires valid certificates refuses a peer without one. Without a route, SRV records
//! (from a DNS server of the test's) lead to the peer, direct TLS first (XEP-0368). A server
//! with two domains reaches a peer over one stream, both domains accepted on it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/ca.rs"]
mod ca;
#[path = "../conformance/client.rs"]
mod client;

use ca::TestCa;
use client::Client;
use starling::config::Config;
use starling::server::{Running, Server, serve};
use std::sync::Arc;
use std::time::Duration;

struct Node {
    running: Running,
    server: Arc<Server>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn node(domain: &str, s2s_port: u16, routes: &[(&str, u16)]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let routes: String = routes.iter().map(|(d, p)| format!("\"{d}\" = \"127.0.0.1:{p}\"\n")).collect();
    let toml = format!(
        "[server]\ndomains = [\"{domain}\"]\ndata_dir = {:?}\n[storage]\nurl = \"sqlite::memory:\"\n\
         [c2s]\nlisten = []\ndirect_tls_listen = [\"127.0.0.1:0\"]\nscram_iterations = 4096\n[http]\nlisten = []\n\
         [s2s]\nlisten = [\"127.0.0.1:{s2s_port}\"]\nrequire_valid_certs = false\nconnect_timeout = \"3s\"\n\
         [s2s.routes]\n{routes}",
        dir.path().display().to_string()
    );
    let config = Config::parse(&toml, &starling::modules::config_checks()).unwrap();
    let server = Server::build(config).await.unwrap();
    let running = serve(server.clone()).await.unwrap();
    Node { running, server, _dir: dir }
}

impl Node {
    async fn user(&self, user: &str) -> Client {
        let domain = self.server.default_domain().to_owned();
        let jid = jid::BareJid::new(&format!("{user}@{domain}")).unwrap();
        self.server.accounts.create(&jid, "pw").await.unwrap();
        let mut client = Client::connect(self.running.c2s_direct_tls[0], &domain, user, "pw", "r").await.unwrap();
        client.send_raw("<presence/>").await.unwrap();
        client.recv_named("presence").await.unwrap();
        client
    }
}

async fn pair() -> (Node, Node) {
    let (port_a, port_b) = (free_port(), free_port());
    let a = node("a.test", port_a, &[("b.test", port_b)]).await;
    let b = node("b.test", port_b, &[("a.test", port_a)]).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_exchange_messages_presence_and_iqs() {
    let (a, b) = pair().await;
    let mut alice = a.user("alice").await;
    let mut bob = b.user("bob").await;

    for n in 0..500 {
        alice.send_raw(&format!("<message type='chat' to='bob@b.test'><body>a{n}</body></message>")).await.unwrap();
        bob.send_raw(&format!("<message type='chat' to='alice@a.test'><body>b{n}</body></message>")).await.unwrap();
    }
    let to_bob = bob.message_bodies(500).await.unwrap();
    let to_alice = alice.message_bodies(500).await.unwrap();
    assert_eq!(to_bob, (0..500).map(|n| format!("a{n}")).collect::<Vec<_>>());
    assert_eq!(to_alice, (0..500).map(|n| format!("b{n}")).collect::<Vec<_>>());

    // Subscription both ways (RFC 6121 §3.1), then presence flows across.
    alice.send_raw("<presence type='subscribe' to='bob@b.test'/>").await.unwrap();
    let request = bob.recv_named("presence").await.unwrap();
    assert_eq!((request.attr("type"), request.attr("from")), (Some("subscribe"), Some("alice@a.test")));
    bob.send_raw("<presence type='subscribed' to='alice@a.test'/>").await.unwrap();
    bob.send_raw("<presence type='subscribe' to='alice@a.test'/>").await.unwrap();
    let mut alice_saw_bob = false;
    let mut alice_got_request = false;
    while !(alice_saw_bob && alice_got_request) {
        let el = alice.recv().await.unwrap();
        if el.name == "presence" && el.attr("from") == Some("bob@b.test/r") && el.attr("type").is_none() {
            alice_saw_bob = true;
        }
        if el.name == "presence" && el.attr("type") == Some("subscribe") {
            alice_got_request = true;
        }
    }
    alice.send_raw("<presence type='subscribed' to='bob@b.test'/>").await.unwrap();
    loop {
        let el = bob.recv().await.unwrap();
        if el.name == "presence" && el.attr("from") == Some("alice@a.test/r") && el.attr("type").is_none() {
            break;
        }
    }

    // An IQ to the other domain and its answer (XEP-0030 disco#info).
    alice
        .send_raw("<iq type='get' id='info' to='b.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await
        .unwrap();
    let info = alice.recv_named("iq").await.unwrap();
    assert_eq!((info.attr("type"), info.attr("from")), (Some("result"), Some("b.test")), "{info}");
    assert!(info.to_string().contains("category='server'"), "{info}");

    // A ping of the other server (XEP-0199) and a vCard of a user there (XEP-0054).
    bob.send_raw("<iq type='set' id='card'><vCard xmlns='vcard-temp'><FN>Bob</FN></vCard></iq>").await.unwrap();
    bob.recv_named("iq").await.unwrap();
    alice.send_raw("<iq type='get' id='ping' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>").await.unwrap();
    let pong = alice.recv_named("iq").await.unwrap();
    assert_eq!((pong.attr("type"), pong.attr("id")), (Some("result"), Some("ping")), "{pong}");
    alice.send_raw("<iq type='get' id='vc' to='bob@b.test'><vCard xmlns='vcard-temp'/></iq>").await.unwrap();
    let card = alice.recv_named("iq").await.unwrap();
    assert_eq!((card.attr("type"), card.attr("from")), (Some("result"), Some("bob@b.test")), "{card}");
    assert!(card.to_string().contains("<FN>Bob</FN>"), "{card}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_down_makes_messages_bounce() {
    let dead = free_port();
    let a = node("a.test", free_port(), &[("down.test", dead)]).await;
    let mut alice = a.user("alice").await;
    alice.send_raw("<message type='chat' id='m1' to='carol@down.test'><body>hello?</body></message>").await.unwrap();
    let bounce = tokio::time::timeout(Duration::from_secs(5), alice.recv_named("message")).await.unwrap().unwrap();
    assert_eq!((bounce.attr("type"), bounce.attr("id")), (Some("error"), Some("m1")), "{bounce}");
    assert!(bounce.to_string().contains("remote-server-not-found"), "{bounce}");
}

type PeerConn = starling::c2s::connection::Conn<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A hand-driven peer of `addr` claiming to be a.test: the stream secured with STARTTLS;
/// returns it with the stream id the server gave, right after the features.
async fn raw_peer(addr: std::net::SocketAddr) -> (PeerConn, String) {
    use starling::c2s::connection::Conn;
    use starling::xml::{FrameEvent, Limits};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut conn = Conn::new(tcp, addr, Limits::default()).server_stream();
    let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
                  xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
                  from='a.test' to='b.test' version='1.0'>";
    conn.send(header.as_bytes()).await.unwrap();
    assert!(matches!(conn.next().await.unwrap(), FrameEvent::StreamOpen(_)));
    let _features = conn.next().await.unwrap();
    conn.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await.unwrap();
    let _proceed = conn.next().await.unwrap();
    let tls_config = starling::s2s::tls::client_config(false, &starling::s2s::tls::roots(&[]).unwrap(), None).unwrap();
    let name = rustls::pki_types::ServerName::try_from("b.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls_config).connect(name, conn.io).await.unwrap();
    let mut conn = Conn::new(tls, addr, Limits::default()).server_stream();
    conn.send(header.as_bytes()).await.unwrap();
    let FrameEvent::StreamOpen(opened) = conn.next().await.unwrap() else { panic!("no stream header") };
    let _features = conn.next().await.unwrap();
    (conn, opened.id.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stanza_from_an_unauthenticated_domain_ends_the_stream() {
    use starling::xml::FrameEvent;
    let (a, b) = pair().await;
    let _bob = b.user("bob").await;
    // A peer speaking for a.test (it holds a.test's key, so dialback succeeds) that then sends
    // a message from another domain.
    let (mut conn, id) = raw_peer(b.running.s2s[0]).await;
    let key = a.server.s2s.dialback_key("b.test", "a.test", &id);
    conn.send(format!("<db:result from='a.test' to='b.test'>{key}</db:result>").as_bytes()).await.unwrap();
    let FrameEvent::Element(answer) = conn.next().await.unwrap() else { panic!("no dialback answer") };
    assert_eq!(answer.attr("type"), Some("valid"), "{answer}");
    conn.send(b"<message from='alice@a.test' to='bob@b.test'><body>fine</body></message>").await.unwrap();
    conn.send(b"<message from='eve@evil.test' to='bob@b.test'><body>spoofed</body></message>").await.unwrap();
    let FrameEvent::Element(error) = conn.next().await.unwrap() else { panic!("no stream error") };
    assert!(error.to_string().contains("invalid-from"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_make_us_verify_claims_without_end() {
    use starling::xml::FrameEvent;
    let (a, b) = pair().await;
    // Each claim sends us to the claimed domain's server to check it; a stream gets 32. (A
    // false claim ends the stream at once.) Here the same true claim, again and again.
    let (mut conn, id) = raw_peer(b.running.s2s[0]).await;
    let key = a.server.s2s.dialback_key("b.test", "a.test", &id);
    let claim = format!("<db:result from='a.test' to='b.test'>{key}</db:result>");
    let mut valid = 0;
    loop {
        conn.send(claim.as_bytes()).await.unwrap();
        let FrameEvent::Element(el) = conn.next().await.unwrap() else { panic!("the stream ended without an error") };
        if el.attr("type") == Some("valid") {
            valid += 1;
            continue;
        }
        assert!(el.to_string().contains("policy-violation"), "{el}");
        break;
    }
    assert_eq!(valid, 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stalls_in_the_tls_handshake_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = node("a.test", free_port(), &[]).await;
    let addr = a.running.s2s[0];
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
          xmlns:stream='http://etherx.jabber.org/streams' to='a.test' version='1.0'>\
          <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    )
    .await
    .unwrap();
    // Read the header, features and <proceed/>, then never start the handshake: the server
    // gives up after connect_timeout (3 s here) and closes the socket.
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stalled connection was not closed");
    assert!(started.elapsed() >= Duration::from_secs(2), "closed before the timeout: {:?}", started.elapsed());
}

/// A node on a database file, so that it can be restarted with its accounts.
async fn node_on_file(
    domain: &str,
    dir: &std::path::Path,
    s2s_port: u16,
    routes: &[(&str, u16)],
) -> (Running, Arc<Server>) {
    let routes: String = routes.iter().map(|(d, p)| format!("\"{d}\" = \"127.0.0.1:{p}\"\n")).collect();
    let toml = format!(
        "[server]\ndomains = [\"{domain}\"]\ndata_dir = {:?}\n\
         [c2s]\nlisten = []\ndirect_tls_listen = [\"127.0.0.1:0\"]\nscram_iterations = 4096\n[http]\nlisten = []\n\
         [s2s]\nlisten = [\"127.0.0.1:{s2s_port}\"]\nrequire_valid_certs = false\nconnect_timeout = \"3s\"\n\
         [s2s.routes]\n{routes}",
        dir.display().to_string()
    );
    let config = Config::parse(&toml, &starling::modules::config_checks()).unwrap();
    let server = Server::build(config).await.unwrap();
    let running = serve(server.clone()).await.unwrap();
    (running, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_a_peer_that_restarts_are_delivered_or_bounced() {
    let (port_a, port_b) = (free_port(), free_port());
    let a = node("a.test", port_a, &[("b.test", port_b)]).await;
    let b_dir = tempfile::tempdir().unwrap();
    let (b_running, b_server) = node_on_file("b.test", b_dir.path(), port_b, &[("a.test", port_a)]).await;
    b_server.accounts.create(&jid::BareJid::new("bob@b.test").unwrap(), "pw").await.unwrap();
    let mut alice = a.user("alice").await;
    let mut bob = Client::connect(b_running.c2s_direct_tls[0], "b.test", "bob", "pw", "r").await.unwrap();
    bob.send_raw("<presence/>").await.unwrap();
    bob.recv_named("presence").await.unwrap();

    let send = |n: usize| format!("<message type='chat' id='m{n}' to='bob@b.test'><body>m{n}</body></message>");
    for n in 0..50 {
        alice.send_raw(&send(n)).await.unwrap();
    }
    let mut delivered: Vec<String> = bob.message_bodies(50).await.unwrap();
    // The peer goes away (its streams close), messages are sent meanwhile, and it comes back.
    drop(bob);
    b_running.stop();
    drop(b_running);
    drop(b_server);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 50..100 {
        alice.send_raw(&send(n)).await.unwrap();
    }
    // Bounces come back while the peer is down (the new link cannot connect).
    let mut bounced = Vec::new();
    while let Ok(Some(client::Received::Element(el))) = alice.recv_within(Duration::from_secs(2)).await {
        if el.name == "message" && el.attr("type") == Some("error") {
            bounced.push(el.attr("id").unwrap_or_default().to_owned());
        }
    }
    let (b_running, _b_server) = node_on_file("b.test", b_dir.path(), port_b, &[("a.test", port_a)]).await;
    let mut bob = Client::connect(b_running.c2s_direct_tls[0], "b.test", "bob", "pw", "r").await.unwrap();
    bob.send_raw("<presence/>").await.unwrap();
    for n in 100..150 {
        alice.send_raw(&send(n)).await.unwrap();
    }
    // Whatever was not bounced arrives (stored while bob was away, or live), then m100..m149.
    // A message the peer took but had not acknowledged when it went away is also bounced
    // (the sender cannot know; XEP-0198): each message is delivered at most once, and
    // delivered or bounced, never lost.
    while let Ok(Some(client::Received::Element(el))) = bob.recv_within(Duration::from_secs(2)).await {
        if let Some(body) = el.get_child("body", "jabber:client") {
            delivered.push(body.text());
        }
    }
    for n in 0..150 {
        let id = format!("m{n}");
        let got = delivered.iter().filter(|b| **b == id).count();
        let bounced_n = bounced.iter().filter(|b| **b == id).count();
        assert!(got <= 1 && got + bounced_n >= 1, "{id}: delivered {got} times, bounced {bounced_n} times");
    }
    for n in 100..150 {
        assert!(delivered.contains(&format!("m{n}")), "m{n}, sent after the restart, was not delivered");
    }
    eprintln!("{} delivered, {} bounced", delivered.len(), bounced.len());
}

async fn certified_node(ca: &TestCa, domain: &str, s2s_port: u16, route: (&str, u16)) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue(domain, dir.path());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let toml = format!(
        "[server]\ndomains = [\"{domain}\"]\ndata_dir = {:?}\n[storage]\nurl = \"sqlite::memory:\"\n\
         [c2s]\nlisten = []\ndirect_tls_listen = [\"127.0.0.1:0\"]\nscram_iterations = 4096\n[http]\nlisten = []\n\
         [tls.certs.\"{domain}\"]\ncert = {:?}\nkey = {:?}\n\
         [s2s]\nlisten = [\"127.0.0.1:{s2s_port}\"]\nrequire_valid_certs = true\nca_files = [{:?}]\nconnect_timeout = \"3s\"\n\
         [s2s.routes]\n\"{}\" = \"127.0.0.1:{}\"\n",
        dir.path().display().to_string(),
        cert.display().to_string(),
        key.display().to_string(),
        ca_file.display().to_string(),
        route.0,
        route.1
    );
    let config = Config::parse(&toml, &starling::modules::config_checks()).unwrap();
    let server = Server::build(config).await.unwrap();
    let running = serve(server.clone()).await.unwrap();
    Node { running, server, _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_with_valid_certificates_authenticate_with_sasl_external() {
    use std::sync::atomic::Ordering;
    let ca = TestCa::new();
    let (port_a, port_b) = (free_port(), free_port());
    let a = certified_node(&ca, "a.test", port_a, ("b.test", port_b)).await;
    let b = certified_node(&ca, "b.test", port_b, ("a.test", port_a)).await;
    let mut alice = a.user("alice").await;
    let mut bob = b.user("bob").await;
    alice.send_raw("<message type='chat' to='bob@b.test'><body>by certificate</body></message>").await.unwrap();
    bob.send_raw("<message type='chat' to='alice@a.test'><body>likewise</body></message>").await.unwrap();
    assert_eq!(bob.message_bodies(1).await.unwrap(), ["by certificate"]);
    assert_eq!(alice.message_bodies(1).await.unwrap(), ["likewise"]);
    for node in [&a, &b] {
        assert_eq!(node.server.s2s.authenticated_by_certificate.load(Ordering::Relaxed), 1);
        assert_eq!(node.server.s2s.authenticated_by_dialback.load(Ordering::Relaxed), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_a_valid_certificate_is_refused_when_certificates_are_required() {
    let ca = TestCa::new();
    let (port_a, port_b) = (free_port(), free_port());
    // b.test trusts the CA and requires valid certificates; a.test has a self-signed one.
    let a = node("a.test", port_a, &[("b.test", port_b)]).await;
    let _b = certified_node(&ca, "b.test", port_b, ("a.test", port_a)).await;
    let mut alice = a.user("alice").await;
    alice.send_raw("<message type='chat' id='x' to='bob@b.test'><body>let me in</body></message>").await.unwrap();
    let bounce = tokio::time::timeout(Duration::from_secs(10), alice.recv_named("message")).await.unwrap().unwrap();
    assert_eq!((bounce.attr("type"), bounce.attr("id")), (Some("error"), Some("x")), "{bounce}");
}

/// A DNS server for the test: answers SRV queries from `records` (name → (priority, weight,
/// port, target, direct TLS?)), NXDOMAIN for everything else.
async fn fake_dns(records: Vec<(&'static str, u16, u16, u16, &'static str)>) -> std::net::SocketAddr {
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::rdata::SRV;
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else { return };
            let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.authoritative = true;
            for q in &query.queries {
                answer.add_query(q.clone());
                let name = q.name().to_utf8();
                for (record_name, priority, weight, port, target) in &records {
                    if q.query_type() == RecordType::SRV && name == *record_name {
                        let srv = SRV::new(*priority, *weight, *port, Name::from_utf8(target).unwrap());
                        answer.add_answer(Record::from_rdata(q.name().clone(), 60, RData::SRV(srv)));
                    }
                }
            }
            if answer.answers.is_empty() {
                answer.metadata.response_code = ResponseCode::NXDomain;
            }
            let _ = socket.send_to(&answer.to_vec().unwrap(), from).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_lead_to_the_peer_over_direct_tls() {
    let (port_a, port_b_starttls) = (free_port(), free_port());
    let b_dir = tempfile::tempdir().unwrap();
    let port_b_direct = free_port();
    // b.test publishes direct TLS (XEP-0368) before STARTTLS; a.test has no route to it. The
    // STARTTLS record points nowhere, so delivery shows that the direct TLS one came first.
    let dns = fake_dns(vec![
        ("_xmpps-server._tcp.b.test.", 5, 0, port_b_direct, "localhost."),
        ("_xmpp-server._tcp.b.test.", 10, 0, free_port(), "localhost."),
    ])
    .await;
    let a_toml_extra = format!("dns_servers = [\"{dns}\"]\n");
    let a = {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "[server]\ndomains = [\"a.test\"]\ndata_dir = {:?}\n[storage]\nurl = \"sqlite::memory:\"\n\
             [c2s]\nlisten = []\ndirect_tls_listen = [\"127.0.0.1:0\"]\nscram_iterations = 4096\n[http]\nlisten = []\n\
             [s2s]\nlisten = [\"127.0.0.1:{port_a}\"]\nrequire_valid_certs = false\nconnect_timeout = \"5s\"\n{a_toml_extra}",
            dir.path().display().to_string()
        );
        let config = Config::parse(&toml, &starling::modules::config_checks()).unwrap();
        let server = Server::build(config).await.unwrap();
        let running = serve(server.clone()).await.unwrap();
        Node { running, server, _dir: dir }
    };
    let b_toml = format!(
        "[server]\ndomains = [\"b.test\"]\ndata_dir = {:?}\n[storage]\nurl = \"sqlite::memory:\"\n\
         [c2s]\nlisten = []\ndirect_tls_listen = [\"127.0.0.1:0\"]\nscram_iterations = 4096\n[http]\nlisten = []\n\
         [s2s]\nlisten = [\"127.0.0.1:{port_b_starttls}\"]\ndirect_tls_listen = [\"127.0.0.1:{port_b_direct}\"]\n\
         require_valid_certs = false\nconnect_timeout = \"5s\"\n[s2s.routes]\n\"a.test\" = \"127.0.0.1:{port_a}\"\n",
        b_dir.path().display().to_string()
    );
    let config = Config::parse(&b_toml, &starling::modules::config_checks()).unwrap();
    let b_server = Server::build(config).await.unwrap();
    let b_running = serve(b_server.clone()).await.unwrap();
    let b = Node { running: b_running, server: b_server, _dir: b_dir };
    let mut alice = a.user("alice").await;
    let mut bob = b.user("bob").await;
    alice.send_raw("<message type='chat' to='bob@b.test'><body>found you</body></message>").await.unwrap();
    assert_eq!(bob.message_bodies(1).await.unwrap(), ["found you"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_of_another_server_takes_part_in_a_room() {
    let (port_a, port_b) = (free_port(), free_port());
    // b.test reaches the room service conference.a.test at a.test's address.
    let a = node("a.test", port_a, &[("b.test", port_b)]).await;
    let b = node("b.test", port_b, &[("a.test", port_a), ("conference.a.test", port_a)]).await;
    let mut alice = a.user("alice").await;
    let mut bob = b.user("bob").await;
    alice.send_raw("<presence to='hall@conference.a.test/alice'/>").await.unwrap();
    until_subject(&mut alice).await;
    bob.send_raw("<presence to='hall@conference.a.test/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        .await
        .unwrap();
    let entered = until_subject(&mut bob).await;
    assert!(entered.iter().any(|el| el.contains("hall@conference.a.test/alice")), "{entered:?}");
    assert!(entered.iter().any(|el| el.contains("code='110'")), "{entered:?}");
    bob.send_raw("<message type='groupchat' to='hall@conference.a.test'><body>from afar</body></message>")
        .await
        .unwrap();
    alice
        .send_raw("<message type='groupchat' to='hall@conference.a.test'><body>welcome</body></message>")
        .await
        .unwrap();
    let seen_by_alice = group_bodies(&mut alice, 2).await;
    let seen_by_bob = group_bodies(&mut bob, 2).await;
    for seen in [&seen_by_alice, &seen_by_bob] {
        assert!(seen.contains(&"from afar".to_owned()) && seen.contains(&"welcome".to_owned()), "{seen:?}");
    }
    assert_eq!(seen_by_alice, seen_by_bob, "both see the room's order");
}

/// Everything up to and including the subject message that ends an entry (XEP-0045 §7.2.15).
async fn until_subject(client: &mut Client) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let el = client.recv().await.unwrap();
        let done = el.name == "message" && el.get_child("subject", "jabber:client").is_some();
        seen.push(el.to_string());
        if done {
            return seen;
        }
    }
}

/// The bodies of the next `n` group messages, skipping presence.
async fn group_bodies(client: &mut Client, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let el = client.recv_named("message").await.unwrap();
        if el.attr("type") == Some("groupchat")
            && let Some(body) = el.get_child("body", "jabber:client")
        {
            out.push(body.text());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_domains_share_one_link_to_a_peer() {
    use std::sync::atomic::Ordering;
    let (port_a, port_b) = (free_port(), free_port());
    // a.test also serves x.test; b.test reaches both at a.test's address.
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\ndomains = [\"a.test\", \"x.test\"]\ndata_dir = {:?}\n[storage]\nurl = \"sqlite::memory:\"\n\
         [c2s]\nlisten = []\ndirect_tls_listen = [\"127.0.0.1:0\"]\nscram_iterations = 4096\n[http]\nlisten = []\n\
         [s2s]\nlisten = [\"127.0.0.1:{port_a}\"]\nrequire_valid_certs = false\nconnect_timeout = \"3s\"\n\
         [s2s.routes]\n\"b.test\" = \"127.0.0.1:{port_b}\"\n",
        dir.path().display().to_string()
    );
    let config = Config::parse(&toml, &starling::modules::config_checks()).unwrap();
    let server = Server::build(config).await.unwrap();
    let running = serve(server.clone()).await.unwrap();
    let a = Node { running, server, _dir: dir };
    let b = node("b.test", port_b, &[("a.test", port_a), ("x.test", port_a)]).await;
    let mut alice = a.user("alice").await;
    let xavier_jid = jid::BareJid::new("xavier@x.test").unwrap();
    a.server.accounts.create(&xavier_jid, "pw").await.unwrap();
    let mut xavier = Client::connect(a.running.c2s_direct_tls[0], "x.test", "xavier", "pw", "r").await.unwrap();
    xavier.send_raw("<presence/>").await.unwrap();
    xavier.recv_named("presence").await.unwrap();
    let mut bob = b.user("bob").await;
    alice.send_raw("<message type='chat' to='bob@b.test'><body>from a</body></message>").await.unwrap();
    assert_eq!(bob.message_bodies(1).await.unwrap(), ["from a"]);
    xavier.send_raw("<message type='chat' to='bob@b.test'><body>from x</body></message>").await.unwrap();
    assert_eq!(bob.message_bodies(1).await.unwrap(), ["from x"]);
    alice.send_raw("<message type='chat' to='bob@b.test'><body>a again</body></message>").await.unwrap();
    assert_eq!(bob.message_bodies(1).await.unwrap(), ["a again"]);
    // One stream carried both domains, each accepted by dialback on it.
    assert_eq!(b.server.s2s.streams_accepted.load(Ordering::Relaxed), 1);
    assert_eq!(b.server.s2s.authenticated_by_dialback.load(Ordering::Relaxed), 2);
    bob.send_raw("<message type='chat' to='xavier@x.test'><body>back to x</body></message>").await.unwrap();
    assert_eq!(xavier.message_bodies(1).await.unwrap(), ["back to x"]);
}
