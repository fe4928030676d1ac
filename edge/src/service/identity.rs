//! The edge's identity: enrollment with a claim token over MQTT, and the identity file
//! (`DATA/identity.json`, mode 0600) that holds the credentials the manager issued.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use tapfleet_schemas::{EnrollRequest, EnrollResponse, EnrollResult, Topic, decode, encode};

use super::BrokerAddr;

/// Who this edge is, as the manager issued it. `password` is a secret: never log it.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    pub tenant: String,
    pub edge_id: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("tenant", &self.tenant)
            .field("edge_id", &self.edge_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn path(data: &Path) -> PathBuf {
    data.join("identity.json")
}

/// The saved identity, if this edge enrolled before.
pub fn load(data: &Path) -> anyhow::Result<Option<Identity>> {
    let p = path(data);
    match std::fs::read(&p) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("reading {}", p.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// Saves the identity atomically, readable by the service only.
pub fn save(data: &Path, id: &Identity) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(id)?;
    super::write_private_atomic(&path(data), &bytes)
}

/// Enrolls with a claim token: retries until the manager answers; fails if it refuses.
pub async fn enroll(broker: &BrokerAddr, token: &str, hostname: &str) -> anyhow::Result<Identity> {
    let mut backoff = Duration::from_millis(500);
    loop {
        match enroll_once(broker, token, hostname).await {
            Ok(Attempt::Granted(id)) => return Ok(id),
            Ok(Attempt::Refused(reason)) => bail!("enrollment refused by the manager: {reason}"),
            Err(e) => {
                tracing::warn!(broker = %broker, error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "enrollment attempt failed");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

enum Attempt {
    Granted(Identity),
    Refused(String),
}

async fn enroll_once(broker: &BrokerAddr, token: &str, hostname: &str) -> anyhow::Result<Attempt> {
    let session = super::random_hex(8)?;
    let request_topic = Topic::enroll_request(&session)?.to_string();
    let response_topic = Topic::enroll_response(&session)?.to_string();
    let mut opts = MqttOptions::new(format!("enroll-{session}"), &broker.host, broker.port);
    opts.set_credentials("enroll", token);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(64 * 1024, 64 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let mut req = EnrollRequest::new(
        token.to_owned(),
        session.clone(),
        hostname.to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    );
    req.requested_edge_id = Some(hostname.to_owned());
    let payload = encode(&req)?;
    let result = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match eventloop.poll().await? {
                Event::Incoming(Packet::ConnAck(_)) => {
                    client.try_subscribe(&response_topic, QoS::AtLeastOnce)?;
                }
                Event::Incoming(Packet::SubAck(_)) => {
                    client.try_publish(&request_topic, QoS::AtLeastOnce, false, payload.clone())?;
                }
                Event::Incoming(Packet::Publish(p)) if p.topic == response_topic => {
                    let resp: EnrollResponse = decode(&p.payload)?;
                    return anyhow::Ok(match resp.result {
                        EnrollResult::Accepted(g) => Attempt::Granted(Identity {
                            tenant: g.tenant,
                            edge_id: g.edge_id,
                            username: g.username,
                            password: g.password,
                        }),
                        EnrollResult::Refused { reason } => Attempt::Refused(reason),
                    });
                }
                _ => {}
            }
        }
    })
    .await
    .context("no enrollment answer within 20 s")?;
    let _ = client.try_disconnect();
    result
}
