//! XEP-0012 last activity: the server's uptime (§5), and an account's last logout (§4) shown
//! only to contacts with a presence subscription from the account (the same people who see
//! its presence); `seconds='0'` while the account has an available resource. The status text
//! of the last unavailable presence the account sent is returned with the logout time.

use super::roster::Roster;
use crate::module_api::{
    BoxFuture, Element, Flow, Hook, IqHandler, IqKind, IqRequest, IqResult, IqTarget, KeyVal, ModuleDescriptor,
    ModuleError, NS_CLIENT, NoOptions, OutboundPresence, Registrar, ServerHandle, SessionClosed, StanzaError, ToBare,
    Value, check_section, now_micros, ns, priority,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What is stored per account: when it last went offline, and the status it gave.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Logout {
    when: i64,
    status: Option<String>,
}

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "last",
    xeps: &["XEP-0012"],
    depends: &["roster"],
    default_enabled: true,
    check_config: check_section::<NoOptions>,
    build,
};

struct Last {
    server: ServerHandle,
    roster: Arc<Roster>,
    logouts: KeyVal,
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let last = Arc::new(Last { server: r.server(), roster: r.service::<Roster>("roster")?, logouts: r.keyval("last") });
    r.iq(IqKind::Get, IqTarget::Host, ns::LAST, "query", last.clone())?;
    r.iq(IqKind::Get, IqTarget::Bare, ns::LAST, "query", last.clone())?;
    r.iq(IqKind::Get, IqTarget::Account, ns::LAST, "query", last.clone())?;
    r.hook::<SessionClosed>(priority::DEFAULT, last.clone());
    r.hook::<OutboundPresence>(priority::POLICY, last);
    r.feature(ns::LAST);
    Ok(())
}

fn seconds(query_secs: u64) -> Element {
    Element::new("query", ns::LAST).with_attr("seconds", query_secs.to_string())
}

impl Last {
    async fn record(&self, user: &str, status: Option<String>) {
        let logout = Logout { when: now_micros(), status };
        match Value::json(&logout) {
            Ok(value) => {
                if let Err(e) = self.logouts.set(user, Some(&value)).await {
                    tracing::error!(error = %e, "last: storing logout failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "last: encoding logout failed"),
        }
    }
}

impl IqHandler for Last {
    fn handle<'a>(&'a self, iq: &'a IqRequest) -> BoxFuture<'a, IqResult> {
        Box::pin(async move {
            let Some(user) = iq.to.node().map(|n| n.as_str().to_owned()) else {
                return Ok(Some(seconds(self.server.uptime().as_secs())));
            };
            let account = iq.to.bare();
            let own = iq.from.bare() == account;
            let allowed = own
                || match self.roster.get(&account, &iq.from.bare()).await {
                    Ok(item) => item.is_some_and(|i| i.subscription.has_from()),
                    Err(_) => return Err(StanzaError::internal_server_error()),
                };
            if !allowed {
                return Err(StanzaError::forbidden());
            }
            if self.server.sessions_of(&account).iter().any(|s| s.is_available()) {
                return Ok(Some(seconds(0)));
            }
            match self.logouts.get(&user).await {
                Ok(Some(value)) => {
                    let logout: Logout = value.to_json().map_err(|_| StanzaError::internal_server_error())?;
                    let elapsed = (now_micros() - logout.when).max(0) / 1_000_000;
                    let mut query = seconds(elapsed.unsigned_abs());
                    if let Some(status) = logout.status {
                        query = query.with_text(status);
                    }
                    Ok(Some(query))
                }
                Ok(None) => Err(StanzaError::item_not_found()),
                Err(_) => Err(StanzaError::internal_server_error()),
            }
        })
    }
}

impl Hook<SessionClosed> for Last {
    fn call<'a>(&'a self, event: &'a mut SessionClosed) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            // A session that already sent unavailable presence was recorded then, with its status.
            if event.session.is_available()
                && let Some(user) = event.session.jid.node()
            {
                self.record(user.as_str(), None).await;
            }
            Flow::Continue
        })
    }
}

impl Hook<OutboundPresence> for Last {
    fn call<'a>(&'a self, event: &'a mut OutboundPresence) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            let stanza = &event.stanza;
            if stanza.to().is_none()
                && stanza.type_attr() == Some("unavailable")
                && let Some(user) = event.session.jid.node()
            {
                let status = stanza.el().get_child("status", NS_CLIENT).map(Element::text);
                self.record(user.as_str(), status).await;
            }
            Flow::Continue
        })
    }
}
