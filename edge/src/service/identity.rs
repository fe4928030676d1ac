//! The edge's identity: enrollment with a claim token over MQTT, and the identity file
//! (`DATA/identity.json`, mode 0600) that holds the credentials the manager issued.
//!
//! Certificates (fleet provisioning by claim): at enrollment the edge makes its own key pair
//! (ECDSA P-256, `DATA/identity.key`, mode 0600, never sent) and sends a CSR; the manager's
//! fleet CA returns a certificate naming the edge and its tenant plus the CA certificate, both
//! kept in the identity file. Renewal ([`spawn_renewal`]): when less than a third of the
//! certificate's lifetime is left ([`renewal_due`]), the edge connects with its current identity,
//! sends a new CSR on its own session `renew-{edge id}` and puts the new certificate into the
//! running connections' [`CertSlot`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use tapfleet_schemas::{EnrollRequest, EnrollResponse, EnrollResult, Topic, decode, encode};

use super::BrokerAddr;
use super::net::CertSlot;

/// Who this edge is, as the manager issued it. `password` is a secret: never log it.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    pub tenant: String,
    pub edge_id: String,
    pub username: String,
    pub password: String,
    /// The edge's certificate from the fleet CA (PEM); its key is `DATA/identity.key`.
    #[serde(default)]
    pub certificate_pem: Option<String>,
    /// The fleet CA certificate (PEM).
    #[serde(default)]
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("tenant", &self.tenant)
            .field("edge_id", &self.edge_id)
            .field("username", &self.username)
            .field("certificate", &self.certificate_pem.is_some())
            .finish_non_exhaustive()
    }
}

fn path(data: &Path) -> PathBuf {
    data.join("identity.json")
}

fn key_path(data: &Path) -> PathBuf {
    data.join("identity.key")
}

/// The private key of the edge's certificate (PEM), if it has one.
pub fn load_key(data: &Path) -> anyhow::Result<Option<String>> {
    let p = key_path(data);
    match std::fs::read_to_string(&p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// A new key pair (ECDSA P-256) and a CSR for it: (key PEM, CSR PEM). The CSR's names are a
/// wish only; the manager's CA decides what the certificate says.
pub fn new_key_and_csr(name: &str) -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key.serialize_pem(), csr))
}

/// `notBefore`, `notAfter` of a PEM certificate (Unix seconds).
pub fn cert_validity(cert_pem: &str) -> anyhow::Result<(i64, i64)> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).context("certificate PEM")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("certificate: {e}"))?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Whether a certificate valid from `not_before` to `not_after` should be renewed at `now`
/// (all Unix seconds): less than a third of its lifetime left. Pure.
pub fn renewal_due(not_before: i64, not_after: i64, now: i64) -> bool {
    let lifetime = not_after.saturating_sub(not_before);
    lifetime <= 0 || not_after.saturating_sub(now) < lifetime / 3
}

/// Saves the key and identity (key first: an identity never names a certificate whose key is
/// missing).
fn save_with_key(data: &Path, id: &Identity, key_pem: Option<&str>) -> anyhow::Result<()> {
    if let Some(k) = key_pem {
        super::write_private_atomic(&key_path(data), k.as_bytes())?;
    }
    save(data, id)
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

/// Enrolls with a claim token and a new key pair: retries until the manager answers; fails if
/// it refuses. Saves the identity (and key) in `data`.
pub async fn enroll(
    broker: &BrokerAddr,
    token: &str,
    hostname: &str,
    data: &Path,
) -> anyhow::Result<Identity> {
    let (key_pem, csr_pem) = new_key_and_csr(hostname)?;
    let mut backoff = Duration::from_millis(500);
    loop {
        let session = super::random_hex(8)?;
        let who = Who::Claim { token };
        match exchange(broker, &who, &session, hostname, &csr_pem).await {
            Ok(Attempt::Granted(id)) => {
                let key = id.certificate_pem.as_ref().map(|_| key_pem.as_str());
                save_with_key(data, &id, key)?;
                return Ok(id);
            }
            Ok(Attempt::Refused(reason)) => bail!("enrollment refused by the manager: {reason}"),
            Err(e) => {
                tracing::warn!(broker = %broker, error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "enrollment attempt failed");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Renews the certificate once: connects as the edge, sends a new CSR on its renewal session.
/// Saves and returns the new identity (same password), and the new key.
pub async fn renew(
    broker: &BrokerAddr,
    current: &Identity,
    hostname: &str,
    data: &Path,
) -> anyhow::Result<(Identity, String)> {
    let (key_pem, csr_pem) = new_key_and_csr(&current.edge_id)?;
    let session = format!("renew-{}", current.edge_id);
    match exchange(broker, &Who::Edge(current), &session, hostname, &csr_pem).await? {
        Attempt::Granted(mut id) => {
            anyhow::ensure!(
                id.edge_id == current.edge_id && id.certificate_pem.is_some(),
                "renewal answered for another edge or without a certificate"
            );
            if id.password.is_empty() {
                id.password = current.password.clone();
            }
            save_with_key(data, &id, Some(&key_pem))?;
            Ok((id, key_pem))
        }
        Attempt::Refused(reason) => bail!("renewal refused by the manager: {reason}"),
    }
}

/// Checks the certificate every `every` (and at once) and renews it when due, refilling `slot`
/// so the next TLS handshake presents the new certificate. Failures are logged and retried.
pub fn spawn_renewal(
    broker: BrokerAddr,
    mut current: Identity,
    hostname: String,
    data: PathBuf,
    slot: Arc<CertSlot>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Some(cert) = &current.certificate_pem {
                let due = match cert_validity(cert) {
                    Ok((nb, na)) => renewal_due(nb, na, super::now_ms() / 1000),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "own certificate unreadable: renewing");
                        true
                    }
                };
                if due {
                    match renew(&broker, &current, &hostname, &data).await {
                        Ok((id, key)) => {
                            if let Some(c) = &id.certificate_pem
                                && let Err(e) = slot.set(c, &key)
                            {
                                tracing::error!(error = %format!("{e:#}"), "renewed certificate unusable");
                            }
                            tracing::info!(edge = %id.edge_id, "certificate renewed");
                            current = id;
                        }
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "certificate renewal failed")
                        }
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

enum Attempt {
    Granted(Identity),
    Refused(String),
}

/// Who asks: a new edge with a claim token, or an enrolled edge renewing.
enum Who<'a> {
    Claim { token: &'a str },
    Edge(&'a Identity),
}

async fn exchange(
    broker: &BrokerAddr,
    who: &Who<'_>,
    session: &str,
    hostname: &str,
    csr_pem: &str,
) -> anyhow::Result<Attempt> {
    let request_topic = Topic::enroll_request(session)?.to_string();
    let response_topic = Topic::enroll_response(session)?.to_string();
    let (client_id, token) = match who {
        Who::Claim { token } => (format!("enroll-{session}"), *token),
        Who::Edge(id) => (format!("{}-renew", id.edge_id), ""),
    };
    let mut opts = MqttOptions::new(client_id, &broker.host, broker.port);
    match who {
        Who::Claim { token } => opts.set_credentials("enroll", *token),
        Who::Edge(id) => opts.set_credentials(&id.username, &id.password),
    };
    if let Some(tls) = &broker.tls {
        tls.apply(&mut opts);
    }
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(64 * 1024, 64 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let mut req = EnrollRequest::new(
        token.to_owned(),
        session.to_owned(),
        hostname.to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    );
    req.requested_edge_id = Some(hostname.to_owned());
    req.csr_pem = Some(csr_pem.to_owned());
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
                            certificate_pem: g.certificate_pem,
                            ca_pem: g.ca_pem,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_when_a_third_of_the_lifetime_is_left() {
        let (nb, na) = (1_000, 1_000 + 90 * 86_400);
        assert!(!renewal_due(nb, na, nb));
        assert!(!renewal_due(nb, na, na - 31 * 86_400));
        assert!(renewal_due(nb, na, na - 29 * 86_400));
        assert!(renewal_due(nb, na, na + 1));
        assert!(renewal_due(5, 5, 0), "a zero lifetime is always due");
    }

    #[test]
    fn a_new_key_and_csr_are_pem_and_the_key_stays_out_of_debug() {
        let (key, csr) = new_key_and_csr("pbx-1").expect("key + csr");
        assert!(key.contains("PRIVATE KEY") && csr.contains("CERTIFICATE REQUEST"));
        let id = Identity {
            tenant: "t".into(),
            edge_id: "e".into(),
            username: "e".into(),
            password: "s3cret".into(),
            certificate_pem: None,
            ca_pem: None,
        };
        assert!(!format!("{id:?}").contains("s3cret"));
        let dir = tempfile::tempdir().expect("tempdir");
        save_with_key(dir.path(), &id, Some(&key)).expect("saved");
        use std::os::unix::fs::PermissionsExt;
        for f in ["identity.key", "identity.json"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        assert_eq!(load_key(dir.path()).expect("read"), Some(key));
    }
}
