//! Server configuration: one TOML file, typed sections, every error reported at once.
//!
//! Loading goes in three steps: TOML syntax, typed deserialisation (where keys that no
//! section knows are collected with their dotted path instead of stopping at the first), and
//! validation of values against each other (domains, listeners, certificate files, module
//! sections). All problems found are returned together so that an operator fixes a file in
//! one pass. Module options live under `[modules.<name>]` and are checked by the module's own
//! typed struct (see `module_api::ModuleDescriptor::check_config`).

mod units;

pub use units::{ByteSize, ConfigDuration};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    /// `[server]`: hosts served and where data lives.
    pub server: ServerSection,
    /// `[storage]`: the database.
    pub storage: StorageSection,
    /// `[c2s]`: client connections.
    pub c2s: C2sSection,
    /// `[s2s]`: server-to-server connections.
    pub s2s: S2sSection,
    /// `[http]`: the HTTP listener.
    pub http: HttpSection,
    /// `[tls]`: certificates per domain.
    pub tls: TlsSection,
    /// `[log]`: logging.
    pub log: LogSection,
    /// `[modules.<name>]`: per-module options, checked by each module's own type.
    pub modules: BTreeMap<String, toml::Table>,
}

/// `[server]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerSection {
    /// Virtual hosts (XMPP domains) served by this server.
    pub domains: Vec<String>,
    /// Directory for the SQLite database, generated certificates and other state.
    pub data_dir: PathBuf,
}

/// `[storage]`
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct StorageSection {
    /// `sqlite://path` or `postgres://user@host/db`; defaults to `sqlite://<data_dir>/starling.db`.
    pub url: Option<String>,
}

/// `[c2s]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct C2sSection {
    /// Addresses for plain TCP with STARTTLS (RFC 6120 §5).
    pub listen: Vec<SocketAddr>,
    /// Addresses for direct TLS (XEP-0368).
    pub direct_tls_listen: Vec<SocketAddr>,
    /// Refuse authentication and stanzas before TLS is negotiated.
    pub require_encryption: bool,
    /// Largest stanza accepted; larger ones close the stream with `policy-violation`.
    pub max_stanza_size: ByteSize,
    /// Deepest element nesting accepted inside a stanza.
    pub max_depth: usize,
    /// Most attributes accepted on one element.
    pub max_attributes: usize,
    /// Time allowed from connect until a resource is bound.
    pub negotiation_timeout: ConfigDuration,
    /// Failed logins per IP address allowed within `auth_failure_window` before that address
    /// is slowed down.
    pub auth_failure_limit: u32,
    /// Window over which failed logins are counted.
    pub auth_failure_window: ConfigDuration,
    /// A client silent for this long is pinged (XEP-0199).
    pub ping_after_idle: ConfigDuration,
    /// A pinged client that sends nothing for this long is considered dead and disconnected.
    pub ping_timeout: ConfigDuration,
    /// PBKDF2 iterations for newly set passwords (SCRAM, RFC 5802).
    pub scram_iterations: u32,
    /// How long a session whose connection died waits to be resumed (XEP-0198 §5).
    pub resume_timeout: ConfigDuration,
}

/// `[s2s]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct S2sSection {
    /// Addresses for incoming server connections (plain TCP with STARTTLS, RFC 6120 §5).
    pub listen: Vec<SocketAddr>,
    /// Addresses for incoming server connections over direct TLS (XEP-0368).
    pub direct_tls_listen: Vec<SocketAddr>,
    /// Refuse peers whose certificates do not validate; when false, server dialback
    /// (XEP-0220) over TLS authenticates them instead (private federations, tests).
    pub require_valid_certs: bool,
    /// Extra PEM files of certificate authorities trusted for peers, besides the system's.
    pub ca_files: Vec<PathBuf>,
    /// Fixed addresses for peer domains (`"example.net" = "127.0.0.1:15269"`), used instead of
    /// DNS.
    pub routes: BTreeMap<String, String>,
    /// Time allowed to connect to a peer and authenticate; stanzas waiting for it then
    /// bounce with `remote-server-timeout`.
    pub connect_timeout: ConfigDuration,
    /// A connection that carried nothing for this long is closed (reopened on demand).
    pub idle_timeout: ConfigDuration,
    /// Most stanzas queued per peer (while its link is set up, or when it reads slower than
    /// they come); senders then wait, and after 10 s their stanzas bounce with
    /// `resource-constraint`.
    pub max_queued: usize,
    /// DNS servers for SRV lookups (`"ip:port"`); empty: the system's.
    pub dns_servers: Vec<SocketAddr>,
}

/// `[http]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct HttpSection {
    /// Addresses of the HTTP listener (`GET /health`).
    pub listen: Vec<SocketAddr>,
}

/// `[tls]`
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct TlsSection {
    /// Certificates per domain; a domain without one gets a generated self-signed certificate.
    pub certs: BTreeMap<String, CertFiles>,
}

/// One certificate chain and its key, as PEM files.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[log]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct LogSection {
    /// A tracing filter such as `info` or `starling=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection { domains: vec!["localhost".into()], data_dir: PathBuf::from("data") }
    }
}

impl Default for C2sSection {
    fn default() -> Self {
        C2sSection {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 5222))],
            direct_tls_listen: vec![SocketAddr::from(([0, 0, 0, 0], 5223))],
            require_encryption: true,
            max_stanza_size: ByteSize(256 * 1024),
            max_depth: 32,
            max_attributes: 64,
            negotiation_timeout: ConfigDuration(std::time::Duration::from_secs(60)),
            auth_failure_limit: 5,
            auth_failure_window: ConfigDuration(std::time::Duration::from_secs(60)),
            ping_after_idle: ConfigDuration(std::time::Duration::from_secs(300)),
            ping_timeout: ConfigDuration(std::time::Duration::from_secs(60)),
            scram_iterations: 10_000,
            resume_timeout: ConfigDuration(std::time::Duration::from_secs(300)),
        }
    }
}

impl Default for S2sSection {
    fn default() -> Self {
        S2sSection {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 5269))],
            direct_tls_listen: vec![],
            require_valid_certs: true,
            ca_files: vec![],
            routes: BTreeMap::new(),
            connect_timeout: ConfigDuration(std::time::Duration::from_secs(30)),
            idle_timeout: ConfigDuration(std::time::Duration::from_secs(600)),
            max_queued: 1000,
            dns_servers: vec![],
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection { listen: vec![SocketAddr::from(([127, 0, 0, 1], 5280))] }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { level: "info".into() }
    }
}

/// Every problem found in a configuration, each with the dotted path it concerns.
#[derive(Debug, Default)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration error(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Checks one module's `[modules.<name>]` section; returns the problems found.
pub type ModuleSectionCheck = fn(&str, &toml::Table) -> Vec<String>;

impl Config {
    /// Reads and validates a file. `module_checks` maps module names to their section check.
    pub fn load(path: &Path, module_checks: &[(&str, ModuleSectionCheck)]) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))?;
        Config::parse(&text, module_checks)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str, module_checks: &[(&str, ModuleSectionCheck)]) -> Result<Config, ConfigErrors> {
        let (config, mut errors) = parse_section::<Config>("", text)?;
        config.validate(module_checks, &mut errors);
        if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) }
    }

    /// The storage URL, with the default derived from `data_dir`.
    pub fn storage_url(&self) -> String {
        match &self.storage.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.server.data_dir.join("starling.db").display()),
        }
    }

    /// The options of one module, or an empty table when its section is absent.
    pub fn module_section(&self, name: &str) -> toml::Table {
        self.modules.get(name).cloned().unwrap_or_default()
    }

    fn validate(&self, module_checks: &[(&str, ModuleSectionCheck)], errors: &mut Vec<String>) {
        if self.server.domains.is_empty() {
            errors.push("server.domains: at least one domain is required".into());
        }
        for domain in &self.server.domains {
            if jid::BareJid::new(domain).map(|j| j.node().is_some()).unwrap_or(true) {
                errors.push(format!("server.domains: {domain:?} is not a valid domain"));
            }
        }
        let url = self.storage_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            errors.push(format!("storage.url: {url:?} must start with sqlite: or postgres://"));
        }
        if self.c2s.listen.is_empty() && self.c2s.direct_tls_listen.is_empty() {
            errors.push("c2s: neither listen nor direct_tls_listen has an address".into());
        }
        if self.c2s.max_stanza_size.0 < 10_000 {
            errors.push("c2s.max_stanza_size: RFC 6120 §13.12 requires at least 10000 bytes".into());
        }
        if self.c2s.scram_iterations < 4096 {
            errors.push("c2s.scram_iterations: RFC 7677 requires at least 4096".into());
        }
        if let Err(e) = self.log.level.parse::<tracing_subscriber::EnvFilter>() {
            errors.push(format!("log.level: {e}"));
        }
        self.validate_certs(errors);
        self.validate_s2s(errors);
        self.validate_modules(module_checks, errors);
    }

    fn validate_s2s(&self, errors: &mut Vec<String>) {
        for (domain, target) in &self.s2s.routes {
            let port =
                target.rsplit_once(':').and_then(|(host, port)| port.parse::<u16>().ok().filter(|_| !host.is_empty()));
            if port.is_none() {
                errors.push(format!("s2s.routes.{domain:?}: {target:?} must be host:port"));
            }
        }
        for file in &self.s2s.ca_files {
            if !file.is_file() {
                errors.push(format!("s2s.ca_files: {} is not a readable file", file.display()));
            }
        }
        if self.s2s.max_queued == 0 {
            errors.push("s2s.max_queued: must be at least 1".into());
        }
    }

    fn validate_certs(&self, errors: &mut Vec<String>) {
        for (domain, files) in &self.tls.certs {
            let served = self.server.domains.iter().any(|d| d == domain || domain.ends_with(&format!(".{d}")));
            if !served {
                errors.push(format!("tls.certs.{domain:?}: not a served domain or subdomain of one"));
            }
            for (what, path) in [("cert", &files.cert), ("key", &files.key)] {
                if !path.is_file() {
                    errors.push(format!("tls.certs.{domain:?}.{what}: {} is not a readable file", path.display()));
                }
            }
        }
    }

    fn validate_modules(&self, module_checks: &[(&str, ModuleSectionCheck)], errors: &mut Vec<String>) {
        for (name, table) in &self.modules {
            match module_checks.iter().find(|(known, _)| known == name) {
                Some((_, check)) => errors.extend(check(&format!("modules.{name}"), table)),
                None => errors.push(format!("modules.{name}: no such module")),
            }
        }
    }
}

/// Deserialises `T` from TOML text, collecting unknown keys (with `prefix.` before their path)
/// as errors instead of failing on the first. A type error ends parsing and is returned alone.
pub fn parse_section<T: DeserializeOwned>(prefix: &str, text: &str) -> Result<(T, Vec<String>), ConfigErrors> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
    deserialize_collecting(prefix, deserializer)
}

/// Like [`parse_section`], for an already parsed table (module sections).
pub fn parse_table<T: DeserializeOwned>(prefix: &str, table: &toml::Table) -> Result<(T, Vec<String>), ConfigErrors> {
    deserialize_collecting(prefix, toml::Value::Table(table.clone()))
}

fn deserialize_collecting<'de, T: DeserializeOwned, D>(prefix: &str, d: D) -> Result<(T, Vec<String>), ConfigErrors>
where
    D: serde::Deserializer<'de>,
    D::Error: fmt::Display,
{
    let mut unknown = Vec::new();
    let value = serde_ignored::deserialize(d, |path| {
        let path = path.to_string();
        let full = if prefix.is_empty() { path } else { format!("{prefix}.{path}") };
        unknown.push(format!("{full}: unknown key"));
    })
    .map_err(|e| {
        let msg = e.to_string();
        ConfigErrors(vec![if prefix.is_empty() { msg } else { format!("{prefix}: {msg}") }])
    })?;
    Ok((value, unknown))
}

#[cfg(test)]
mod tests;
