//! Feature modules. Each folder is one module; [`ALL`] lists their descriptors in
//! alphabetical order. Modules use only `crate::module_api`, `crate::events`, external crates
//! and (for declared dependencies) sibling modules' public services.

pub mod blocking;
pub mod carbons;
pub mod csi;
pub mod disco;
pub mod last;
pub mod mam;
pub mod muc;
pub mod offline;
pub mod origin_id;
pub mod ping;
pub mod presence;
pub mod private;
pub mod register;
pub mod roster;
pub mod time;
pub mod vcard;
pub mod version;

use crate::module_api::ModuleDescriptor;

/// Every module, alphabetically.
pub static ALL: &[&ModuleDescriptor] = &[
    &blocking::MODULE,
    &carbons::MODULE,
    &csi::MODULE,
    &disco::MODULE,
    &last::MODULE,
    &mam::MODULE,
    &muc::MODULE,
    &offline::MODULE,
    &origin_id::MODULE,
    &ping::MODULE,
    &presence::MODULE,
    &private::MODULE,
    &register::MODULE,
    &roster::MODULE,
    &time::MODULE,
    &vcard::MODULE,
    &version::MODULE,
];

/// Each module's config check, for `Config::load`.
pub fn config_checks() -> Vec<(&'static str, crate::module_api::ModuleSectionCheck)> {
    ALL.iter().map(|d| (d.name, d.check_config)).collect()
}
