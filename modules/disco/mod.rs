//! Service discovery (XEP-0030) and the server's entity capabilities (XEP-0115).
//!
//! disco#info on the domain lists the identities and features that modules registered (the
//! registry is data, never built by asking modules); disco#info on an account's bare JID,
//! asked by the account itself or anyone, gives the `account/registered` identity and the
//! account features. disco#items on the domain lists registered items. The XEP-0115 `ver`
//! hash of the domain's disco#info is offered as a stream feature so that clients can cache
//! it.

mod caps;

use crate::module_api::{
    BoxFuture, Element, FeatureStage, IqHandler, IqKind, IqRequest, IqResult, IqTarget, ModuleDescriptor, ModuleError,
    NoOptions, Registrar, ServerHandle, StanzaError, ToBare, check_section, ns,
};
use std::sync::Arc;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "disco",
    xeps: &["XEP-0030", "XEP-0115"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<NoOptions>,
    build,
};

struct Disco {
    server: ServerHandle,
    domain: String,
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    r.identity("server", "im", "Starling");
    r.feature(ns::DISCO_INFO);
    r.feature(ns::DISCO_ITEMS);
    let disco = Arc::new(Disco { server: r.server(), domain: r.domain().to_owned() });
    for target in [IqTarget::Host, IqTarget::Account, IqTarget::Bare] {
        r.iq(IqKind::Get, target, ns::DISCO_INFO, "query", disco.clone())?;
        r.iq(IqKind::Get, target, ns::DISCO_ITEMS, "query", disco.clone())?;
    }
    // The caps hash covers every module's features, which are known only after all modules
    // are built; the stream feature is therefore computed when offered, once.
    let for_caps = disco.clone();
    let computed = std::sync::OnceLock::new();
    r.stream_feature_with(
        FeatureStage::Bound,
        Arc::new(move || computed.get_or_init(|| caps::feature(&for_caps.info(true))).clone()),
    );
    Ok(())
}

impl IqHandler for Disco {
    fn handle<'a>(&'a self, iq: &'a IqRequest) -> BoxFuture<'a, IqResult> {
        Box::pin(async move {
            let host = iq.to.node().is_none();
            if iq.payload.attr("node").is_some_and(|n| !caps::is_own_node(n, &self.info(true))) {
                return Err(StanzaError::item_not_found());
            }
            match (iq.payload.ns.as_str(), host) {
                (ns::DISCO_INFO, true) => Ok(Some(self.with_node(self.info(true), iq))),
                (ns::DISCO_INFO, false) => self.account_info(iq).await,
                (_, true) => Ok(Some(self.items())),
                (_, false) => Ok(Some(Element::new("query", ns::DISCO_ITEMS))),
            }
        })
    }
}

impl Disco {
    /// disco#info of the domain (or, with `host = false`, of an account).
    fn info(&self, host: bool) -> Element {
        let snapshot = self.server.disco(&self.domain);
        let mut query = Element::new("query", ns::DISCO_INFO);
        if host {
            for id in &snapshot.identities {
                query.push_child(
                    Element::new("identity", ns::DISCO_INFO)
                        .with_attr("category", id.category)
                        .with_attr("type", id.kind)
                        .with_attr("name", id.name),
                );
            }
        } else {
            query.push_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "account")
                    .with_attr("type", "registered"),
            );
        }
        let features = if host { &snapshot.features } else { &snapshot.account_features };
        let mut features: Vec<&str> = features.clone();
        features.push(ns::DISCO_INFO);
        features.sort_unstable();
        features.dedup();
        for var in features {
            query.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", var));
        }
        query
    }

    fn with_node(&self, mut query: Element, iq: &IqRequest) -> Element {
        if let Some(node) = iq.payload.attr("node") {
            query.set_attr("node", node);
        }
        query
    }

    async fn account_info(&self, iq: &IqRequest) -> IqResult {
        match self.server.account_exists(&iq.to.bare()).await {
            Ok(true) => Ok(Some(self.info(false))),
            Ok(false) => Err(StanzaError::service_unavailable()),
            Err(_) => Err(StanzaError::internal_server_error()),
        }
    }

    fn items(&self) -> Element {
        let mut query = Element::new("query", ns::DISCO_ITEMS);
        for (jid, name) in self.server.disco(&self.domain).items {
            query.push_child(Element::new("item", ns::DISCO_ITEMS).with_attr("jid", jid).with_attr("name", name));
        }
        query
    }
}
