//! What a module's `build` registers, and the per-domain tables it registers into.

use super::{ModuleError, ServerHandle};
use crate::events::{Event, EventBus, Hook};
use crate::router::iq::{IqHandler, IqKey, IqKind, IqTarget};
use crate::storage::{Archive, KeyVal, Map, Storage};
use crate::xml::Element;
use std::any::{Any, TypeId};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A disco identity (XEP-0030 §3.1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DiscoIdentity {
    /// Category, such as `server`.
    pub category: &'static str,
    /// Type, such as `im`.
    pub kind: &'static str,
    /// Human-readable name.
    pub name: &'static str,
}

/// Disco data registered by modules, read by the disco module (never built by asking modules).
#[derive(Default)]
pub struct DiscoRegistry {
    /// Features of the domain itself.
    pub features: BTreeSet<&'static str>,
    /// Identities of the domain itself.
    pub identities: BTreeSet<DiscoIdentity>,
    /// Features of every account's bare JID (for example PEP or MAM).
    pub account_features: BTreeSet<&'static str>,
    /// Items of the domain (components and services).
    pub items: BTreeSet<(String, String)>,
}

/// When a stream feature is offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureStage {
    /// After TLS, before authentication (e.g. in-band registration).
    PreAuth,
    /// After authentication, with resource binding.
    Bound,
}

/// Housekeeping run by [`Registrar::every`].
pub trait PeriodicTask: Send + Sync + 'static {
    /// One run.
    fn run(&self) -> crate::events::BoxFuture<'_, ()>;
}

/// A service with a domain of its own (XEP-0045 rooms on `conference.<domain>`): the router
/// hands it every stanza addressed to that domain or to a JID under it, and it answers them
/// itself, errors included.
pub trait Component: Send + Sync + 'static {
    /// Handles one stanza addressed to the component.
    fn stanza(&self, stanza: crate::router::stanza::Stanza) -> crate::events::BoxFuture<'_, ()>;
}

/// Produces a stream feature element when features are offered.
pub type StreamFeatureFn = Arc<dyn Fn() -> Element + Send + Sync>;

/// Everything registered for one domain.
#[derive(Default)]
pub struct HostModules {
    /// The typed event bus.
    pub bus: EventBus,
    /// IQ handlers.
    pub iq: HashMap<IqKey, (&'static str, Arc<dyn IqHandler>)>,
    /// Disco features, identities and items.
    pub disco: DiscoRegistry,
    /// Stream features offered by modules, computed when offered.
    pub stream_features: Vec<(FeatureStage, StreamFeatureFn)>,
    services: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    /// Names of the modules loaded, in load order.
    pub loaded: Vec<&'static str>,
    /// Components registered by this domain's modules, by their domain.
    pub components: Vec<(String, Arc<dyn Component>)>,
}

impl HostModules {
    /// A shared service provided by a module (see [`Registrar::provide`]).
    pub fn service<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.services.get(&TypeId::of::<T>())?.clone().downcast::<T>().ok()
    }
}

/// The registration surface handed to a module's `build`.
pub struct Registrar<'a> {
    module: &'static str,
    domain: &'a str,
    host: &'a mut HostModules,
    server: ServerHandle,
    storage: &'a Storage,
    section: toml::Table,
}

impl<'a> Registrar<'a> {
    pub(crate) fn new(
        module: &'static str,
        domain: &'a str,
        host: &'a mut HostModules,
        server: ServerHandle,
        storage: &'a Storage,
        section: toml::Table,
    ) -> Registrar<'a> {
        Registrar { module, domain, host, server, storage, section }
    }

    /// The domain this instance serves.
    pub fn domain(&self) -> &str {
        self.domain
    }

    /// A handle to the running server (routing, sessions, accounts).
    pub fn server(&self) -> ServerHandle {
        self.server.clone()
    }

    /// The module's typed options from `[modules.<name>]`; defaults when absent.
    pub fn config<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, ModuleError> {
        let mut table = self.section.clone();
        table.remove("enabled");
        let path = format!("modules.{}", self.module);
        crate::config::parse_table::<T>(&path, &table)
            .map(|(value, _)| value)
            .map_err(|e| ModuleError::Config(e.0.join("; ")))
    }

    /// Adds an event hook at a priority from [`crate::events::priority`].
    pub fn hook<E: Event>(&mut self, priority: i32, hook: Arc<dyn Hook<E>>) {
        self.host.bus.add(priority, self.module, hook);
    }

    /// Adds an IQ handler; a second handler for the same key is an error.
    pub fn iq(
        &mut self,
        kind: IqKind,
        target: IqTarget,
        ns: &'static str,
        name: &'static str,
        handler: Arc<dyn IqHandler>,
    ) -> Result<(), ModuleError> {
        let key = IqKey { kind, target, ns, name };
        if let Some((other, _)) = self.host.iq.get(&key) {
            return Err(ModuleError::DuplicateIq(format!("{key:?} (already from {other})")));
        }
        self.host.iq.insert(key, (self.module, handler));
        Ok(())
    }

    /// Adds a disco feature of the domain.
    pub fn feature(&mut self, var: &'static str) {
        self.host.disco.features.insert(var);
    }

    /// Adds a disco feature of every account.
    pub fn account_feature(&mut self, var: &'static str) {
        self.host.disco.account_features.insert(var);
    }

    /// Adds a disco identity of the domain.
    pub fn identity(&mut self, category: &'static str, kind: &'static str, name: &'static str) {
        self.host.disco.identities.insert(DiscoIdentity { category, kind, name });
    }

    /// Offers a stream feature at a stage of negotiation.
    pub fn stream_feature(&mut self, stage: FeatureStage, feature: Element) {
        self.host.stream_features.push((stage, Arc::new(move || feature.clone())));
    }

    /// Offers a stream feature computed each time features are sent.
    pub fn stream_feature_with(&mut self, stage: FeatureStage, feature: StreamFeatureFn) {
        self.host.stream_features.push((stage, feature));
    }

    /// The keyval store `store` of this domain.
    pub fn keyval(&self, store: &str) -> KeyVal {
        self.storage.keyval(self.domain, store)
    }

    /// The map store `store` of this domain.
    pub fn map(&self, store: &str) -> Map {
        self.storage.map(self.domain, store)
    }

    /// The archive store `store` of this domain.
    pub fn archive(&self, store: &str) -> Archive {
        self.storage.archive(self.domain, store)
    }

    /// The archive store `store` of this domain, kept as a queue (see `Storage::queue`).
    pub fn queue(&self, store: &str) -> Archive {
        self.storage.queue(self.domain, store)
    }

    /// Runs `task` every `interval` (first run after one interval) for as long as the server
    /// runs: expiry jobs and other housekeeping.
    pub fn every(&mut self, interval: std::time::Duration, task: Arc<dyn PeriodicTask>) {
        let server = self.server.clone();
        let module = self.module;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if !server.is_running() {
                    return;
                }
                tracing::debug!(module, "running periodic task");
                task.run().await;
            }
        });
    }

    /// Serves `domain` (a subdomain such as `conference.example.org`) by `component`, and lists
    /// it among the domain's disco items (XEP-0030 §4) under `name`.
    pub fn component(&mut self, domain: String, name: &str, component: Arc<dyn Component>) {
        self.host.disco.items.insert((domain.clone(), name.to_owned()));
        self.host.components.push((domain, component));
    }

    /// Shares a service object with other modules of this domain.
    pub fn provide<T: Send + Sync + 'static>(&mut self, service: Arc<T>) {
        self.host.services.insert(TypeId::of::<T>(), service);
    }

    /// A service another module provided; `Err` names the module expected to provide it.
    pub fn service<T: Send + Sync + 'static>(&self, from: &'static str) -> Result<Arc<T>, ModuleError> {
        self.host.service::<T>().ok_or(ModuleError::MissingDependency(from))
    }
}
