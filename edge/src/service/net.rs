//! MQTT connections of the service. Each connection's event loop is polled by a task that only
//! forwards what arrives (unbounded channel, so it never waits on the core), and the core
//! publishes through the `AsyncClient`. rumqttc never re-subscribes: the core does it on every
//! `Connected`.
//!
//! With `mqtts://` the connections use TLS ([`TlsClient`]): the broker's certificate must chain to
//! the fleet CA, and the edge presents its own certificate from a [`CertSlot`], which a
//! certificate renewal refills while the service runs (the next handshake uses the new one).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio::sync::mpsc::UnboundedSender;

use super::BrokerAddr;
use super::identity::Identity;

/// Which of the edge's two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// Config, state, manifests, jobs, replies, acks.
    Control,
    /// File chunks only, so control traffic never waits behind them.
    Bulk,
}

/// What a connection's poll task reports.
#[derive(Debug)]
pub enum NetEvent {
    Connected(Conn),
    Disconnected(Conn, String),
    Message {
        topic: String,
        payload: bytes::Bytes,
    },
}

/// Largest MQTT packet both ways (a transfer chunk with its envelope fits).
pub const MAX_PACKET: usize = 2 * 1024 * 1024;

/// The edge's client certificate and key, swappable while connections run.
#[derive(Debug, Default)]
pub struct CertSlot(RwLock<Option<Arc<CertifiedKey>>>);

impl CertSlot {
    /// Puts a certificate (PEM) and its key (PEM) in the slot.
    pub fn set(&self, cert_pem: &str, key_pem: &str) -> anyhow::Result<()> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .context("edge certificate")?;
        anyhow::ensure!(!chain.is_empty(), "edge certificate: no PEM certificate");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("edge key")?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let ck = CertifiedKey::from_der(chain, key, &provider).context("edge certificate/key")?;
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(ck));
        Ok(())
    }
}

impl ResolvesClientCert for CertSlot {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn has_certs(&self) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

/// TLS towards the broker: the fleet CA as the only root, and the edge's certificate slot.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<rustls::ClientConfig>,
    pub slot: Arc<CertSlot>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient(..)")
    }
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for TlsClient {}

impl TlsClient {
    /// Trusts `ca_pem` only; presents what `slot` holds (nothing while it is empty).
    pub fn new(ca_pem: &str, slot: Arc<CertSlot>) -> anyhow::Result<TlsClient> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.context("fleet CA")?).context("fleet CA")?;
        }
        anyhow::ensure!(!roots.is_empty(), "fleet CA: no PEM certificate");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_cert_resolver(slot.clone());
        // Every handshake presents the slot's current certificate (none was there while
        // enrolling; a renewal puts a new one there).
        config.resumption = rustls::client::Resumption::disabled();
        Ok(TlsClient {
            config: Arc::new(config),
            slot,
        })
    }

    /// Applies this TLS setup to MQTT options.
    pub fn apply(&self, opts: &mut MqttOptions) {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            self.config.clone(),
        )));
    }
}

/// Opens a connection and spawns its poll task.
pub fn connect(
    broker: &BrokerAddr,
    id: &Identity,
    conn: Conn,
    will: Option<(String, Vec<u8>)>,
    tx: UnboundedSender<NetEvent>,
) -> AsyncClient {
    let client_id = match conn {
        Conn::Control => id.edge_id.clone(),
        Conn::Bulk => format!("{}-bulk", id.edge_id),
    };
    let mut opts = MqttOptions::new(client_id, &broker.host, broker.port);
    opts.set_credentials(&id.username, &id.password);
    opts.set_keep_alive(Duration::from_secs(15));
    opts.set_clean_session(true);
    opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    opts.set_inflight(64);
    if let Some(tls) = &broker.tls {
        tls.apply(&mut opts);
    }
    if let Some((topic, payload)) = will {
        opts.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, true));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    // Acks and chunks are small-then-large writes: Nagle + delayed ACKs would stall each ~40 ms.
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    tokio::spawn(poll(eventloop, conn, tx));
    client
}

async fn poll(mut eventloop: EventLoop, conn: Conn, tx: UnboundedSender<NetEvent>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let ev = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(200);
                NetEvent::Connected(conn)
            }
            Ok(Event::Incoming(Packet::Publish(p))) => NetEvent::Message {
                topic: p.topic,
                payload: p.payload,
            },
            Ok(_) => continue,
            Err(e) => {
                let reason = e.to_string();
                if tx.send(NetEvent::Disconnected(conn, reason)).is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if tx.send(ev).is_err() {
            return; // the core is gone: shutting down
        }
    }
}
