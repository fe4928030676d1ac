//! MQTT connections of the service. Each connection's event loop is polled by a task that only
//! forwards what arrives (unbounded channel, so it never waits on the core), and the core
//! publishes through the `AsyncClient`. rumqttc never re-subscribes: the core does it on every
//! `Connected`.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
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
    if let Some((topic, payload)) = will {
        opts.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, true));
    }
    let (client, eventloop) = AsyncClient::new(opts, 256);
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
