//! Starling: an XMPP server. See README.md for what it is and how to run it.

pub mod c2s;
pub mod config;
pub mod events;
pub mod http;
pub mod module_api;
pub mod router;
pub mod s2s;
pub mod server;
pub mod session;
pub mod storage;
pub mod stream;
pub mod xml;

#[path = "../modules/mod.rs"]
pub mod modules;
