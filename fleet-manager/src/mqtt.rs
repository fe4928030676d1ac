//! The manager's MQTT client: rumqttc over TCP to an external broker, or the embedded broker's
//! in-process link ([`spawn_local`]: no gate, no TCP, no MQTT encoding; received payloads are the
//! router's own buffers).
//!
//! Two tasks, so that no publish is ever awaited where the event loop is polled:
//! - the *poller* polls the event loop and forwards CONNACKs and PUBLISHes as [`Inbound`] into a
//!   bounded channel (back-pressure towards the broker);
//! - the *sender* drains the [`Outbox`] (an unbounded channel, so whoever handles inbound messages
//!   never blocks on it) into `AsyncClient::publish/subscribe`.
//!
//! rumqttc never re-subscribes after a reconnect, and rumqttd forgets retained messages when it
//! restarts: the handler of [`Inbound::Connected`] subscribes again and republishes every retained
//! desired config on every CONNACK.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tapfleet_broker::{LocalReceiver, LocalSender};
use tapfleet_schemas::{Message, Topic};
use tokio::sync::{mpsc, watch};

/// The manager's client id (and its reserved name): its in-process link to the embedded broker,
/// or its connection to an external one.
pub const MANAGER_USERNAME: &str = "tapfleet-manager";
/// Largest MQTT packet, both ways (a 1 MiB chunk plus its envelope fits).
pub const MAX_PACKET: usize = 2 * 1024 * 1024;

/// Where and as whom the client connects.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
}

/// What the poller forwards.
#[derive(Debug)]
pub enum Inbound {
    /// A CONNACK: subscribe and republish retained state now.
    Connected,
    Publish {
        topic: String,
        payload: Bytes,
    },
}

/// What the sender sends.
#[derive(Debug)]
pub enum Outgoing {
    Publish {
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    },
    Subscribe {
        filter: String,
    },
}

/// The handle to queue messages for the broker. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
}

impl Outbox {
    /// An outbox and the receiving end (for the sender task, or a test).
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Outbox { tx }, rx)
    }

    /// Queues a message on a topic (QoS1; retained when the channel is retained).
    pub fn send<M: Message>(&self, topic: &Topic, msg: &M) {
        let retain = matches!(topic, Topic::Edge { channel, .. } if channel.retained());
        match tapfleet_schemas::encode(msg) {
            Ok(payload) => {
                let _ = self.tx.send(Outgoing::Publish {
                    topic: topic.to_string(),
                    payload,
                    qos: QoS::AtLeastOnce,
                    retain,
                });
            }
            Err(e) => tracing::error!(kind = M::KIND, error = %e, "cannot encode"),
        }
    }

    /// Queues a subscription (QoS1).
    pub fn subscribe(&self, filter: String) {
        let _ = self.tx.send(Outgoing::Subscribe { filter });
    }
}

/// The client's MQTT options.
pub fn options(s: &ClientSettings) -> MqttOptions {
    let mut o = MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(true);
    o.set_inflight(100);
    if let Some((u, p)) = &s.credentials {
        o.set_credentials(u.clone(), p.clone());
    }
    o
}

/// Starts the poller and the sender of a client of the embedded broker's in-process link; they
/// stop when `stop` turns true. The link is up from the start (one [`Inbound::Connected`]) and
/// lives as long as the process: the broker is in the same process.
pub fn spawn_local(
    (mut sender, mut receiver): (LocalSender, LocalReceiver),
    inbound: mpsc::Sender<Inbound>,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut stop_rx = stop.clone();
    let poller = tokio::spawn(async move {
        if inbound.send(Inbound::Connected).await.is_err() {
            return;
        }
        loop {
            let next = tokio::select! {
                n = receiver.next() => n,
                _ = stop_rx.changed() => return,
            };
            match next {
                Ok((topic, payload)) => {
                    if inbound
                        .send(Inbound::Publish { topic, payload })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "embedded broker link lost");
                    return;
                }
            }
        }
    });
    let mut stop_tx = stop;
    let sender = tokio::spawn(async move {
        loop {
            let out = tokio::select! {
                o = outgoing.recv() => o,
                _ = stop_tx.changed() => None,
            };
            let Some(out) = out else { return };
            let r = match out {
                Outgoing::Publish {
                    topic,
                    payload,
                    retain,
                    ..
                } => sender.publish(topic, Bytes::from(payload), retain).await,
                Outgoing::Subscribe { filter } => sender.subscribe(filter).await,
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "embedded broker link: request not queued");
            }
        }
    });
    vec![poller, sender]
}

/// Starts the poller and the sender; they stop when `stop` turns true.
pub fn spawn(
    settings: &ClientSettings,
    inbound: mpsc::Sender<Inbound>,
    outgoing: mpsc::UnboundedReceiver<Outgoing>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (client, mut eventloop) = AsyncClient::new(options(settings), 1024);
    // Acks are small writes: Nagle + delayed ACKs would hold each one ~40 ms.
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    let poller = tokio::spawn(poll(eventloop, inbound, stop.clone()));
    let sender = tokio::spawn(send(client.clone(), outgoing, stop));
    vec![poller, sender]
}

async fn poll(mut el: EventLoop, inbound: mpsc::Sender<Inbound>, mut stop: watch::Receiver<bool>) {
    loop {
        let ev = tokio::select! {
            ev = el.poll() => ev,
            _ = stop.changed() => return,
        };
        let msg = match ev {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(code = ?ack.code, "mqtt connected");
                Inbound::Connected
            }
            Ok(Event::Incoming(Packet::Publish(p))) => Inbound::Publish {
                topic: p.topic.clone(),
                payload: p.payload,
            },
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "mqtt connection error; retrying in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        };
        if inbound.send(msg).await.is_err() {
            return;
        }
    }
}

async fn send(
    client: AsyncClient,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let out = tokio::select! {
            o = outgoing.recv() => o,
            _ = stop.changed() => None,
        };
        let Some(out) = out else {
            let _ = client.try_disconnect();
            return;
        };
        let r = match out {
            Outgoing::Publish {
                topic,
                payload,
                qos,
                retain,
            } => client.publish(topic, qos, retain, payload).await,
            Outgoing::Subscribe { filter } => client.subscribe(filter, QoS::AtLeastOnce).await,
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "mqtt request not queued");
        }
    }
}
