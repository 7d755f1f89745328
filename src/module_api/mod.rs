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

mod datetime;
pub mod ns;
mod registrar;
mod server_handle;

pub use datetime::{datetime, parse_datetime};

pub use crate::config::{ByteSize, ConfigDuration, ModuleSectionCheck};
pub use crate::events::{BoxFuture, Event, EventBus, Flow, Hook, priority};
pub use crate::router::bare::ToBare;
pub use crate::router::error::{ErrorType, StanzaError};
pub use crate::router::events::*;
pub use crate::router::iq::reply as iq_reply;
pub use crate::router::iq::{IqHandler, IqKind, IqRequest, IqResult, IqTarget, SyncIq};
pub use crate::router::stanza::{NS_CLIENT, Stanza, StanzaKind};
pub use crate::session::{PresenceState, SessionRef};
/// Opening a database directly is for module unit tests only; modules get their stores from
/// the [`Registrar`].
#[cfg(test)]
pub use crate::storage::Storage;
pub use crate::storage::accounts::AccountError;
pub use crate::storage::now_micros;
pub use crate::storage::{
    Archive, ArchiveQuery, ArchivedItem, Entries, KeyVal, Map, NewItem, StorageError, Value, ValueKind,
};
pub use crate::xml::{Element, Node};
pub use jid::{BareJid, FullJid, Jid};
pub use registrar::{
    Component, DiscoIdentity, DiscoRegistry, FeatureStage, HostModules, PeriodicTask, Registrar, StreamFeatureFn,
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

/// Deletes the items of `store` older than `keep` as of `now` (Unix microseconds; a parameter
/// so that tests set the clock), logging what it did: the body of modules' expiry jobs.
pub async fn expire_archive(store: &Archive, now: i64, keep: std::time::Duration) {
    let cutoff = now.saturating_sub(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX));
    match store.delete_older_than(cutoff).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, store = store.store(), domain = store.host(), "expired"),
        Err(e) => tracing::error!(error = %e, store = store.store(), domain = store.host(), "expiry failed"),
    }
}

/// The id of the message's `<stanza-id/>` (XEP-0359) given by `by` (an account or room).
pub fn stanza_id_by<'a>(stanza: &'a Stanza, by: &str) -> Option<&'a str> {
    stanza
        .el()
        .child_elements()
        .find(|c| c.is("stanza-id", ns::SID) && c.attr("by") == Some(by))
        .and_then(|c| c.attr("id"))
}

/// Adds `<stanza-id by=… id=…/>` (XEP-0359) to a message.
pub fn add_stanza_id(stanza: &mut Stanza, by: &str, id: &str) {
    stanza.el_mut().push_child(Element::new("stanza-id", ns::SID).with_attr("by", by).with_attr("id", id));
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
