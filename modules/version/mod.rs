//! XEP-0092 software version of the server. The operating system is not disclosed unless
//! `show_os = true`, as it helps attackers more than users.

use crate::module_api::{
    Element, IqKind, IqRequest, IqTarget, ModuleDescriptor, ModuleError, Registrar, SyncIq, check_section, ns,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "version",
    xeps: &["XEP-0092"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<Options>,
    build,
};

/// `[modules.version]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Options {
    /// Include the operating system in answers.
    pub show_os: bool,
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let options: Options = r.config()?;
    let show_os = options.show_os;
    let handler = SyncIq(move |_: &IqRequest| {
        let mut query = Element::new("query", ns::VERSION)
            .with_child(Element::new("name", ns::VERSION).with_text("Starling"))
            .with_child(Element::new("version", ns::VERSION).with_text(env!("CARGO_PKG_VERSION")));
        if show_os {
            query.push_child(Element::new("os", ns::VERSION).with_text(std::env::consts::OS));
        }
        Ok(Some(query))
    });
    r.iq(IqKind::Get, IqTarget::Host, ns::VERSION, "query", Arc::new(handler))?;
    r.feature(ns::VERSION);
    Ok(())
}
