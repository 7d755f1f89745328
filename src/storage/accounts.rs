//! Accounts: one keyval document per user in the `accounts` store, holding only SCRAM
//! credentials (salted keys per hash, RFC 5802 §3), never the password or anything that
//! would let a reader of the database log in.

use super::{KeyVal, Storage, StorageError, Value};
use crate::stream::sasl::credentials::StoredCredentials;
use jid::BareJid;

/// Account operations failing.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Creating an account that exists.
    #[error("account {0} already exists")]
    Exists(String),
    /// Changing an account that does not exist.
    #[error("account {0} does not exist")]
    NotFound(String),
    /// The JID has no local part or a domain not served here.
    #[error("{0} is not an account JID of a served domain")]
    BadJid(String),
    /// The password cannot be used (empty or not valid after SASLprep).
    #[error("unusable password: {0}")]
    BadPassword(String),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The server is stopping.
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// The account store of all served domains.
#[derive(Clone)]
pub struct Accounts {
    storage: Storage,
    domains: Vec<String>,
    iterations: u32,
}

impl Accounts {
    /// Accounts of `domains`, with `iterations` PBKDF2 rounds for new passwords.
    pub fn new(storage: Storage, domains: Vec<String>, iterations: u32) -> Accounts {
        Accounts { storage, domains, iterations }
    }

    fn store(&self, account: &BareJid) -> Result<(KeyVal, String), AccountError> {
        let domain = account.domain().as_str();
        let node = account.node().ok_or_else(|| AccountError::BadJid(account.to_string()))?;
        if !self.domains.iter().any(|d| d == domain) {
            return Err(AccountError::BadJid(account.to_string()));
        }
        Ok((self.storage.keyval(domain, "accounts"), node.as_str().to_owned()))
    }

    /// Whether the account exists.
    pub async fn exists(&self, account: &BareJid) -> Result<bool, StorageError> {
        match self.store(account) {
            Ok((store, user)) => Ok(store.get(&user).await?.is_some()),
            Err(_) => Ok(false),
        }
    }

    /// The stored SCRAM credentials.
    pub async fn credentials(&self, account: &BareJid) -> Result<Option<StoredCredentials>, AccountError> {
        let Ok((store, user)) = self.store(account) else {
            return Ok(None);
        };
        match store.get(&user).await? {
            Some(value) => Ok(Some(value.to_json::<StoredCredentials>()?)),
            None => Ok(None),
        }
    }

    /// Creates an account.
    pub async fn create(&self, account: &BareJid, password: &str) -> Result<(), AccountError> {
        let (store, user) = self.store(account)?;
        if store.get(&user).await?.is_some() {
            return Err(AccountError::Exists(account.to_string()));
        }
        self.write(&store, &user, password).await
    }

    /// Sets a new password for an existing account.
    pub async fn set_password(&self, account: &BareJid, password: &str) -> Result<(), AccountError> {
        let (store, user) = self.store(account)?;
        if store.get(&user).await?.is_none() {
            return Err(AccountError::NotFound(account.to_string()));
        }
        self.write(&store, &user, password).await
    }

    async fn write(&self, store: &KeyVal, user: &str, password: &str) -> Result<(), AccountError> {
        if password.is_empty() {
            return Err(AccountError::BadPassword("empty".into()));
        }
        let iterations = self.iterations;
        let owned = password.to_owned();
        // PBKDF2 takes milliseconds: keep it off the async worker threads.
        let credentials = tokio::task::spawn_blocking(move || StoredCredentials::derive(&owned, iterations))
            .await
            .map_err(|_| AccountError::ShuttingDown)?
            .map_err(|e| AccountError::BadPassword(e.to_string()))?;
        let value = Value::json(&credentials)?;
        store.set(user, Some(&value)).await?;
        Ok(())
    }

    /// Removes an account and everything stored for it.
    pub async fn delete(&self, account: &BareJid) -> Result<(), AccountError> {
        let (store, user) = self.store(account)?;
        if store.get(&user).await?.is_none() {
            return Err(AccountError::NotFound(account.to_string()));
        }
        self.storage.delete_user(account.domain().as_str(), &user).await?;
        Ok(())
    }

    /// The user names of a domain, sorted.
    pub async fn list(&self, domain: &str) -> Result<Vec<String>, StorageError> {
        self.storage.keyval(domain, "accounts").users().await
    }
}
