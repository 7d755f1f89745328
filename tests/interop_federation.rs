//! Federation with servers we did not write, from Debian packages: Prosody on `prosody.test`
//! and ejabberd on `ejabberd.test`, each against Starling on `starling.test`, on loopback. The
//! hosts file maps the names to 127.0.0.1 (`.ci/run` adds the entry); Starling reaches the peer
//! by a static route, the peer reaches Starling on port 5269 through the hosts file.
//! Certificates are self-signed, so both sides authenticate by dialback over TLS (XEP-0220);
//! in one more run Prosody and Starling have certificates from a test authority they both
//! trust and require them, and authenticate each other with SASL EXTERNAL (XEP-0178).
//! Shown: subscription both ways, presence both ways, 500 messages each way in order,
//! disco#info across.
//!
//! Skipped when a server or the hosts entries are missing, unless STARLING_REQUIRE_SERVICES=1.
//! The two tests take turns: both need port 5269.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/ca.rs"]
mod ca;
#[path = "../conformance/client.rs"]
mod client;

use client::Client;
use starling::config::Config;
use starling::server::{Server, serve};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn available(command: &str, domain: &str) -> bool {
    let installed = Command::new("which").arg(command).stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let ok = installed && hosts.lines().any(|l| l.contains("starling.test") && l.contains(domain));
    if !ok && std::env::var("STARLING_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{command} and hosts entries for starling.test and {domain} are required (see .ci/run)");
    }
    ok
}

/// The peer's configuration, data and logs: a temporary directory, or one kept under
/// `STARLING_INTEROP_DIR` for a look at the peer's side of the conversation.
fn scratch_dir(name: &str) -> tempfile::TempDir {
    match std::env::var("STARLING_INTEROP_DIR") {
        Ok(base) => {
            std::fs::create_dir_all(&base).unwrap();
            tempfile::Builder::new().prefix(name).disable_cleanup(true).tempdir_in(base).unwrap()
        }
        Err(_) => tempfile::tempdir().unwrap(),
    }
}

/// Port 5269 is Starling's in both tests.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A self-signed certificate and key for `domain`, made with openssl.
fn self_signed(dir: &Path, domain: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join(format!("{domain}.crt")), dir.join(format!("{domain}.key")));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={domain}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{domain}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    (cert, key)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A peer server in the foreground with its own configuration, data and certificate.
struct Peer {
    child: std::process::Child,
    domain: &'static str,
    c2s_tls: u16,
    s2s: u16,
    /// Run on drop, before the process is killed (ejabberd's node must be told to stop).
    stop: Option<Command>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(stop) = &mut self.stop {
            let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prosody with a self-signed certificate, or (with `ca`) one signed by the test authority,
/// which it then also trusts for peers, requiring valid certificates (`s2s_secure_auth`).
fn start_prosody(dir: &Path, ca: Option<&ca::TestCa>) -> Peer {
    let (c2s_tls, s2s) = (free_port(), free_port());
    let trust = match ca {
        Some(ca) => {
            ca.issue("prosody.test", dir);
            std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
            format!("cafile = \"{}/ca.pem\"; ", dir.display())
        }
        None => {
            self_signed(dir, "prosody.test");
            String::new()
        }
    };
    let secure = ca.is_some();
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
s2s_secure_auth = {secure}
authentication = "internal_hashed"
unbound = {{ hoststxt = "/etc/hosts"; resolvconf = "{d}/resolv.conf" }}
certificates = "{d}"
VirtualHost "prosody.test"
  ssl = {{ {trust}certificate = "{d}/prosody.test.crt"; key = "{d}/prosody.test.key" }}
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
    Peer { child, domain: "prosody.test", c2s_tls, s2s, stop: None }
}

/// ejabberd runs as its own user (as the Debian service does) from a scratch directory, as
/// an Erlang node named after that directory (a node of an earlier run may still be
/// stopping under another name).
fn ejabberdctl(dir: &Path) -> Command {
    let d = dir.display();
    let name: String = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let node = format!("interop{name}@localhost");
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=ejabberd", "--regid=ejabberd", "--init-groups", "ejabberdctl"])
        .args(["--config", &format!("{d}/ejabberd.yml"), "--ctl-config", &format!("{d}/ejabberdctl.cfg")])
        .args(["--spool", &format!("{d}/db"), "--logs", &format!("{d}/logs"), "--node", &node])
        .env("HOME", "/var/lib/ejabberd");
    command
}

fn start_ejabberd(dir: &Path) -> Peer {
    use std::os::unix::fs::PermissionsExt;
    let (c2s_tls, s2s) = (free_port(), free_port());
    let (cert, key) = self_signed(dir, "ejabberd.test");
    let both = dir.join("both.pem");
    let pem = std::fs::read_to_string(&cert).unwrap() + &std::fs::read_to_string(&key).unwrap();
    std::fs::write(&both, pem).unwrap();
    for sub in ["db", "logs"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::set_permissions(dir.join(sub), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        r#"hosts: ["ejabberd.test"]
loglevel: info
certfiles: ["{both}"]
auth_method: internal
s2s_use_starttls: required
s2s_dns_timeout: 1
s2s_dns_retries: 1
shaper: {{}}
shaper_rules: {{}}
acl: {{}}
access_rules:
  local: {{allow: all}}
  s2s: {{allow: all}}
s2s_access: s2s
listen:
  - port: {c2s_tls}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    tls: true
  - port: {s2s}
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
modules:
  mod_roster: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
  mod_s2s_dialback: {{}}
"#,
        both = both.display()
    );
    std::fs::write(dir.join("ejabberd.yml"), config).unwrap();
    std::fs::write(dir.join("ejabberdctl.cfg"), "ERL_OPTIONS=\"-env ERL_CRASH_DUMP_BYTES 0\"\n").unwrap();
    for file in ["ejabberd.yml", "ejabberdctl.cfg", "both.pem"] {
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let child = ejabberdctl(dir).arg("foreground").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let _ = ejabberdctl(dir).arg("started").stdout(Stdio::null()).stderr(Stdio::null()).status();
    let status = ejabberdctl(dir)
        .args(["register", "juliet", "ejabberd.test", "pw"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ejabberdctl register failed");
    let mut stop = ejabberdctl(dir);
    stop.arg("stop");
    Peer { child, domain: "ejabberd.test", c2s_tls, s2s, stop: Some(stop) }
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

/// Reads until a stanza matches, with a generous limit (the first s2s link takes a moment).
async fn until(
    client: &mut Client,
    what: &str,
    matches: impl Fn(&starling::xml::Element) -> bool,
) -> starling::xml::Element {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let Some(client::Received::Element(el)) = client.recv_within(Duration::from_secs(1)).await.unwrap() else {
                continue;
            };
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
    if !available("prosody", "prosody.test") {
        return eprintln!("skipped: Prosody or the hosts entries are missing");
    }
    let _turn = TURN.lock().await;
    let dir = scratch_dir("prosody");
    let prosody = start_prosody(dir.path(), None);
    federate_with(&prosody, dir.path(), "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starling_and_prosody_authenticate_each_other_by_certificate() {
    use std::sync::atomic::Ordering;
    if !available("prosody", "prosody.test") {
        return eprintln!("skipped: Prosody or the hosts entries are missing");
    }
    let _turn = TURN.lock().await;
    let dir = scratch_dir("prosody-certs");
    let ca = ca::TestCa::new();
    let prosody = start_prosody(dir.path(), Some(&ca));
    // Starling's certificate stays out of Prosody's certificate directory (it indexes all below).
    let own = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue("starling.test", own.path());
    let ca_file = dir.path().join("ca.pem");
    // Certificates are required on both sides: SASL EXTERNAL (XEP-0178) both ways.
    let tls = format!(
        "require_valid_certs = true\nca_files = [{:?}]\n[tls.certs.\"starling.test\"]\ncert = {:?}\nkey = {:?}",
        ca_file.display().to_string(),
        cert.display().to_string(),
        key.display().to_string()
    );
    let starling = federate_with(&prosody, dir.path(), &tls).await;
    assert!(starling.s2s.authenticated_by_certificate.load(Ordering::Relaxed) >= 1, "Prosody did not use EXTERNAL");
    assert_eq!(starling.s2s.authenticated_by_dialback.load(Ordering::Relaxed), 0);
    assert!(starling.s2s.links_by_certificate.load(Ordering::Relaxed) >= 1, "Starling did not use EXTERNAL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starling_and_ejabberd_federate() {
    if !available("ejabberdctl", "ejabberd.test") {
        return eprintln!("skipped: ejabberd or the hosts entries are missing");
    }
    let _turn = TURN.lock().await;
    let dir = scratch_dir("ejabberd");
    let ejabberd = start_ejabberd(dir.path());
    federate_with(&ejabberd, dir.path(), "").await;
}

/// Starling on starling.test with romeo, the peer with juliet: subscriptions, presence,
/// 500 messages each way, disco#info across. `tls` replaces Starling's certificate settings
/// (default: self-signed, certificates not required). Returns Starling for a look at how
/// peers authenticated.
async fn federate_with(peer: &Peer, dir: &Path, tls: &str) -> Arc<Server> {
    let domain = peer.domain;
    let toml = format!(
        "[server]\ndomains = [\"starling.test\"]\ndata_dir = {:?}\n[storage]\nurl = \"sqlite::memory:\"\n\
         [c2s]\nlisten = []\ndirect_tls_listen = [\"127.0.0.1:0\"]\nscram_iterations = 4096\n[http]\nlisten = []\n\
         [s2s]\nlisten = [\"127.0.0.1:5269\"]\nconnect_timeout = \"20s\"\n{}\n\
         [s2s.routes]\n\"{domain}\" = \"127.0.0.1:{}\"\n",
        dir.join("starling").display().to_string(),
        if tls.is_empty() { "require_valid_certs = false" } else { tls },
        peer.s2s
    );
    let config = Config::parse(&toml, &starling::modules::config_checks()).unwrap();
    let server = Server::build(config).await.unwrap();
    let running = serve(server.clone()).await.unwrap();
    server.accounts.create(&jid::BareJid::new("romeo@starling.test").unwrap(), "pw").await.unwrap();
    wait_for_port(peer.c2s_tls).await;

    let mut romeo = Client::connect(running.c2s_direct_tls[0], "starling.test", "romeo", "pw", "r").await.unwrap();
    let peer_addr = std::net::SocketAddr::from(([127, 0, 0, 1], peer.c2s_tls));
    let mut juliet = Client::connect(peer_addr, domain, "juliet", "pw", "j").await.unwrap();
    romeo.send_raw("<presence/>").await.unwrap();
    juliet.send_raw("<presence/>").await.unwrap();
    let juliet_jid = format!("juliet@{domain}");

    // Subscription both ways (RFC 6121 §3.1) across the two servers.
    romeo.send_raw(&format!("<presence type='subscribe' to='{juliet_jid}'/>")).await.unwrap();
    until(&mut juliet, "romeo's subscription request", |el| el.attr("type") == Some("subscribe")).await;
    juliet.send_raw("<presence type='subscribed' to='romeo@starling.test'/>").await.unwrap();
    juliet.send_raw("<presence type='subscribe' to='romeo@starling.test'/>").await.unwrap();
    let juliet_full = format!("{juliet_jid}/j");
    until(&mut romeo, "juliet's presence", |el| {
        el.name == "presence" && el.attr("from") == Some(juliet_full.as_str()) && el.attr("type").is_none()
    })
    .await;
    until(&mut romeo, "juliet's subscription request", |el| el.attr("type") == Some("subscribe")).await;
    romeo.send_raw(&format!("<presence type='subscribed' to='{juliet_jid}'/>")).await.unwrap();
    until(&mut juliet, "romeo's presence", |el| {
        el.name == "presence" && el.attr("from") == Some("romeo@starling.test/r") && el.attr("type").is_none()
    })
    .await;

    for n in 0..500 {
        let to_juliet = format!("<message type='chat' to='{juliet_jid}'><body>r{n}</body></message>");
        romeo.send_raw(&to_juliet).await.unwrap();
        let to_romeo = format!("<message type='chat' to='romeo@starling.test'><body>j{n}</body></message>");
        juliet.send_raw(&to_romeo).await.unwrap();
    }
    assert_eq!(juliet.message_bodies(500).await.unwrap(), (0..500).map(|n| format!("r{n}")).collect::<Vec<_>>());
    assert_eq!(romeo.message_bodies(500).await.unwrap(), (0..500).map(|n| format!("j{n}")).collect::<Vec<_>>());

    let info =
        format!("<iq type='get' id='info' to='{domain}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    romeo.send_raw(&info).await.unwrap();
    let info = until(&mut romeo, "disco#info of the peer", |el| el.name == "iq").await;
    assert_eq!((info.attr("type"), info.attr("from")), (Some("result"), Some(domain)), "{info}");
    let info =
        "<iq type='get' id='info' to='starling.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>";
    juliet.send_raw(info).await.unwrap();
    let info = until(&mut juliet, "disco#info of starling.test", |el| el.name == "iq").await;
    assert_eq!((info.attr("type"), info.attr("from")), (Some("result"), Some("starling.test")), "{info}");
    running.stop();
    server
}
