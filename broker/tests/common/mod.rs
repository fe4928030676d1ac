//! Shared helpers of the broker tests: a started broker with a manager, three edges in two
//! tenants and a claim token, and a rumqttc client whose events are collected by a task.

#![allow(dead_code)]

pub mod matrix;

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, Packet, Publish,
    QoS, SubscribeReasonCode,
};
use tapfleet_broker::{BrokerConfig, BrokerHandle, CredentialStore, Role, TlsListenConfig};
use tokio::sync::mpsc;

pub const T: Duration = Duration::from_secs(5);
pub const MANAGER: (&str, &str) = ("tapfleet-manager", "manager-pw");
pub const EDGE_A: (&str, &str) = ("edge-a", "pw-a");
pub const EDGE_B: (&str, &str) = ("edge-b", "pw-b");
/// An edge of another tenant.
pub const EDGE_C: (&str, &str) = ("edge-c", "pw-c");
pub const CLAIM: &str = "claim-123";

/// The test credentials: the manager, edges A and B (tenant acme), C (tenant other) and the
/// claim token.
pub fn test_creds() -> CredentialStore {
    let creds = CredentialStore::new();
    creds
        .set_password(MANAGER.0, MANAGER.1, Role::Manager)
        .expect("random");
    for (e, t) in [(EDGE_A, "acme"), (EDGE_B, "acme"), (EDGE_C, "other")] {
        creds
            .set_password(e.0, e.1, Role::Edge { tenant: t.into() })
            .expect("random");
    }
    creds.add_claim_token(CLAIM);
    creds
}

/// Starts the broker with `creds` on a plain listener and, given a PKI, a TLS one too (its
/// server certificate, client certificates of its CA).
pub fn start_broker_with(creds: &CredentialStore, pki: Option<&matrix::Pki>) -> BrokerHandle {
    let cfg = BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls: pki.map(|p| TlsListenConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            cert: p.server.0.clone(),
            key: p.server.1.clone(),
            client_ca: p.ca.clone(),
        }),
        ..BrokerConfig::default()
    };
    tapfleet_broker::start(cfg, creds.clone()).expect("broker starts")
}

/// The broker with [`test_creds`] on a plain listener.
pub fn start_broker() -> (BrokerHandle, CredentialStore) {
    let creds = test_creds();
    (start_broker_with(&creds, None), creds)
}

/// What a client saw.
#[derive(Debug)]
pub enum Seen {
    Packet(Packet),
    /// The connection ended (the poll task stops: no reconnect).
    Closed(String),
}

pub struct Client {
    pub c: AsyncClient,
    rx: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn options(h: &BrokerHandle, id: &str, user: Option<(&str, &str)>) -> MqttOptions {
    options_port(h.local_addr().port(), id, user)
}

/// Options for a broker on `127.0.0.1:port` (the embedded one or another).
pub fn options_port(port: u16, id: &str, user: Option<(&str, &str)>) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
    o.set_keep_alive(Duration::from_secs(10));
    if let Some((u, p)) = user {
        o.set_credentials(u, p);
    }
    o
}

pub fn with_will(mut o: MqttOptions, topic: &str) -> MqttOptions {
    o.set_last_will(LastWill::new(
        topic,
        b"gone".to_vec(),
        QoS::AtLeastOnce,
        true,
    ));
    o
}

/// Connects; the CONNACK code (or the refusal's code).
pub async fn connect_opts(o: MqttOptions) -> (Result<Client, ConnectReturnCode>, String) {
    let (c, mut el) = AsyncClient::new(o, 64);
    let first = tokio::time::timeout(T, async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => return Ok(a.code),
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => return Ok(code),
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    let code = match first {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => panic!("connection failed without CONNACK: {e}"),
        Err(_) => panic!("no CONNACK within {T:?}"),
    };
    if code != ConnectReturnCode::Success {
        return (Err(code), String::new());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(p)) => {
                    if tx.send(Seen::Packet(p)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Seen::Closed(e.to_string()));
                    return;
                }
            }
        }
    });
    (Ok(Client { c, rx, task }), String::new())
}

pub async fn connect(
    h: &BrokerHandle,
    id: &str,
    user: Option<(&str, &str)>,
) -> Result<Client, ConnectReturnCode> {
    connect_opts(options(h, id, user)).await.0
}

/// Connects to a broker on `127.0.0.1:port`.
pub async fn connect_port(
    port: u16,
    id: &str,
    user: Option<(&str, &str)>,
) -> Result<Client, ConnectReturnCode> {
    connect_opts(options_port(port, id, user)).await.0
}

pub async fn must_connect(h: &BrokerHandle, id: &str, user: (&str, &str)) -> Client {
    connect(h, id, Some(user))
        .await
        .unwrap_or_else(|code| panic!("{id} refused: {code:?}"))
}

impl Client {
    async fn next(&mut self, within: Duration) -> Option<Seen> {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next thing seen before `deadline`, if any.
    pub async fn next_until(&mut self, deadline: tokio::time::Instant) -> Option<Seen> {
        self.next(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
    }

    /// Subscribes to each filter in one SUBSCRIBE; the SUBACK's codes.
    pub async fn subscribe(&mut self, filters: &[&str]) -> Vec<SubscribeReasonCode> {
        let subs = filters
            .iter()
            .map(|f| rumqttc::SubscribeFilter::new((*f).to_owned(), QoS::AtLeastOnce));
        self.c.subscribe_many(subs).await.expect("subscribe queued");
        loop {
            match self.next(T).await {
                Some(Seen::Packet(Packet::SubAck(a))) => return a.return_codes,
                Some(Seen::Packet(_)) => {}
                other => panic!("no SUBACK: {other:?}"),
            }
        }
    }

    /// The next PUBLISH on `topic` within `within`.
    pub async fn publish_on(&mut self, topic: &str, within: Duration) -> Option<Publish> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Seen::Packet(Packet::Publish(p))) if p.topic == topic => return Some(p),
                Some(Seen::Packet(_)) => {}
                _ => return None,
            }
        }
    }

    /// Waits for a PUBACK (true) or the connection closing (false).
    pub async fn puback_or_closed(&mut self) -> bool {
        loop {
            match self.next(T).await {
                Some(Seen::Packet(Packet::PubAck(_))) => return true,
                Some(Seen::Packet(_)) => {}
                Some(Seen::Closed(_)) => return false,
                None => panic!("neither PUBACK nor close within {T:?}"),
            }
        }
    }

    pub async fn publish(&self, topic: &str, retain: bool, payload: Vec<u8>) {
        self.c
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .expect("publish queued");
    }
}

/// Edge topic string through the schemas crate.
pub fn edge_topic(tenant: &str, edge: &str, ch: tapfleet_schemas::Channel) -> String {
    tapfleet_schemas::Topic::edge(tenant, edge, ch)
        .expect("valid ids")
        .to_string()
}
