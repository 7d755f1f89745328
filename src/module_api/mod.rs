//! The only surface feature modules use.
//!
//! A module is a [`ModuleDescriptor`]: a name (also its folder, its `[modules.<name>]` config
//! table and its default store name), the specifications it implements, the modules it needs,
//! and a `build` function. `build` runs once per served domain and only *registers*, through
//! the [`Registrar`]: event hooks at named priorities, IQ handlers keyed by
//! (type, target, namespace, element), disco features and identities, stream features,
//! storage handles and shared services. The core then does the running. Everything a module
//! registered is recorded under its name, so dropping a module drops all of it.
#![warn(missing_docs)]

pub mod ns;
mod registrar;
mod server_handle;

pub use crate::config::{ByteSize, ConfigDuration, ModuleSectionCheck};
pub use crate::events::{BoxFuture, Event, EventBus, Flow, Hook, priority};
pub use crate::router::error::{ErrorType, StanzaError};
pub use crate::router::events::*;
pub use crate::router::iq::{IqHandler, IqKind, IqRequest, IqResult, IqTarget, SyncIq};
pub use crate::router::stanza::{NS_CLIENT, Stanza, StanzaKind};
pub use crate::session::{PresenceState, SessionRef};
/// Opening a database directly is for module unit tests only; modules get their stores from
/// the [`Registrar`].
#[cfg(test)]
pub use crate::storage::Storage;
pub use crate::storage::accounts::AccountError;
pub use crate::storage::{Archive, ArchiveQuery, KeyVal, Map, NewItem, StorageError, Value, ValueKind};
pub use crate::xml::{Element, Node};
pub use jid::{BareJid, FullJid, Jid};
pub use registrar::{
    DiscoIdentity, DiscoRegistry, FeatureStage, HostModules, PeriodicTask, Registrar, StreamFeatureFn,
};
pub use server_handle::ServerHandle;

/// A feature module, as listed in `modules/mod.rs`.
pub struct ModuleDescriptor {
    /// Folder name, config table name (`[modules.<name>]`) and default store name.
    pub name: &'static str,
    /// The specifications it implements, such as `"XEP-0030"` or `"RFC 6121"`; each has a
    /// record in `xeps/`.
    pub xeps: &'static [&'static str],
    /// Modules that must be loaded before this one.
    pub depends: &'static [&'static str],
    /// Whether it is loaded when its config section is absent. `enabled = false` in the
    /// section turns any module off.
    pub default_enabled: bool,
    /// Checks the module's config section; returns the problems with their paths.
    pub check_config: fn(&str, &toml::Table) -> Vec<String>,
    /// Registers the module's hooks and handlers for one domain.
    pub build: fn(&mut Registrar<'_>) -> Result<(), ModuleError>,
}

/// Why a module could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// A configuration problem.
    #[error("configuration: {0}")]
    Config(String),
    /// Two modules claimed the same IQ key.
    #[error("IQ handler for {0} is registered twice")]
    DuplicateIq(String),
    /// A dependency is not loaded.
    #[error("needs module {0}, which is not enabled")]
    MissingDependency(&'static str),
}

/// Checks a module section against the module's typed config `T`: unknown keys and type
/// errors, each with its path. The `enabled` key is common to all modules.
pub fn check_section<T: serde::de::DeserializeOwned>(path: &str, table: &toml::Table) -> Vec<String> {
    let mut table = table.clone();
    if let Some(enabled) = table.remove("enabled")
        && !enabled.is_bool()
    {
        return vec![format!("{path}.enabled: must be true or false")];
    }
    match crate::config::parse_table::<T>(path, &table) {
        Ok((_, unknown)) => unknown,
        Err(errors) => errors.0,
    }
}

/// Config type for modules without options.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct NoOptions {}

/// The current time in microseconds since the Unix epoch (storage timestamps).
pub fn now_micros() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}

/// A random identifier (resources, stanza ids): `len` bytes from the OS CSPRNG, URL-safe base64.
pub fn random_id(len: usize) -> String {
    use base64::Engine;
    let mut bytes = vec![0u8; len];
    // The OS generator failing is not recoverable in any meaningful way; an all-zero id would
    // still be unique enough for a resource name in that case, and the server logs it.
    if getrandom::fill(&mut bytes).is_err() {
        tracing::error!("the operating system's random generator failed");
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Formats microseconds since the Unix epoch as an XEP-0082 DateTime in UTC
/// (`2026-11-23T10:00:00.123Z`).
pub fn datetime(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let millis = micros.rem_euclid(1_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's published algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn datetime_formats_known_instants() {
        assert_eq!(super::datetime(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::datetime(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(super::datetime(1_795_435_200_123_456), "2026-11-23T12:00:00.123Z");
    }
}
