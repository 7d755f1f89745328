//! XEP-0054 vcard-temp: each account stores one vCard (the `vcard` keyval store, as XML);
//! anyone may read it (§3.2), only the account may change it (§3.3).

use crate::module_api::{
    BoxFuture, Element, IqHandler, IqKind, IqRequest, IqResult, IqTarget, KeyVal, ModuleDescriptor, ModuleError,
    NoOptions, Registrar, ServerHandle, StanzaError, ToBare, Value, check_section, ns,
};
use std::sync::Arc;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "vcard",
    xeps: &["XEP-0054"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<NoOptions>,
    build,
};

struct VCards {
    store: KeyVal,
    server: ServerHandle,
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let vcards = Arc::new(VCards { store: r.keyval("vcard"), server: r.server() });
    r.iq(IqKind::Get, IqTarget::Account, ns::VCARD, "vCard", vcards.clone())?;
    r.iq(IqKind::Get, IqTarget::Bare, ns::VCARD, "vCard", vcards.clone())?;
    r.iq(IqKind::Set, IqTarget::Account, ns::VCARD, "vCard", vcards.clone())?;
    r.iq(IqKind::Get, IqTarget::Host, ns::VCARD, "vCard", vcards)?;
    r.feature(ns::VCARD);
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "vcard storage failed");
    StanzaError::internal_server_error()
}

impl IqHandler for VCards {
    fn handle<'a>(&'a self, iq: &'a IqRequest) -> BoxFuture<'a, IqResult> {
        Box::pin(async move {
            let Some(user) = iq.to.node().map(|n| n.as_str().to_owned()) else {
                // The server has no vCard of its own.
                return Ok(Some(Element::new("vCard", ns::VCARD)));
            };
            if iq.kind == IqKind::Set {
                let value = Value::xml(iq.payload.to_bytes(""));
                self.store.set(&user, Some(&value)).await.map_err(internal)?;
                return Ok(None);
            }
            if !self.server.account_exists(&iq.to.bare()).await.map_err(internal)? {
                return Err(StanzaError::service_unavailable());
            }
            match self.store.get(&user).await.map_err(internal)? {
                Some(value) => Element::parse(&value.data).map(Some).map_err(internal),
                None => Ok(Some(Element::new("vCard", ns::VCARD))),
            }
        })
    }
}
