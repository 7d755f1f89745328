//! A module's handle to the running server. It holds a weak reference, so modules never keep
//! the server alive, and every call is a no-op once the server is gone.

use super::{DiscoIdentity, HostModules};
use crate::config::Config;
use crate::router::events::AccountDeleted;
use crate::router::stanza::Stanza;
use crate::server::Server;
use crate::session::SessionRef;
use crate::storage::StorageError;
use crate::storage::accounts::AccountError;
use jid::{BareJid, FullJid, Jid};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// See the module docs.
#[derive(Clone)]
pub struct ServerHandle(Weak<Server>);

/// A copy of a domain's disco registry.
#[derive(Clone, Debug, Default)]
pub struct DiscoSnapshot {
    /// Domain features.
    pub features: Vec<&'static str>,
    /// Domain identities.
    pub identities: Vec<DiscoIdentity>,
    /// Features of accounts.
    pub account_features: Vec<&'static str>,
    /// Items (jid, name).
    pub items: Vec<(String, String)>,
}

impl ServerHandle {
    pub(crate) fn new(server: Weak<Server>) -> ServerHandle {
        ServerHandle(server)
    }

    fn get(&self) -> Option<Arc<Server>> {
        self.0.upgrade()
    }

    /// Routes a stanza built by the server or on a user's behalf; `from` must be set.
    pub async fn route(&self, stanza: Stanza) {
        if let Some(server) = self.get() {
            crate::router::route(&server, stanza, None).await;
        }
    }

    /// Delivers a message to a local account or resource by the RFC 6121 §8.5 rules, without
    /// firing [`crate::router::events::MessageToLocal`] again (for the module that handled
    /// that event in order to deliver under its own conditions).
    pub async fn deliver_local(&self, stanza: Stanza, to: &Jid) {
        let Some(server) = self.get() else { return };
        let Some(host) = server.host(to.domain().as_str()) else { return };
        crate::router::delivery::message(&server, host, stanza, to).await;
    }

    /// The sessions of an account on this node.
    pub fn sessions_of(&self, account: &BareJid) -> Vec<SessionRef> {
        self.get().map(|s| s.sessions.of_account(account)).unwrap_or_default()
    }

    /// The session bound to a full JID.
    pub fn session(&self, jid: &FullJid) -> Option<SessionRef> {
        self.get()?.sessions.get(jid)
    }

    /// Whether a domain is served here.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.get().is_some_and(|s| s.host(domain).is_some())
    }

    /// Whether an account exists.
    pub async fn account_exists(&self, account: &BareJid) -> Result<bool, StorageError> {
        match self.get() {
            Some(server) => server.accounts.exists(account).await,
            None => Ok(false),
        }
    }

    /// Creates an account.
    pub async fn create_account(&self, account: &BareJid, password: &str) -> Result<(), AccountError> {
        match self.get() {
            Some(server) => server.accounts.create(account, password).await,
            None => Err(AccountError::ShuttingDown),
        }
    }

    /// Changes an account's password.
    pub async fn set_password(&self, account: &BareJid, password: &str) -> Result<(), AccountError> {
        match self.get() {
            Some(server) => server.accounts.set_password(account, password).await,
            None => Err(AccountError::ShuttingDown),
        }
    }

    /// Removes an account and all its data; its sessions are closed with `not-authorized`
    /// after modules saw [`AccountDeleted`].
    pub async fn delete_account(&self, account: &BareJid) -> Result<(), AccountError> {
        let Some(server) = self.get() else {
            return Err(AccountError::ShuttingDown);
        };
        if let Some(host) = server.host(account.domain().as_str()) {
            host.bus.fire(&mut AccountDeleted { account: account.clone() }).await;
        }
        server.accounts.delete(account).await?;
        for session in server.sessions.of_account(account) {
            session.close("not-authorized");
        }
        Ok(())
    }

    /// Fires an event on a domain's bus (for events that modules raise, such as
    /// [`crate::router::events::InitialPresence`]).
    pub async fn fire<E: crate::events::Event>(&self, domain: &str, event: &mut E) -> crate::events::Flow {
        let Some(server) = self.get() else { return crate::events::Flow::Continue };
        match server.host(domain) {
            Some(host) => host.bus.fire(event).await,
            None => crate::events::Flow::Continue,
        }
    }

    /// Whether the server is still running.
    pub fn is_running(&self) -> bool {
        self.0.strong_count() > 0
    }

    /// Calls `f` with a domain's module tables.
    pub fn with_host<T>(&self, domain: &str, f: impl FnOnce(&HostModules) -> T) -> Option<T> {
        let server = self.get()?;
        server.host(domain).map(f)
    }

    /// The disco registry of a domain.
    pub fn disco(&self, domain: &str) -> DiscoSnapshot {
        self.with_host(domain, |host| DiscoSnapshot {
            features: host.disco.features.iter().copied().collect(),
            identities: host.disco.identities.iter().cloned().collect(),
            account_features: host.disco.account_features.iter().copied().collect(),
            items: host.disco.items.iter().cloned().collect(),
        })
        .unwrap_or_default()
    }

    /// How long the server has been running.
    pub fn uptime(&self) -> Duration {
        self.get().map(|s| s.started.elapsed()).unwrap_or_default()
    }

    /// The configuration in force.
    pub fn config(&self) -> Option<Arc<Config>> {
        self.get().map(|s| s.config.clone())
    }
}
