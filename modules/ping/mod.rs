//! XEP-0199 ping: the server answers pings addressed to it (§4.2) and, for the account
//! itself, on the account's behalf. Pings the server sends to find dead clients are part of
//! the client session loop (`c2s::bound`).

use crate::module_api::{
    IqKind, IqTarget, ModuleDescriptor, ModuleError, NoOptions, Registrar, SyncIq, check_section, ns,
};
use std::sync::Arc;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "ping",
    xeps: &["XEP-0199"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<NoOptions>,
    build,
};

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let pong = Arc::new(SyncIq(|_: &crate::module_api::IqRequest| Ok(None)));
    r.iq(IqKind::Get, IqTarget::Host, ns::PING, "ping", pong.clone())?;
    r.iq(IqKind::Get, IqTarget::Account, ns::PING, "ping", pong)?;
    r.feature(ns::PING);
    Ok(())
}
