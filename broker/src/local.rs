//! The in-process client of the embedded broker: a rumqttd local link ([`LocalSender`],
//! [`LocalReceiver`]) for the process that embeds the broker (the fleet manager), so that its own
//! traffic skips the gate, TCP and MQTT encoding both ways.
//!
//! - Messages are handed to rumqttd's router as they are: a received payload is the very buffer
//!   the router's commit log holds (no copy), and a published one is moved into it.
//! - The link is trusted (it bypasses the gate's namespace ACL) and is never disconnected: it has
//!   `dynamic_filters` on, like the network clients (without it the router drops a client that
//!   publishes to a topic nobody subscribed to).
//! - Publishes enter the router at QoS 0 (a local link cannot publish at QoS 1 in rumqttd 0.20;
//!   in-process there is nothing to acknowledge) and reach each subscriber at its subscription's
//!   QoS, as rumqttd forwards. Subscriptions are QoS 0: the router pauses the link when 200
//!   messages are waiting and resumes it when [`LocalReceiver::next`] has taken them, so a slow
//!   consumer is flow-controlled exactly like a network client (same log, same bounds).

use bytes::Bytes;
use rumqttd::Notification;
use rumqttd::local::{LinkError, LinkRx, LinkTx};
use rumqttd::protocol::{Filter, Packet, Publish, QoS, RetainForwardRule, Subscribe};

/// Why the local link failed: the router is gone (the broker stopped) or refused the link.
#[derive(Debug, thiserror::Error)]
#[error("embedded broker link: {0}")]
pub struct LocalLinkError(String);

impl From<LinkError> for LocalLinkError {
    fn from(e: LinkError) -> Self {
        LocalLinkError(e.to_string())
    }
}

/// Wraps a link the router acknowledged.
pub(crate) fn from_link(tx: LinkTx, rx: LinkRx) -> (LocalSender, LocalReceiver) {
    (LocalSender { tx }, LocalReceiver { rx })
}

/// What a [`Connector`] does: link a client id to the router.
pub(crate) type ConnectFn =
    dyn Fn(&str) -> Result<(LocalSender, LocalReceiver), LocalLinkError> + Send + Sync;

/// Makes links: a closure over the router's (unnameable) event channel.
pub(crate) struct Connector(pub(crate) Box<ConnectFn>);

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

/// The publishing half.
pub struct LocalSender {
    tx: LinkTx,
}

impl std::fmt::Debug for LocalSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalSender")
    }
}

impl LocalSender {
    /// Publishes `payload` on `topic` (kept as the topic's retained message when `retain`).
    pub async fn publish(
        &mut self,
        topic: String,
        payload: Bytes,
        retain: bool,
    ) -> Result<(), LocalLinkError> {
        let publish = Publish::new(Bytes::from(topic), payload, retain);
        self.tx.send(Packet::Publish(publish, None)).await?;
        Ok(())
    }

    /// Subscribes to `filter` (retained messages are delivered on every subscribe, as MQTT
    /// 3.1.1 says).
    pub async fn subscribe(&mut self, filter: String) -> Result<(), LocalLinkError> {
        let subscribe = Subscribe {
            pkid: 0,
            filters: vec![Filter {
                path: filter,
                qos: QoS::AtMostOnce,
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: RetainForwardRule::OnEverySubscribe,
            }],
        };
        self.tx.send(Packet::Subscribe(subscribe, None)).await?;
        Ok(())
    }
}

/// The receiving half.
#[derive(Debug)]
pub struct LocalReceiver {
    rx: LinkRx,
}

impl LocalReceiver {
    /// The next message published on a subscribed filter: (topic, payload). Acks are skipped;
    /// when the router paused the link (its queue was full) it is resumed here.
    pub async fn next(&mut self) -> Result<(String, Bytes), LocalLinkError> {
        loop {
            match self.rx.next().await? {
                Some(Notification::Forward(f)) => match String::from_utf8(f.publish.topic.to_vec())
                {
                    Ok(topic) => return Ok((topic, f.publish.payload)),
                    Err(_) => tracing::warn!("embedded broker link: topic is not UTF-8, skipped"),
                },
                Some(Notification::Unschedule) => self.rx.wake().await?,
                Some(Notification::Disconnect(d, _)) => {
                    return Err(LocalLinkError(format!("disconnected by the router: {d:?}")));
                }
                Some(_) | None => {}
            }
        }
    }
}
