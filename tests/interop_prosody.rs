//! Federation with a server we did not write: Prosody (Debian package) on `prosody.test`,
//! Starling on `starling.test`, on loopback. The hosts file maps both names to 127.0.0.1
//! (`.ci/run` adds the entry); Starling reaches Prosody by a static route, Prosody reaches
//! Starling on port 5269 through the hosts file. Certificates are self-signed, so both sides
//! authenticate by dialback over TLS (XEP-0220). Shown: subscription both ways, presence both
//! ways, 500 messages each way in order, disco#info across.
//!
//! Skipped when Prosody or the hosts entries are missing, unless STARLING_REQUIRE_SERVICES=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../conformance/client.rs"]
mod client;

use client::Client;
use starling::config::Config;
use starling::server::{Server, serve};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn available() -> bool {
    let prosody = Command::new("prosodyctl").arg("about").stdout(Stdio::null()).stderr(Stdio::null()).status();
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let ok = prosody.is_ok() && hosts.lines().any(|l| l.contains("starling.test") && l.contains("prosody.test"));
    if !ok && std::env::var("STARLING_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("Prosody and hosts entries for starling.test and prosody.test are required (see .ci/run)");
    }
    ok
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Prosody in the foreground with its own configuration, data and certificate.
struct Prosody {
    child: std::process::Child,
    c2s_tls: u16,
    s2s: u16,
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prosody(dir: &Path) -> Prosody {
    let (c2s_tls, s2s) = (free_port(), free_port());
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=prosody.test"])
        .args(["-addext", "subjectAltName=DNS:prosody.test"])
        .arg("-keyout")
        .arg(dir.join("prosody.test.key"))
        .arg("-out")
        .arg(dir.join("prosody.test.crt"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    let d = dir.display();
    let config = format!(
        r#"
daemonize = false
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}"
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{d}/prosody.log" }} }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "posix" }}
modules_disabled = {{ "s2s_bidi" }}
c2s_ports = {{ }}
c2s_direct_tls_ports = {{ {c2s_tls} }}
s2s_ports = {{ {s2s} }}
interfaces = {{ "127.0.0.1" }}
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
authentication = "internal_hashed"
unbound = {{ hoststxt = "/etc/hosts"; resolvconf = "{d}/resolv.conf" }}
certificates = "{d}"
VirtualHost "prosody.test"
  ssl = {{ certificate = "{d}/prosody.test.crt"; key = "{d}/prosody.test.key" }}
"#
    );
    let config_path = dir.join("prosody.cfg.lua");
    std::fs::write(&config_path, config).unwrap();
    let status = Command::new("prosodyctl")
        .arg("--config")
        .arg(&config_path)
        .args(["register", "juliet", "prosody.test", "pw"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "prosodyctl register failed");
    let child = Command::new("prosody")
        .arg("--config")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Prosody { child, c2s_tls, s2s }
}

async fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing listens on {port}");
}

async fn bodies(client: &mut Client, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let el = client.recv_named("message").await.unwrap();
        if let Some(body) = el.get_child("body", "jabber:client") {
            out.push(body.text());
        }
    }
    out
}

/// Reads until a stanza matches, with a generous limit (the first s2s link takes a moment).
async fn until(
    client: &mut Client,
    what: &str,
    matches: impl Fn(&starling::xml::Element) -> bool,
) -> starling::xml::Element {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let el = client.recv().await.unwrap();
            if matches(&el) {
                return el;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starling_and_prosody_federate() {
    if !available() {
        eprintln!("skipped: Prosody or the hosts entries are missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prosody = start_prosody(dir.path());
    let toml = format!(
        "[server]\ndomains = [\"starling.test\"]\ndata_dir = {:?}\n[storage]\nurl = \"sqlite::memory:\"\n\
         [c2s]\nlisten = []\ndirect_tls_listen = [\"127.0.0.1:0\"]\nscram_iterations = 4096\n[http]\nlisten = []\n\
         [s2s]\nlisten = [\"127.0.0.1:5269\"]\nrequire_valid_certs = false\nconnect_timeout = \"20s\"\n\
         [s2s.routes]\n\"prosody.test\" = \"127.0.0.1:{}\"\n",
        dir.path().join("starling").display().to_string(),
        prosody.s2s
    );
    let config = Config::parse(&toml, &starling::modules::config_checks()).unwrap();
    let server = Server::build(config).await.unwrap();
    let running = serve(server.clone()).await.unwrap();
    server.accounts.create(&jid::BareJid::new("romeo@starling.test").unwrap(), "pw").await.unwrap();
    wait_for_port(prosody.c2s_tls).await;

    let mut romeo = Client::connect(running.c2s_direct_tls[0], "starling.test", "romeo", "pw", "r").await.unwrap();
    let prosody_addr = std::net::SocketAddr::from(([127, 0, 0, 1], prosody.c2s_tls));
    let mut juliet = Client::connect(prosody_addr, "prosody.test", "juliet", "pw", "j").await.unwrap();
    romeo.send_raw("<presence/>").await.unwrap();
    juliet.send_raw("<presence/>").await.unwrap();

    // Subscription both ways (RFC 6121 §3.1) across the two servers.
    romeo.send_raw("<presence type='subscribe' to='juliet@prosody.test'/>").await.unwrap();
    until(&mut juliet, "romeo's subscription request", |el| el.attr("type") == Some("subscribe")).await;
    juliet.send_raw("<presence type='subscribed' to='romeo@starling.test'/>").await.unwrap();
    juliet.send_raw("<presence type='subscribe' to='romeo@starling.test'/>").await.unwrap();
    until(&mut romeo, "juliet's presence", |el| {
        el.name == "presence" && el.attr("from") == Some("juliet@prosody.test/j") && el.attr("type").is_none()
    })
    .await;
    until(&mut romeo, "juliet's subscription request", |el| el.attr("type") == Some("subscribe")).await;
    romeo.send_raw("<presence type='subscribed' to='juliet@prosody.test'/>").await.unwrap();
    until(&mut juliet, "romeo's presence", |el| {
        el.name == "presence" && el.attr("from") == Some("romeo@starling.test/r") && el.attr("type").is_none()
    })
    .await;

    for n in 0..500 {
        romeo
            .send_raw(&format!("<message type='chat' to='juliet@prosody.test'><body>r{n}</body></message>"))
            .await
            .unwrap();
        juliet
            .send_raw(&format!("<message type='chat' to='romeo@starling.test'><body>j{n}</body></message>"))
            .await
            .unwrap();
    }
    assert_eq!(bodies(&mut juliet, 500).await, (0..500).map(|n| format!("r{n}")).collect::<Vec<_>>());
    assert_eq!(bodies(&mut romeo, 500).await, (0..500).map(|n| format!("j{n}")).collect::<Vec<_>>());

    romeo
        .send_raw(
            "<iq type='get' id='info' to='prosody.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        )
        .await
        .unwrap();
    let info = until(&mut romeo, "disco#info of prosody.test", |el| el.name == "iq").await;
    assert_eq!((info.attr("type"), info.attr("from")), (Some("result"), Some("prosody.test")), "{info}");
    juliet
        .send_raw(
            "<iq type='get' id='info' to='starling.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        )
        .await
        .unwrap();
    let info = until(&mut juliet, "disco#info of starling.test", |el| el.name == "iq").await;
    assert_eq!((info.attr("type"), info.attr("from")), (Some("result"), Some("starling.test")), "{info}");
    drop(running);
    // For a look at Prosody's side of the conversation.
    if let Ok(keep) = std::env::var("STARLING_KEEP_PROSODY_LOG") {
        std::fs::copy(dir.path().join("prosody.log"), keep).unwrap();
    }
}
