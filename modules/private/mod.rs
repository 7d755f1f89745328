//! XEP-0049 private XML storage: an account stores elements keyed by name and namespace
//! (the `private` map store) and only it can read them back. A get for an element never
//! stored returns it empty (§3).

use crate::module_api::{
    BoxFuture, Element, ErrorType, IqHandler, IqKind, IqRequest, IqResult, IqTarget, Map, ModuleDescriptor,
    ModuleError, NoOptions, Registrar, StanzaError, SyncIq, Value, check_section, ns,
};
use std::sync::Arc;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "private",
    xeps: &["XEP-0049"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<NoOptions>,
    build,
};

struct Private {
    store: Map,
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let private = Arc::new(Private { store: r.map("private") });
    r.iq(IqKind::Get, IqTarget::Account, ns::PRIVATE, "query", private.clone())?;
    r.iq(IqKind::Set, IqTarget::Account, ns::PRIVATE, "query", private)?;
    // XEP-0049 §4: another account's storage is off limits.
    let forbidden = Arc::new(SyncIq(|_: &IqRequest| Err(StanzaError::new(ErrorType::Cancel, "forbidden"))));
    r.iq(IqKind::Get, IqTarget::Bare, ns::PRIVATE, "query", forbidden.clone())?;
    r.iq(IqKind::Set, IqTarget::Bare, ns::PRIVATE, "query", forbidden)?;
    r.feature(ns::PRIVATE);
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "private storage failed");
    StanzaError::internal_server_error()
}

impl IqHandler for Private {
    fn handle<'a>(&'a self, iq: &'a IqRequest) -> BoxFuture<'a, IqResult> {
        Box::pin(async move {
            let user = iq.from.node().map(|n| n.as_str().to_owned()).unwrap_or_default();
            let mut children = iq.payload.child_elements();
            let (Some(child), None) = (children.next(), children.next()) else {
                return Err(StanzaError::not_acceptable().with_text("exactly one child element is required"));
            };
            // §3: the jabber: namespaces are reserved and cannot be stored.
            if child.ns.starts_with("jabber:") || child.ns.is_empty() {
                return Err(StanzaError::not_acceptable());
            }
            let key = format!("{}:{}", child.name, child.ns);
            let mut query = Element::new("query", ns::PRIVATE);
            match iq.kind {
                IqKind::Set => {
                    let value = Value::xml(child.to_bytes(""));
                    self.store.set(&user, &key, Some(&value)).await.map_err(internal)?;
                    Ok(None)
                }
                IqKind::Get => {
                    let stored = self.store.get(&user, &key).await.map_err(internal)?;
                    let element = match stored {
                        Some(value) => Element::parse(&value.data).map_err(internal)?,
                        None => Element::new(&child.name, &child.ns),
                    };
                    query.push_child(element);
                    Ok(Some(query))
                }
            }
        })
    }
}
