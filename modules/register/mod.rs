//! XEP-0077 in-band registration: account creation before login (off unless
//! `allow_registration = true`), password change and account removal for a logged-in user
//! (always on).
//!
//! Removal (§3.2): the result is sent to the requesting session first, then the account and
//! all its data are deleted and its sessions closed, so the client sees the result before the
//! stream ends.

use crate::module_api::{
    AccountError, BareJid, BoxFuture, Element, FeatureStage, IqHandler, IqKind, IqRequest, IqResult, IqTarget,
    ModuleDescriptor, ModuleError, NS_CLIENT, Registrar, ServerHandle, StanzaError, ToBare, check_section, ns,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "register",
    xeps: &["XEP-0077"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<Options>,
    build,
};

/// `[modules.register]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Options {
    /// Let anyone create an account before logging in.
    pub allow_registration: bool,
}

struct Register {
    server: ServerHandle,
    domain: String,
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let options: Options = r.config()?;
    let register = Arc::new(Register { server: r.server(), domain: r.domain().to_owned() });
    if options.allow_registration {
        r.iq(IqKind::Get, IqTarget::PreAuth, ns::REGISTER, "query", register.clone())?;
        r.iq(IqKind::Set, IqTarget::PreAuth, ns::REGISTER, "query", register.clone())?;
        r.stream_feature(FeatureStage::PreAuth, Element::new("register", ns::REGISTER_FEATURE));
    }
    // XEP-0077 §3.3 addresses password changes to the domain; clients also use no 'to'.
    for target in [IqTarget::Account, IqTarget::Host] {
        r.iq(IqKind::Get, target, ns::REGISTER, "query", register.clone())?;
        r.iq(IqKind::Set, target, ns::REGISTER, "query", register.clone())?;
    }
    r.feature(ns::REGISTER);
    Ok(())
}

fn field(query: &Element, name: &str) -> Option<String> {
    query.get_child(name, ns::REGISTER).map(Element::text).filter(|t| !t.is_empty())
}

fn account_error(e: AccountError) -> StanzaError {
    match e {
        AccountError::Exists(_) => StanzaError::conflict(),
        AccountError::NotFound(_) => StanzaError::item_not_found(),
        AccountError::BadJid(_) | AccountError::BadPassword(_) => StanzaError::not_acceptable(),
        other => {
            tracing::error!(error = %other, "registration failed");
            StanzaError::internal_server_error()
        }
    }
}

impl IqHandler for Register {
    fn handle<'a>(&'a self, iq: &'a IqRequest) -> BoxFuture<'a, IqResult> {
        Box::pin(async move {
            let logged_in = iq.session.is_some();
            match (iq.kind, logged_in) {
                (IqKind::Get, false) => Ok(Some(form(None))),
                (IqKind::Get, true) => Ok(Some(form(iq.from.node().map(|n| n.as_str())))),
                (IqKind::Set, false) => self.create(&iq.payload).await,
                (IqKind::Set, true) if iq.payload.has_child("remove", ns::REGISTER) => self.remove(iq).await,
                (IqKind::Set, true) => self.change_password(iq).await,
            }
        })
    }
}

/// The registration form (§3.1), or for a logged-in user the `<registered/>` answer (§3.2).
fn form(registered_as: Option<&str>) -> Element {
    let mut query = Element::new("query", ns::REGISTER);
    match registered_as {
        Some(user) => {
            query.push_child(Element::new("registered", ns::REGISTER));
            query.push_child(Element::new("username", ns::REGISTER).with_text(user));
            query.push_child(Element::new("password", ns::REGISTER));
        }
        None => {
            query.push_child(Element::new("instructions", ns::REGISTER).with_text("Choose a username and password."));
            query.push_child(Element::new("username", ns::REGISTER));
            query.push_child(Element::new("password", ns::REGISTER));
        }
    }
    query
}

impl Register {
    async fn create(&self, query: &Element) -> IqResult {
        let (Some(user), Some(password)) = (field(query, "username"), field(query, "password")) else {
            return Err(StanzaError::not_acceptable().with_text("username and password are required"));
        };
        let account = BareJid::new(&format!("{user}@{}", self.domain)).map_err(|_| StanzaError::jid_malformed())?;
        self.server.create_account(&account, &password).await.map_err(account_error)?;
        tracing::info!(%account, "account registered in-band");
        Ok(None)
    }

    async fn change_password(&self, iq: &IqRequest) -> IqResult {
        let account = iq.from.bare();
        let Some(password) = field(&iq.payload, "password") else {
            return Err(StanzaError::bad_request().with_text("password is required"));
        };
        if let Some(user) = field(&iq.payload, "username")
            && Some(user.as_str()) != account.node().map(|n| n.as_str())
        {
            return Err(StanzaError::bad_request().with_text("username does not match the account"));
        }
        self.server.set_password(&account, &password).await.map_err(account_error)?;
        Ok(None)
    }

    async fn remove(&self, iq: &IqRequest) -> IqResult {
        let account = iq.from.bare();
        if let Some(session) = &iq.session {
            let mut result =
                Element::new("iq", NS_CLIENT).with_attr("type", "result").with_attr("to", session.jid.as_str());
            if let Some(id) = iq.stanza.id() {
                result.set_attr("id", id);
            }
            session.send_element(result);
        }
        self.server.delete_account(&account).await.map_err(account_error)?;
        tracing::info!(%account, "account removed in-band");
        Ok(None)
    }
}
