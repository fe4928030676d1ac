//! tapfleet's fleet manager: enrollment, desired configs, the recordings catalog, the mover that
//! stores uploaded files in OpenDAL targets, and the HTTP API. The binary `tapfleet-manager`
//! (`src/main.rs`) is a thin CLI over [`serve::run`].
//!
//! Code map: [`mqtt`] (client tasks) -> [`fleet`] (dispatcher: enrollment, state, manifests) ->
//! [`mover`] (transfers; pure core in [`mover::transfer`]) -> [`store`] (redb) and [`targets`]
//! (OpenDAL); [`http`] reads the store; [`jobs`] runs user jobs (upload, copy, move, delete,
//! fetch) and [`jobs_api`] exposes them. [`catalog`] holds the catalog's own types, [`enroll`] the
//! pure enrollment rules, [`token`] the claim token file, [`metrics`] the counters; [`auth`]
//! guards the API (users, sessions, tokens, audit), [`search`] indexes the catalog, [`api`] serves
//! search, the event stream, the OpenAPI document and the dashboard; [`sipflow`] lists a
//! recording's SIP messages from its `call.pcap` (the edge crate's parsers).
//! Configs: [`config_layers`] (pure merge + validation of defaults, groups, edge overrides) and
//! [`config_api`] (versions, history, routes, CLI). Monitoring: [`alerts`] (pure rules) and
//! [`alerting`] (persistence, events topic, webhook, routes).
//! Security: [`ca`] (the fleet CA on disk), [`https`] (the HTTPS listener, plain-listener
//! policy), [`http_client`] (outgoing HTTPS of the CLI and the webhook: rustls, trusted roots), [`tokens`] (claim tokens: expiry, uses, revocation), [`revoke`] (edge revocation);
//! [`install`] serves `/install.sh` and the edge binary. [`relay`] stores recordings into an
//! edge's local storage (downloads manager -> edge).

pub mod alerting;
pub mod alerts;
pub mod api;
pub mod auth;
pub mod ca;
pub mod catalog;
pub mod cli;
pub mod config_api;
pub mod config_layers;
pub mod enroll;
pub mod fleet;
pub mod http;
pub mod http_client;
pub mod https;
pub mod inbound;
pub mod install;
pub mod jobs;
pub mod jobs_api;
pub mod metrics;
pub mod mover;
pub mod mqtt;
pub mod relay;
pub mod revoke;
pub mod search;
pub mod serve;
pub mod sipflow;
pub mod store;
pub mod targets;
pub mod telemetry;
pub mod token;
pub mod tokens;
