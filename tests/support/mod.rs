//! Shared helpers for integration tests: an in-process server on loopback ports.
#![allow(dead_code)]

use starling::config::Config;
use starling::server::{Running, Server, serve};
use std::sync::Arc;

/// A running test server with its data directory.
pub struct TestServer {
    pub running: Running,
    pub server: Arc<Server>,
    _dir: tempfile::TempDir,
}

/// Starts a server for `localhost` on ephemeral loopback ports with an in-memory database.
/// `extra` is appended to the generated TOML (use it for `[c2s]` overrides only via keys not
/// already set here, or for module sections).
pub async fn start(c2s_extra: &str, extra: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let http = if extra.contains("[http]") { "" } else { "[http]\nlisten = []\n" };
    let s2s = if extra.contains("[s2s]") { "" } else { "[s2s]\nlisten = []\n" };
    let toml = format!(
        "[server]\ndomains = [\"localhost\"]\ndata_dir = {:?}\n[storage]\nurl = \"sqlite::memory:\"\n\
         [c2s]\nlisten = [\"127.0.0.1:0\"]\ndirect_tls_listen = [\"127.0.0.1:0\"]\n{c2s_extra}\n{http}{s2s}{extra}",
        dir.path().display().to_string()
    );
    let config = Config::parse(&toml, &starling::modules::config_checks()).unwrap();
    let server = Server::build(config).await.unwrap();
    let running = serve(server.clone()).await.unwrap();
    TestServer { running, server, _dir: dir }
}

impl TestServer {
    pub async fn add_user(&self, jid: &str, password: &str) {
        self.server.accounts.create(&jid::BareJid::new(jid).unwrap(), password).await.unwrap();
    }

    pub fn starttls_port(&self) -> u16 {
        self.running.c2s[0].port()
    }
}
