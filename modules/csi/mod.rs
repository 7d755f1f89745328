//! Client state indication (XEP-0352): a client tells the server whether a person is looking
//! (`<active/>`) or the app is in the background (`<inactive/>`). While inactive, the
//! session holds back presence updates (keeping only the latest per contact) and messages
//! that carry nothing but chat states, and releases them, in order, as soon as something that
//! matters arrives or the client becomes active again. Phones then wake up for messages, not
//! for every status change of every contact.

use crate::module_api::{
    BoxFuture, Element, FeatureStage, Flow, Hook, ModuleDescriptor, ModuleError, NoOptions, NonzaReceived, Registrar,
    check_section, priority,
};
use std::sync::Arc;

/// `urn:xmpp:csi:0`
pub const NS_CSI: &str = "urn:xmpp:csi:0";

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "csi",
    xeps: &["XEP-0352"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<NoOptions>,
    build,
};

struct Csi;

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    r.hook::<NonzaReceived>(priority::DEFAULT, Arc::new(Csi));
    r.stream_feature(FeatureStage::Bound, Element::new("csi", NS_CSI));
    Ok(())
}

impl Hook<NonzaReceived> for Csi {
    fn call<'a>(&'a self, event: &'a mut NonzaReceived) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            if event.element.ns != NS_CSI {
                return Flow::Continue;
            }
            match event.element.name.as_str() {
                "active" => event.session.set_inactive(false),
                "inactive" => event.session.set_inactive(true),
                _ => return Flow::Continue,
            }
            Flow::Handled
        })
    }
}
