//! tapfleet's fleet manager: enrollment, desired configs, the recordings catalog, the mover that
//! stores uploaded files in OpenDAL targets, and the HTTP API. The binary `tapfleet-manager`
//! (`src/main.rs`) is a thin CLI over [`serve::run`].
//!
//! Code map: [`mqtt`] (client tasks) -> [`fleet`] (dispatcher: enrollment, state, manifests) ->
//! [`mover`] (transfers; pure core in [`mover::transfer`]) -> [`store`] (redb) and [`targets`]
//! (OpenDAL); [`http`] reads the store. [`catalog`] holds the catalog's own types, [`enroll`] the
//! pure enrollment rules, [`token`] the claim token file, [`metrics`] the counters.

pub mod catalog;
pub mod enroll;
pub mod fleet;
pub mod http;
pub mod metrics;
pub mod mover;
pub mod mqtt;
pub mod serve;
pub mod store;
pub mod targets;
pub mod token;
