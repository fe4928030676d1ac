//! tapfleet's embedded MQTT broker: rumqttd 0.20 behind our own gate, run from our own
//! [`BrokerConfig`], with every login decided by a [`CredentialStore`] and every PUBLISH and
//! SUBSCRIBE authorized against the client's namespace ([`acl`]).
//!
//! [`start`] binds the public listener, runs rumqttd on its own threads (its `Broker::start`
//! blocks) on a random loopback port that only accepts the gate's internal secret, and runs the
//! gate ([`gate`]: a tokio runtime of its own, a task per connection) on the public listener; it
//! returns once rumqttd accepts TCP connections. rumqttd has no shutdown: the broker lives until
//! the process ends. It keeps nothing on disk: retained messages are gone after a restart, so the
//! manager republishes them on every CONNACK.
//!
//! The plain listener serves loopback clients (the manager); `[tls]` adds a TLS listener
//! ([`tls`], client certificates from the fleet CA: [`pki`]) for everything beyond the host.

//!
//! Without the default `server` feature the crate is only the pure parts ([`mqtt`], [`acl`]),
//! which is what the fuzz target builds.

pub mod acl;
#[cfg(feature = "server")]
mod config;
#[cfg(feature = "server")]
mod credentials;
#[cfg(feature = "server")]
pub mod gate;
#[cfg(feature = "server")]
pub mod local;
pub mod mqtt;
#[cfg(feature = "server")]
pub mod pki;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
pub mod tls;

#[cfg(feature = "server")]
pub use server::*;
