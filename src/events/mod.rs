//! The typed event bus: how modules observe and change what the core does.
//!
//! Every event is a Rust type implementing [`Event`]. A module registers a [`Hook`] for an
//! event type at a named [`priority`]; when the core fires the event, hooks run from the highest
//! priority to the lowest (ties broken by module name, so the order never depends on load
//! order), each receiving `&mut` access to the event so that filters, decisions and enrichment
//! all use the same mechanism. A hook returning [`Flow::Handled`] stops the chain. A hook that
//! panics is logged with the event and module name, and the chain goes on: one broken module
//! must not take a connection or the server down.

use futures_util::FutureExt;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed, sendable future, the return type of hooks and IQ handlers.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a hook tells the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Let the following hooks (and the core's default) run.
    Continue,
    /// The event is dealt with: no later hook and no default action runs.
    Handled,
}

/// Named hook priorities. Higher runs first.
pub mod priority {
    /// Security checks that must see everything first (blocking, spoofing checks).
    pub const SECURITY: i32 = 1000;
    /// Policy decisions (privacy, rate limits, hints).
    pub const POLICY: i32 = 800;
    /// Ids and marks that archiving, copying and storing then show (stanza-id).
    pub const STAMP: i32 = 700;
    /// Archiving and copying (MAM, carbons), which must run before delivery consumes the event.
    pub const ARCHIVE: i32 = 600;
    /// Ordinary handling by the module that owns the event.
    pub const DEFAULT: i32 = 500;
    /// Delivery (presence, offline storage).
    pub const DELIVERY: i32 = 200;
    /// Last resort handlers.
    pub const FALLBACK: i32 = 0;
}

/// A typed event. `NAME` appears in logs.
pub trait Event: Send + 'static {
    /// The event's name, for logs and the handler listing.
    const NAME: &'static str;
}

/// A hook for events of type `E`.
pub trait Hook<E: Event>: Send + Sync + 'static {
    /// Handles the event; may change it.
    fn call<'a>(&'a self, event: &'a mut E) -> BoxFuture<'a, Flow>;
}

struct Registered {
    priority: i32,
    module: &'static str,
    hook: Box<dyn Any + Send + Sync>,
}

/// The per-host bus. Built once at startup by the module registrars, then read-only.
#[derive(Default)]
pub struct EventBus {
    chains: HashMap<TypeId, Vec<Registered>>,
    names: HashMap<TypeId, &'static str>,
}

impl EventBus {
    /// Adds a hook. The chain stays sorted by priority (descending), then module name.
    pub fn add<E: Event>(&mut self, priority: i32, module: &'static str, hook: Arc<dyn Hook<E>>) {
        let chain = self.chains.entry(TypeId::of::<E>()).or_default();
        chain.push(Registered { priority, module, hook: Box::new(hook) });
        chain.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.module.cmp(b.module)));
        self.names.insert(TypeId::of::<E>(), E::NAME);
    }

    /// Removes every hook a module registered (module reload).
    pub fn remove_module(&mut self, module: &str) {
        for chain in self.chains.values_mut() {
            chain.retain(|r| r.module != module);
        }
    }

    /// Whether any hook listens for `E`.
    pub fn has<E: Event>(&self) -> bool {
        self.chains.get(&TypeId::of::<E>()).is_some_and(|c| !c.is_empty())
    }

    /// Runs the chain for `event`. Returns `Handled` if some hook handled it.
    pub async fn fire<E: Event>(&self, event: &mut E) -> Flow {
        let Some(chain) = self.chains.get(&TypeId::of::<E>()) else {
            return Flow::Continue;
        };
        for registered in chain {
            let Some(hook) = registered.hook.downcast_ref::<Arc<dyn Hook<E>>>() else {
                continue;
            };
            let outcome = AssertUnwindSafe(hook.call(event)).catch_unwind().await;
            match outcome {
                Ok(Flow::Handled) => return Flow::Handled,
                Ok(Flow::Continue) => {}
                Err(_) => tracing::error!(event = E::NAME, module = registered.module, "hook panicked"),
            }
        }
        Flow::Continue
    }

    /// The handler chains, for diagnostics: (event, [(priority, module)]).
    pub fn describe(&self) -> Vec<(&'static str, Vec<(i32, &'static str)>)> {
        let mut out: Vec<_> = self
            .chains
            .iter()
            .map(|(id, chain)| {
                let name = self.names.get(id).copied().unwrap_or("?");
                (name, chain.iter().map(|r| (r.priority, r.module)).collect())
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Ping(Vec<&'static str>);
    impl Event for Ping {
        const NAME: &'static str = "ping";
    }

    struct Push(&'static str, Flow, Arc<Mutex<u32>>);
    impl Hook<Ping> for Push {
        fn call<'a>(&'a self, event: &'a mut Ping) -> BoxFuture<'a, Flow> {
            Box::pin(async move {
                event.0.push(self.0);
                *self.2.lock().unwrap() += 1;
                if self.0 == "panics" {
                    panic!("deliberate");
                }
                self.1
            })
        }
    }

    #[tokio::test]
    async fn hooks_run_by_priority_then_module_name_and_stop_when_handled() {
        let counter = Arc::new(Mutex::new(0));
        let mut bus = EventBus::default();
        bus.add::<Ping>(priority::DEFAULT, "b", Arc::new(Push("b", Flow::Continue, counter.clone())));
        bus.add::<Ping>(priority::DEFAULT, "a", Arc::new(Push("a", Flow::Continue, counter.clone())));
        bus.add::<Ping>(priority::SECURITY, "z", Arc::new(Push("z", Flow::Continue, counter.clone())));
        bus.add::<Ping>(priority::FALLBACK, "c", Arc::new(Push("c", Flow::Handled, counter.clone())));
        bus.add::<Ping>(priority::FALLBACK, "d", Arc::new(Push("d", Flow::Continue, counter.clone())));
        let mut event = Ping(Vec::new());
        assert_eq!(bus.fire(&mut event).await, Flow::Handled);
        assert_eq!(event.0, vec!["z", "a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_panicking_hook_is_skipped_and_the_chain_goes_on() {
        let counter = Arc::new(Mutex::new(0));
        let mut bus = EventBus::default();
        bus.add::<Ping>(priority::POLICY, "panics", Arc::new(Push("panics", Flow::Continue, counter.clone())));
        bus.add::<Ping>(priority::DEFAULT, "after", Arc::new(Push("after", Flow::Continue, counter.clone())));
        let mut event = Ping(Vec::new());
        assert_eq!(bus.fire(&mut event).await, Flow::Continue);
        assert_eq!(event.0, vec!["panics", "after"]);
        bus.remove_module("after");
        assert_eq!(bus.describe(), vec![("ping", vec![(priority::POLICY, "panics")])]);
    }
}
