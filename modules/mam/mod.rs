//! Message archive management (XEP-0313, `urn:xmpp:mam:2`) for accounts.
//!
//! Archiving: a chat or normal message with a body is written to the `mam` archive of each
//! local account on either end whose preferences (§6) ask for it: the recipient's on
//! [`MessageToLocal`] (keyed by the stanza-id the inbox stamped, so both stores name it the
//! same), the sender's on [`StanzaFromClient`]. Writes go through the group commit, so an
//! archived message is durable before the sender's acknowledgement. The server default is
//! `never`: nothing is kept once delivered unless the user opts in (`roster` or `always`).
//!
//! Queries (§4) by `with`, `start`, `end` and, with `#extended`, `before-id`, `after-id` and
//! `ids`, paged by archive id with RSM in both directions, are answered from the account's
//! archive to its own clients only. An expiry job deletes items older than `max_retention`.

mod prefs;
pub mod query;
#[cfg(test)]
mod tests;

use super::roster::Roster;
use crate::module_api::{
    Archive, ArchiveQuery, BareJid, BoxFuture, ConfigDuration, ErrorType, Flow, Hook, IqHandler, IqKind, IqRequest,
    IqResult, IqTarget, Jid, KeyVal, MessageToLocal, ModuleDescriptor, ModuleError, NewItem, PeriodicTask, Registrar,
    SessionRef, Stanza, StanzaError, StanzaFromClient, StanzaKind, StorageError, SyncIq, ToBare, Value, check_section,
    expire_archive, now_micros, priority, random_id, stanza_id_by,
};
use prefs::{Decision, DefaultRule, NS_MAM, Prefs};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "mam",
    xeps: &["XEP-0313", "XEP-0059", "XEP-0297"],
    depends: &["roster"],
    default_enabled: true,
    check_config: check_section::<Options>,
    build,
};

/// `[modules.mam]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct Options {
    /// The archiving default of accounts that set no preferences: "never", "roster" or
    /// "always".
    pub default: String,
    /// Archived messages older than this are deleted, whatever the users' preferences.
    pub max_retention: ConfigDuration,
    /// How often the expiry job runs.
    pub expiry_interval: ConfigDuration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            default: "never".into(),
            max_retention: ConfigDuration(Duration::from_secs(90 * 86_400)),
            expiry_interval: ConfigDuration(Duration::from_secs(3600)),
        }
    }
}

/// Preferences kept in memory after the first lookup (most accounts never set any).
const PREFS_CACHE: usize = 100_000;

struct Mam {
    archive: Archive,
    prefs: KeyVal,
    roster: Arc<Roster>,
    default: DefaultRule,
    max_retention: Duration,
    cache: Mutex<HashMap<String, Arc<Prefs>>>,
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let options: Options = r.config()?;
    let default = DefaultRule::parse(&options.default)
        .ok_or_else(|| ModuleError::Config("modules.mam.default must be never, roster or always".into()))?;
    let mam = Arc::new(Mam {
        archive: r.archive("mam"),
        prefs: r.keyval("mam_prefs"),
        roster: r.service::<Roster>("roster")?,
        default,
        max_retention: options.max_retention.get(),
        cache: Mutex::new(HashMap::new()),
    });
    r.hook::<MessageToLocal>(priority::ARCHIVE, mam.clone());
    r.hook::<StanzaFromClient>(priority::ARCHIVE, mam.clone());
    for kind in [IqKind::Get, IqKind::Set] {
        r.iq(kind, IqTarget::Account, NS_MAM, "query", mam.clone())?;
        r.iq(kind, IqTarget::Account, NS_MAM, "prefs", mam.clone())?;
        // §8: an account's archive is its own.
        let forbidden = Arc::new(SyncIq(|_: &IqRequest| Err(StanzaError::new(ErrorType::Auth, "forbidden"))));
        r.iq(kind, IqTarget::Bare, NS_MAM, "query", forbidden.clone())?;
        r.iq(kind, IqTarget::Bare, NS_MAM, "prefs", forbidden)?;
    }
    r.account_feature(NS_MAM);
    r.account_feature("urn:xmpp:mam:2#extended");
    r.every(options.expiry_interval.get(), mam);
    Ok(())
}

/// The answer to a failed archive read: `item-not-found` for an unknown id (XEP-0313 §4.3),
/// otherwise logged and `internal-server-error`. Room archives answer the same way.
pub fn internal(e: StorageError) -> StanzaError {
    match e {
        StorageError::ItemNotFound(id) => {
            StanzaError::new(ErrorType::Cancel, "item-not-found").with_text(format!("no archived message '{id}'"))
        }
        e => {
            tracing::error!(error = %e, "mam: storage failed");
            StanzaError::internal_server_error()
        }
    }
}

/// Whether a message is archived at all (§5.1.1: messages with a body; no hints against it).
fn archivable(stanza: &Stanza) -> bool {
    let el = stanza.el();
    stanza.kind == StanzaKind::Message
        && matches!(stanza.type_attr(), None | Some("chat" | "normal"))
        && el.get_child("body", crate::module_api::NS_CLIENT).is_some()
        && !el.has_child("no-store", "urn:xmpp:hints")
        && !el.has_child("no-permanent-store", "urn:xmpp:hints")
}

impl Mam {
    async fn prefs_of(&self, user: &str) -> Result<Arc<Prefs>, StorageError> {
        if let Some(prefs) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(user) {
            return Ok(prefs.clone());
        }
        let prefs = match self.prefs.get(user).await? {
            Some(value) => value.to_json::<Prefs>()?,
            None => Prefs::with_default(self.default),
        };
        let prefs = Arc::new(prefs);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= PREFS_CACHE {
            cache.clear();
        }
        cache.insert(user.to_owned(), prefs.clone());
        Ok(prefs)
    }

    /// Archives `stanza` for `account` if its preferences ask for it.
    async fn archive_for(&self, account: &BareJid, with: &BareJid, key: Option<String>, stanza: &Stanza) {
        let Some(user) = account.node().map(|n| n.as_str()) else { return };
        let wanted = match self.prefs_of(user).await {
            Ok(prefs) => match prefs.decide(with.as_str()) {
                Decision::Yes => true,
                Decision::No => false,
                Decision::IfInRoster => self.roster.get(account, with).await.is_ok_and(|item| item.is_some()),
            },
            Err(e) => {
                tracing::error!(error = %e, "mam: reading preferences failed");
                false
            }
        };
        if wanted {
            let value = Value::xml(stanza.to_document());
            let item = NewItem {
                key: Some(key.unwrap_or_else(|| random_id(15))),
                when: now_micros(),
                with: with.to_string(),
                value,
            };
            self.archive.append_queued(user, item).await;
        }
    }

    async fn query(&self, iq: &IqRequest, session: &SessionRef) -> IqResult {
        let user = iq.to.node().map(|n| n.as_str().to_owned()).unwrap_or_default();
        let query = query::parse(&iq.payload)?;
        // Archive writes already queued (the client's own last messages among them) are part
        // of what the client expects to find.
        self.archive.commits().flush().await;
        let page = self.archive.find(&user, &query.archive).await.map_err(internal)?;
        let count_query =
            ArchiveQuery { after: None, before: None, limit: None, reverse: false, ..query.archive.clone() };
        let count = self.archive.count(&user, &count_query).await.map_err(internal)?;
        for item in &page.items {
            let (archive, to) = (Jid::from(iq.to.bare()), Jid::from(session.jid.clone()));
            if let Some(result) = query::result_message(item, query.query_id.as_deref(), &archive, &to) {
                session.send(result);
            }
        }
        let first_last = page.items.first().zip(page.items.last()).map(|(f, l)| (f.key.as_str(), l.key.as_str()));
        Ok(Some(query::fin(first_last, count, page.complete)))
    }

    async fn set_prefs(&self, iq: &IqRequest) -> IqResult {
        let user = iq.to.node().map(|n| n.as_str().to_owned()).unwrap_or_default();
        let prefs = Prefs::from_element(&iq.payload)?;
        self.prefs.set(&user, Some(&Value::json(&prefs).map_err(internal)?)).await.map_err(internal)?;
        let element = prefs.to_element();
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(user, Arc::new(prefs));
        Ok(Some(element))
    }

    /// Deletes archived messages older than `max_retention` as of `now` (Unix microseconds).
    async fn expire(&self, now: i64) {
        expire_archive(&self.archive, now, self.max_retention).await;
    }
}

/// One `<result/>` message for a query (§4.2).
impl Hook<MessageToLocal> for Mam {
    fn call<'a>(&'a self, event: &'a mut MessageToLocal) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            if event.redelivery || !archivable(&event.stanza) {
                return Flow::Continue;
            }
            let Some(from) = event.stanza.from_ref().map(|f| f.bare()) else { return Flow::Continue };
            let account = event.to.bare();
            let key = stanza_id_by(&event.stanza, account.as_str()).map(str::to_owned);
            self.archive_for(&account, &from, key, &event.stanza).await;
            Flow::Continue
        })
    }
}

impl Hook<StanzaFromClient> for Mam {
    fn call<'a>(&'a self, event: &'a mut StanzaFromClient) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            if !archivable(&event.stanza) {
                return Flow::Continue;
            }
            let Some(to) = event.stanza.to_ref().map(|t| t.bare()) else { return Flow::Continue };
            let account = event.session.jid.bare();
            if to != account {
                self.archive_for(&account, &to, None, &event.stanza).await;
            }
            Flow::Continue
        })
    }
}

impl IqHandler for Mam {
    fn handle<'a>(&'a self, iq: &'a IqRequest) -> BoxFuture<'a, IqResult> {
        Box::pin(async move {
            match (iq.payload.name.as_str(), iq.kind) {
                ("query", IqKind::Get) => Ok(Some(query::form())),
                ("query", IqKind::Set) => {
                    let Some(session) = &iq.session else { return Err(StanzaError::bad_request()) };
                    self.query(iq, session).await
                }
                ("prefs", IqKind::Get) => {
                    let user = iq.to.node().map(|n| n.as_str().to_owned()).unwrap_or_default();
                    Ok(Some(self.prefs_of(&user).await.map_err(internal)?.to_element()))
                }
                _ => self.set_prefs(iq).await,
            }
        })
    }
}

impl PeriodicTask for Mam {
    fn run(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.expire(now_micros()))
    }
}
