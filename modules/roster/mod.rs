//! Roster management (RFC 6121 §2) with roster versioning (XEP-0237, RFC 6121 §2.6).
//!
//! The roster of each account lives in the `roster` map store, one JSON item per contact
//! bare JID; its version is a counter in the `roster_version` keyval store, bumped on every
//! change. A client that sends the current `ver` gets an empty result and later pushes; any
//! other `ver` gets the whole roster. Changes are pushed (`<iq type='set'/>`, §2.1.6) to every
//! session of the account that has requested the roster. Other modules (presence) change
//! subscription state through the [`Roster`] service this module provides.

mod items;
mod query;

pub use items::{Item, Roster, Subscription};

use crate::module_api::Element;
use crate::module_api::{
    FeatureStage, IqKind, IqTarget, ModuleDescriptor, ModuleError, NoOptions, Registrar, check_section, ns,
};
use std::sync::Arc;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "roster",
    xeps: &["RFC 6121", "XEP-0237"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<NoOptions>,
    build,
};

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let roster = Arc::new(Roster::new(r.map("roster"), r.keyval("roster_version"), r.server()));
    r.provide(roster.clone());
    let handler = Arc::new(query::RosterQuery { roster });
    r.iq(IqKind::Get, IqTarget::Account, ns::ROSTER, "query", handler.clone())?;
    r.iq(IqKind::Set, IqTarget::Account, ns::ROSTER, "query", handler)?;
    r.stream_feature(FeatureStage::Bound, Element::new("ver", ns::ROSTER_VER));
    r.stream_feature(FeatureStage::Bound, Element::new("sub", ns::PRE_APPROVAL));
    Ok(())
}
