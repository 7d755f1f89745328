//! XEP-0202 entity time: the server's UTC time (`tzo` is always `Z` since the server keeps
//! UTC) in the XEP-0082 format.

use crate::module_api::{
    Element, IqKind, IqRequest, IqTarget, ModuleDescriptor, ModuleError, NoOptions, Registrar, SyncIq, check_section,
    ns,
};
use std::sync::Arc;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "time",
    xeps: &["XEP-0202", "XEP-0082"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<NoOptions>,
    build,
};

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let handler = SyncIq(|_: &IqRequest| {
        let now = crate::module_api::datetime(crate::module_api::now_micros());
        Ok(Some(
            Element::new("time", ns::TIME)
                .with_child(Element::new("tzo", ns::TIME).with_text("Z"))
                .with_child(Element::new("utc", ns::TIME).with_text(now)),
        ))
    });
    r.iq(IqKind::Get, IqTarget::Host, ns::TIME, "time", Arc::new(handler))?;
    r.feature(ns::TIME);
    Ok(())
}
