//! [`BrokerConfig`]: the broker's TOML configuration with safe defaults, and its translation into
//! rumqttd's own `Config`.
//!
//! Defaults: one plain MQTT 3.1.1 listener on 127.0.0.1:1883, 2 MiB packets (a transfer chunk is
//! up to 1 MiB plus its envelope), at most 10,000 connections, 5 s to send CONNECT, console and
//! Prometheus off. rumqttd keeps a commit log in memory per subscribed filter; each log holds at
//! most `max_segment_count` segments of `max_segment_size` bytes (8 MiB x 6 = 48 MiB by default),
//! and when it is full the oldest segment is dropped — a subscriber further behind than that
//! loses messages. So an uploader must keep its window of unacknowledged bytes well below one
//! filter's capacity (the edge's window is 16 MiB: three edges sending at full window fit); the
//! busiest filter (every edge's `upload`) is the one that grows to that bound, and the log's
//! memory is the broker's main cost (the manager with the embedded broker peaks near 180 MB in
//! `benchmarks/delivery.sh`, 200 MB being the goal). `dynamic_filters` is on: without it rumqttd disconnects a client that publishes
//! to a topic nobody subscribed to (an edge whose manager is down). The price is that such a topic
//! gets its own log, bounded the same way.
//!
//! `[tls]` adds a TLS listener (the one to expose beyond the host): server certificate and key,
//! and the fleet CA that client certificates are verified against. The plain listener should stay
//! on loopback (the manager's own client); a plain listener elsewhere is logged as a warning.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::BrokerError;

/// The broker's configuration (`broker.toml`). Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Plain MQTT listener. Port 0 picks a free port (see `BrokerHandle::local_addr`).
    pub listen: SocketAddr,
    /// Largest MQTT packet accepted, in bytes.
    pub max_payload_size: usize,
    /// Most simultaneous client connections.
    pub max_connections: usize,
    /// Time a new connection has to send its CONNECT, in milliseconds (at most 65,535).
    pub connection_timeout_ms: u16,
    /// Most unacknowledged QoS1 messages towards one client.
    pub max_inflight_count: usize,
    /// Most messages the router hands one connection per round.
    pub max_outgoing_packet_count: u64,
    /// Size of one in-memory log segment per subscribed filter, in bytes.
    pub max_segment_size: usize,
    /// Segments kept per subscribed filter.
    pub max_segment_count: usize,
    /// Pause after accepting a connection, in milliseconds (rate limits connection storms).
    pub next_connection_delay_ms: u64,
    /// A TLS listener (rustls, terminated by the gate).
    pub tls: Option<TlsListenConfig>,
}

/// `[tls]`: the TLS listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenConfig {
    /// Address of the TLS listener (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA certificate(s) client certificates must chain to (PEM): the fleet CA.
    pub client_ca: PathBuf,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            max_payload_size: 2 * 1024 * 1024,
            max_connections: 10_000,
            connection_timeout_ms: 5_000,
            max_inflight_count: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 8 * 1024 * 1024,
            max_segment_count: 6,
            next_connection_delay_ms: 0,
            tls: None,
        }
    }
}

impl BrokerConfig {
    /// Parses a `broker.toml`.
    pub fn from_toml(text: &str) -> Result<Self, BrokerError> {
        let cfg: BrokerConfig =
            toml::from_str(text).map_err(|e| BrokerError::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the limits rumqttd would otherwise panic on or silently misbehave with.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let bad = |m: &str| Err(BrokerError::Config(m.to_owned()));
        if self.max_payload_size < 1024 {
            return bad("max_payload_size must be at least 1024 bytes");
        }
        if self.max_segment_size < self.max_payload_size {
            return bad("max_segment_size must be at least max_payload_size");
        }
        if self.max_segment_count == 0 {
            return bad("max_segment_count must be at least 1");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if self.connection_timeout_ms == 0 {
            return bad("connection_timeout_ms must be at least 1");
        }
        if self.max_inflight_count == 0 || self.max_outgoing_packet_count == 0 {
            return bad("max_inflight_count and max_outgoing_packet_count must be at least 1");
        }
        Ok(())
    }

    /// rumqttd's config for this broker, listening on `listen` (the resolved address), with no
    /// authentication yet (the caller installs the auth hook).
    pub(crate) fn to_rumqttd(&self, listen: SocketAddr) -> rumqttd::Config {
        let connections = rumqttd::ConnectionSettings {
            connection_timeout_ms: self.connection_timeout_ms,
            max_payload_size: self.max_payload_size,
            max_inflight_count: self.max_inflight_count,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        };
        let server = rumqttd::ServerSettings {
            name: "tapfleet-v4".to_owned(),
            listen,
            tls: None,
            next_connection_delay_ms: self.next_connection_delay_ms,
            connections,
        };
        rumqttd::Config {
            id: 0,
            router: rumqttd::RouterConfig {
                max_connections: self.max_connections,
                max_outgoing_packet_count: self.max_outgoing_packet_count,
                max_segment_size: self.max_segment_size,
                max_segment_count: self.max_segment_count,
                custom_segment: None,
                initialized_filters: None,
                shared_subscriptions_strategy: Default::default(),
            },
            v4: Some(HashMap::from([("v4".to_owned(), server)])),
            v5: None,
            ws: None,
            cluster: None,
            console: None,
            bridge: None,
            prometheus: None,
            metrics: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_toml_gives_safe_defaults() {
        let cfg = BrokerConfig::from_toml("").expect("defaults are valid");
        assert_eq!(cfg, BrokerConfig::default());
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:1883");
        let rc = cfg.to_rumqttd(cfg.listen);
        assert!(rc.console.is_none() && rc.prometheus.is_none() && rc.v5.is_none());
    }

    #[test]
    fn bad_limits_and_unknown_keys_are_refused() {
        assert!(BrokerConfig::from_toml("max_segment_count = 0").is_err());
        assert!(BrokerConfig::from_toml("max_segment_size = 1024").is_err());
        assert!(BrokerConfig::from_toml("lisen = \"127.0.0.1:1\"").is_err());
        let cfg = BrokerConfig::from_toml("listen = \"0.0.0.0:8883\"").expect("valid");
        assert_eq!(cfg.listen.port(), 8883);
        let cfg = BrokerConfig::from_toml(
            "[tls]\nlisten = \"0.0.0.0:8883\"\ncert = \"s.crt\"\nkey = \"s.key\"\nclient_ca = \"ca.crt\"",
        )
        .expect("valid");
        assert_eq!(cfg.tls.map(|t| t.listen.port()), Some(8883));
    }
}
