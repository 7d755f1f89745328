//! The server: configuration, storage, accounts, the session table and each domain's module
//! tables, put together at startup; and the listeners that serve it.
//!
//! Startup order: open (and migrate) storage, read the TLS ticket keys from it (creating the
//! current ones if none exist), load or generate certificates, build every enabled module for
//! every domain (dependencies first), then bind listeners. Any failure stops startup with a
//! message; nothing falls back silently.

use crate::c2s::throttle::AuthThrottle;
use crate::c2s::{ListenerKind, accept_loop};
use crate::config::Config;
use crate::module_api::{Component, HostModules, ModuleDescriptor, ModuleError, Registrar, ServerHandle};
use crate::session::SessionTable;
use crate::storage::Storage;
use crate::storage::accounts::Accounts;
use crate::stream::tls::{CertSource, CertStore, TicketKeys};
use anyhow::Context;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The running server's shared state.
pub struct Server {
    /// Configuration in force.
    pub config: Arc<Config>,
    /// Storage.
    pub storage: Storage,
    /// Accounts.
    pub accounts: Accounts,
    /// Bound sessions on this node.
    pub sessions: SessionTable,
    /// Failed-login throttle.
    pub throttle: AuthThrottle,
    /// Secret for fake SCRAM challenges to unknown users.
    pub fake_secret: Vec<u8>,
    /// When the server started.
    pub started: Instant,
    /// Federation: links to other servers.
    pub s2s: crate::s2s::S2s,
    me: Weak<Server>,
    hosts: HashMap<String, HostModules>,
    components: HashMap<String, Arc<dyn Component>>,
    tls: Option<(TlsAcceptor, Arc<CertStore>)>,
    /// TLS session-ticket keys, shared with every node through storage.
    tickets: Arc<TicketKeys>,
}

impl Server {
    /// Builds the server from a validated configuration.
    pub async fn build(config: Config) -> anyhow::Result<Arc<Server>> {
        let config = Arc::new(config);
        let url = config.storage_url();
        if url.starts_with("sqlite://") && config.storage.url.is_none() {
            std::fs::create_dir_all(&config.server.data_dir)
                .with_context(|| format!("creating data directory {}", config.server.data_dir.display()))?;
        }
        let storage = Storage::open(&url).await.with_context(|| format!("opening storage {url}"))?;
        let tickets = TicketKeys::from_storage(&storage).await.context("loading the TLS ticket keys")?;
        let tls = load_tls(&config, tickets.clone())?;
        let certs = tls.as_ref().map(|(_, store)| store.clone()).context("no TLS certificates")?;
        let s2s = crate::s2s::S2s::new(&config.s2s, &config.server.domains, certs).context("setting up federation")?;
        let accounts = Accounts::new(storage.clone(), config.server.domains.clone(), config.c2s.scram_iterations);
        let mut failure = None;
        let server = Arc::new_cyclic(|weak: &Weak<Server>| {
            let hosts = build_hosts(&config, &storage, weak).unwrap_or_else(|e| {
                failure = Some(e);
                HashMap::new()
            });
            let components = collect_components(&hosts).unwrap_or_else(|e| {
                failure = Some(e);
                HashMap::new()
            });
            Server {
                throttle: AuthThrottle::new(config.c2s.auth_failure_limit, config.c2s.auth_failure_window.get()),
                fake_secret: crate::module_api::random_id(32).into_bytes(),
                started: Instant::now(),
                s2s,
                me: weak.clone(),
                sessions: SessionTable::default(),
                config: config.clone(),
                storage,
                accounts,
                hosts,
                components,
                tls,
                tickets,
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(server)
    }

    /// The module tables of a served domain.
    pub fn host(&self, domain: &str) -> Option<&HostModules> {
        self.hosts.get(domain)
    }

    /// The running server itself, for tasks that outlive a call (federation links).
    pub fn me(&self) -> Option<Arc<Server>> {
        self.me.upgrade()
    }

    /// The component serving a domain, if one does.
    pub fn component(&self, domain: &str) -> Option<&Arc<dyn Component>> {
        self.components.get(domain)
    }

    /// The first configured domain (used when a client names none).
    pub fn default_domain(&self) -> &str {
        self.config.server.domains.first().map(String::as_str).unwrap_or("localhost")
    }

    /// Whether TLS can be offered.
    pub fn tls_available(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS acceptor.
    pub fn tls_acceptor(&self) -> Option<TlsAcceptor> {
        self.tls.as_ref().map(|(acceptor, _)| acceptor.clone())
    }

    /// Channel-binding data of a TLS connection (none for plain TCP).
    pub fn channel_bindings(&self, tls: Option<&rustls::ServerConnection>) -> crate::stream::sasl::ChannelBindings {
        match (tls, &self.tls) {
            (Some(conn), Some((_, store))) => store.channel_bindings(conn),
            _ => crate::stream::sasl::ChannelBindings::default(),
        }
    }

    /// Closes every session with `system-shutdown` (RFC 6120 §4.9.3.19).
    pub fn shutdown(&self) {
        for session in self.sessions.all() {
            session.close("system-shutdown");
        }
        self.s2s.shut_down();
    }
}

fn load_tls(config: &Config, tickets: Arc<TicketKeys>) -> anyhow::Result<Option<(TlsAcceptor, Arc<CertStore>)>> {
    let cert_dir = config.server.data_dir.join("certs");
    let sources = config
        .server
        .domains
        .iter()
        .map(|domain| {
            let source = match config.tls.certs.get(domain) {
                Some(files) => CertSource::Files { cert: files.cert.clone(), key: files.key.clone() },
                None => CertSource::SelfSigned { dir: cert_dir.clone() },
            };
            (domain.clone(), source)
        })
        .collect::<Vec<_>>();
    let store = Arc::new(CertStore::load(&sources).context("loading TLS certificates")?);
    let config = crate::stream::tls::server_config(store.clone(), tickets).context("building the TLS configuration")?;
    Ok(Some((TlsAcceptor::from(config), store)))
}

fn build_hosts(
    config: &Config,
    storage: &Storage,
    weak: &Weak<Server>,
) -> anyhow::Result<HashMap<String, HostModules>> {
    let enabled = enabled_modules(config)?;
    let mut hosts = HashMap::new();
    for domain in &config.server.domains {
        let mut host = HostModules::default();
        for descriptor in &enabled {
            let section = config.module_section(descriptor.name);
            let mut registrar =
                Registrar::new(descriptor.name, domain, &mut host, ServerHandle::new(weak.clone()), storage, section);
            (descriptor.build)(&mut registrar).with_context(|| format!("module {} for {domain}", descriptor.name))?;
            host.loaded.push(descriptor.name);
        }
        hosts.insert(domain.clone(), host);
    }
    Ok(hosts)
}

/// Every component by its domain; a component domain must be neither a served domain nor
/// claimed twice.
fn collect_components(hosts: &HashMap<String, HostModules>) -> anyhow::Result<HashMap<String, Arc<dyn Component>>> {
    let mut components = HashMap::new();
    for host in hosts.values() {
        for (domain, component) in &host.components {
            if hosts.contains_key(domain) || components.insert(domain.clone(), component.clone()).is_some() {
                anyhow::bail!("the component domain {domain} is also served by something else");
            }
        }
    }
    Ok(components)
}

/// The enabled modules, ordered so that each comes after its dependencies.
fn enabled_modules(config: &Config) -> anyhow::Result<Vec<&'static ModuleDescriptor>> {
    let wanted: Vec<&'static ModuleDescriptor> = crate::modules::ALL
        .iter()
        .copied()
        .filter(|d| {
            let section = config.modules.get(d.name);
            section.and_then(|s| s.get("enabled")).and_then(toml::Value::as_bool).unwrap_or(d.default_enabled)
        })
        .collect();
    let mut ordered: Vec<&'static ModuleDescriptor> = Vec::new();
    while ordered.len() < wanted.len() {
        let before = ordered.len();
        for d in &wanted {
            let placed = ordered.iter().any(|o| o.name == d.name);
            let ready = d.depends.iter().all(|dep| ordered.iter().any(|o| o.name == *dep));
            if !placed && ready {
                ordered.push(d);
            }
        }
        if ordered.len() == before {
            let missing = wanted.iter().find(|d| !ordered.iter().any(|o| o.name == d.name));
            let dep = missing.and_then(|d| d.depends.iter().find(|dep| !wanted.iter().any(|w| w.name == **dep)));
            return Err(ModuleError::MissingDependency(dep.copied().unwrap_or("(cycle)")))
                .with_context(|| format!("module {}", missing.map(|d| d.name).unwrap_or("?")));
        }
    }
    Ok(ordered)
}

/// Listeners that are running, with the addresses they are bound to.
pub struct Running {
    /// The server.
    pub server: Arc<Server>,
    /// STARTTLS client listener addresses.
    pub c2s: Vec<SocketAddr>,
    /// Direct TLS client listener addresses.
    pub c2s_direct_tls: Vec<SocketAddr>,
    /// Server-to-server listener addresses (STARTTLS).
    pub s2s: Vec<SocketAddr>,
    /// Server-to-server listener addresses (direct TLS).
    pub s2s_direct_tls: Vec<SocketAddr>,
    /// HTTP listener addresses.
    pub http: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting and closes every session.
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.server.shutdown();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds every configured listener and starts accepting.
pub async fn serve(server: Arc<Server>) -> anyhow::Result<Running> {
    let mut running = Running {
        server: server.clone(),
        c2s: vec![],
        c2s_direct_tls: vec![],
        s2s: vec![],
        s2s_direct_tls: vec![],
        http: vec![],
        tasks: vec![],
    };
    let tickets = Arc::downgrade(&server.tickets);
    running.tasks.push(tokio::spawn(TicketKeys::keep_fresh(tickets, server.storage.clone())));
    let kinds = [
        (&server.config.c2s.listen, ListenerKind::StartTls),
        (&server.config.c2s.direct_tls_listen, ListenerKind::DirectTls),
    ];
    for (addrs, kind) in kinds {
        for addr in addrs {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
            let bound = listener.local_addr()?;
            tracing::info!(%bound, ?kind, "listening for clients");
            match kind {
                ListenerKind::StartTls => running.c2s.push(bound),
                ListenerKind::DirectTls => running.c2s_direct_tls.push(bound),
            }
            running.tasks.push(tokio::spawn(accept_loop(server.clone(), listener, kind)));
        }
    }
    for (addrs, direct_tls) in [(&server.config.s2s.listen, false), (&server.config.s2s.direct_tls_listen, true)] {
        for addr in addrs {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("binding s2s {addr}"))?;
            let bound = listener.local_addr()?;
            tracing::info!(%bound, direct_tls, "listening for servers");
            if direct_tls {
                running.s2s_direct_tls.push(bound)
            } else {
                running.s2s.push(bound)
            }
            running.tasks.push(tokio::spawn(crate::s2s::incoming::accept_loop(server.clone(), listener, direct_tls)));
        }
    }
    for addr in &server.config.http.listen {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding HTTP {addr}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(%bound, "listening for HTTP");
        running.http.push(bound);
        running.tasks.push(tokio::spawn(crate::http::serve(server.clone(), listener)));
    }
    Ok(running)
}
