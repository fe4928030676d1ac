//! The dispatcher: handles every message the manager receives over MQTT, except the file IO of
//! transfers, which it hands to the mover ([`crate::mover`]).
//!
//! - CONNACK: subscribe (rumqttc never re-subscribes) and republish each edge's desired config,
//!   retained (the broker may have restarted and forgotten it).
//! - Enrollment: check the claim token, create or re-issue the edge, its credentials and its
//!   config (version 1 = the config layers, [`crate::config_api::initial_config`]), publish the config retained, then the grant.
//! - Per-edge channels: the topic must name an enrolled edge of that tenant (else counted and
//!   dropped). State and telemetry update liveness; manifests enter the catalog idempotently and
//!   are acked, then an upload job is sent while files are missing from the edge's target; offers
//!   and chunks go to the mover.
//!
//! Every payload is decoded with the schemas crate; a failure is counted and logged, never fatal.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tapfleet_broker::{CredentialStore, CredentialsFile, PasswordHash, Role};
use tapfleet_schemas::topic::filter;
use tapfleet_schemas::{
    Ack, AckBody, Channel, EnrollGrant, EnrollRequest, EnrollResponse, EnrollResult, Job,
    JobAction, Manifest, ReplyBody, ReportedState, Topic,
};
use tokio::sync::mpsc;

use crate::catalog::{RecordingState, validate_manifest};
use crate::enroll::{random_hex, sanitize_edge_id, unique_edge_id};
use bytes::Bytes;

use crate::inbound::{ChunkData, Decoded, EdgeRef, InboundError, Msg};
use crate::metrics::{Metrics, inc};
use crate::mover::MoverCmd;
use crate::mqtt::{Inbound, Outbox};
use crate::store::{EdgeCredential, EdgeRecord, Store, StoreError, Upsert};
use crate::targets::Targets;

/// Last time each edge was heard from (Unix ms), shared with the HTTP API.
pub type Live = Arc<Mutex<HashMap<String, i64>>>;

/// The MQTT channels of every edge the manager subscribes to.
pub const SUBSCRIBED: [Channel; 5] = [
    Channel::State,
    Channel::Telemetry,
    Channel::Manifests,
    Channel::Replies,
    Channel::Upload,
];

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Where issued credentials go besides redb.
#[derive(Clone, Debug)]
pub struct CredentialSink {
    /// The embedded broker's store (none with an external broker).
    pub broker: Option<CredentialStore>,
    /// The credentials file for a standalone `tapfleet-broker`.
    pub file: PathBuf,
    /// An extra user kept in the file with the manager's role (the manager's own user on an
    /// external broker): user name and `sha256:salt:hash`.
    pub extra_user: Option<(String, String)>,
}

impl CredentialSink {
    /// Rewrites the credentials file from the store (atomically): every edge with its tenant.
    pub fn write_file(&self, store: &Store) -> anyhow::Result<()> {
        let revoked: HashSet<String> = store.revoked_edges()?.into_iter().map(|(e, _)| e).collect();
        let now = now_ms();
        let mut f = CredentialsFile {
            // Only tokens usable now (the standalone broker cannot check expiry itself).
            claim_tokens: store
                .claims()?
                .into_iter()
                .filter(|(_, t)| crate::tokens::check(t, now, false).is_ok())
                .map(|(d, _)| d)
                .collect(),
            revoked: revoked.iter().cloned().collect(),
            ..CredentialsFile::default()
        };
        for (user, c) in store.credentials()? {
            if revoked.contains(&user) {
                continue;
            }
            f.users.insert(user.clone(), c.hash);
            f.tenants.insert(user, c.tenant);
        }
        if let Some((u, h)) = &self.extra_user {
            f.users.insert(u.clone(), h.clone());
            f.tenants.remove(u);
            f.managers.push(u.clone());
        }
        f.write_atomic(&self.file)?;
        Ok(())
    }
}

/// The dispatcher's state.
pub struct Fleet {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub outbox: Outbox,
    pub mover: mpsc::Sender<MoverCmd>,
    pub targets: Targets,
    pub creds: CredentialSink,
    pub live: Live,
    /// User jobs, told about edges' replies to them (set by `serve`).
    pub jobs: Option<crate::jobs::Jobs>,
    /// The fleet CA that signs edges' CSRs (set by `serve`); none: password credentials only.
    pub ca: Option<Arc<tapfleet_broker::FleetCa>>,
    /// Alert rules, told about state and telemetry (set by `serve`).
    pub alerts: Option<Arc<crate::alerting::Alerter>>,
    /// edge id -> tenant of every enrolled edge.
    known: HashMap<String, String>,
}

impl Fleet {
    pub fn new(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        outbox: Outbox,
        mover: mpsc::Sender<MoverCmd>,
        targets: Targets,
        creds: CredentialSink,
        live: Live,
    ) -> Result<Self, StoreError> {
        let known = store
            .edges()?
            .into_iter()
            .map(|e| (e.edge_id, e.tenant))
            .collect();
        Ok(Fleet {
            store,
            metrics,
            outbox,
            mover,
            targets,
            creds,
            live,
            jobs: None,
            ca: None,
            alerts: None,
            known,
        })
    }

    /// Runs until the inbound channel closes.
    pub async fn run(mut self, mut inbound: mpsc::Receiver<Inbound>) {
        while let Some(msg) = inbound.recv().await {
            if let Err(e) = self.handle(msg).await {
                tracing::error!(error = %e, "message not handled");
            }
        }
    }

    /// Handles one inbound event.
    pub async fn handle(&mut self, msg: Inbound) -> anyhow::Result<()> {
        match msg {
            Inbound::Connected => self.on_connected(),
            Inbound::Publish { topic, payload } => self.on_publish(&topic, payload).await,
        }
    }

    fn on_connected(&mut self) -> anyhow::Result<()> {
        inc(&self.metrics.mqtt_connects_total);
        self.outbox.subscribe(filter::enroll_requests());
        for ch in SUBSCRIBED {
            self.outbox.subscribe(filter::all_edges(ch));
        }
        let mut n = 0;
        for (edge, tenant) in &self.known {
            if let Some(cfg) = self.store.latest_config(edge)? {
                self.outbox
                    .send(&Topic::edge(tenant, edge, Channel::Config)?, &cfg);
                n += 1;
            }
        }
        tracing::info!(configs = n, "subscribed and republished retained configs");
        Ok(())
    }

    async fn on_publish(&mut self, topic: &str, payload: Bytes) -> anyhow::Result<()> {
        // Decoded without IO first (`inbound`, fuzzed); a failure is counted and logged.
        let Decoded { from, message } = match crate::inbound::decode(topic, &payload) {
            Ok(i) => i,
            Err(e) => {
                inc(&self.metrics.decode_errors_total);
                tracing::warn!(%topic, bytes = payload.len(), error = %e, "inbound message dropped");
                if let InboundError::Enroll { session, .. } = e {
                    self.answer_enroll(&session, Err("malformed enrollment request".into()))?;
                }
                return Ok(());
            }
        };
        match (from, message) {
            (None, Msg::Enroll { session, request }) => {
                let result = self.enroll(&session, &request);
                self.answer_enroll(&session, result)
            }
            (Some(EdgeRef { tenant, edge }), message) => {
                if self.known.get(&edge) != Some(&tenant) {
                    inc(&self.metrics.unknown_edge_messages_total);
                    tracing::warn!(%tenant, %edge, %topic, "message from an edge that is not enrolled");
                    return Ok(());
                }
                self.on_edge(&tenant, &edge, message, &payload).await
            }
            (None, _) => Ok(()),
        }
    }

    async fn on_edge(
        &mut self,
        tenant: &str,
        edge: &str,
        message: Msg,
        payload: &Bytes,
    ) -> anyhow::Result<()> {
        match message {
            Msg::StateCleared | Msg::Enroll { .. } => {}
            Msg::State(s) => {
                if let Some(a) = &self.alerts {
                    a.presence(tenant, edge, s.online, now_ms());
                }
                self.on_state(edge, s)?;
            }
            Msg::Telemetry(t) => {
                // Liveness, the telemetry history and the alert rules.
                self.touch(edge);
                self.store.telemetry.record(edge, &t, now_ms());
                if let Some(a) = &self.alerts {
                    a.telemetry(tenant, edge, &t, now_ms());
                }
            }
            Msg::Manifest(m) => {
                self.touch(edge);
                self.on_manifest(tenant, edge, *m).await?;
            }
            Msg::Reply(r) => {
                self.touch(edge);
                match r.body {
                    ReplyBody::Offer(offer) => {
                        let cmd = MoverCmd::Offer {
                            tenant: tenant.to_owned(),
                            edge: edge.to_owned(),
                            offer,
                        };
                        self.mover.send(cmd).await?;
                    }
                    body @ (ReplyBody::DownloadAccept { .. }
                    | ReplyBody::DownloadChunk { .. }
                    | ReplyBody::DownloadStored { .. }
                    | ReplyBody::DownloadFailed { .. }) => {
                        if let Some(jobs) = &self.jobs {
                            jobs.relay.deliver(edge, body);
                        }
                    }
                    other => {
                        tracing::info!(%edge, job_id = ?r.job_id, reply = ?other, "job reply");
                        if let (Some(jobs), Some(id)) = (&self.jobs, &r.job_id) {
                            jobs.on_reply(id, other);
                        }
                    }
                }
            }
            Msg::Chunk(c) => {
                // The data stays in the payload's buffer: no copy.
                let data = match c.data {
                    ChunkData::InPayload(r) => payload.slice(r),
                    ChunkData::Owned(v) => Bytes::from(v),
                };
                let cmd = MoverCmd::Chunk {
                    tenant: tenant.to_owned(),
                    edge: edge.to_owned(),
                    chunk: crate::mover::Chunk {
                        transfer_id: c.transfer_id,
                        offset: c.offset,
                        data,
                    },
                };
                self.mover.send(cmd).await?;
            }
        }
        Ok(())
    }

    fn touch(&self, edge: &str) {
        if let Ok(mut live) = self.live.lock() {
            live.insert(edge.to_owned(), now_ms());
        }
    }

    fn on_state(&mut self, edge: &str, s: ReportedState) -> anyhow::Result<()> {
        self.touch(edge);
        if let Some(mut rec) = self.store.edge(edge)? {
            rec.online = s.online;
            rec.reported_config_version = s.config_version;
            rec.config_error = s.config_error;
            if !s.software_version.is_empty() {
                rec.software_version = s.software_version;
            }
            rec.last_seen_ms = Some(now_ms());
            self.store.put_edge(&rec)?;
        }
        Ok(())
    }

    async fn on_manifest(&mut self, tenant: &str, edge: &str, m: Manifest) -> anyhow::Result<()> {
        inc(&self.metrics.manifests_received_total);
        let acks = Topic::edge(tenant, edge, Channel::Acks)?;
        let refuse = |reason: String| {
            Ack::new(AckBody::ManifestRefused {
                recording_id: m.recording_id.clone(),
                reason,
            })
        };
        if let Err(reason) = validate_manifest(&m) {
            inc(&self.metrics.manifests_refused_total);
            tracing::warn!(%edge, recording_id = %m.recording_id, %reason, "manifest refused");
            self.outbox.send(&acks, &refuse(reason));
            return Ok(());
        }
        let entry = match self.store.upsert_manifest(&m, tenant, edge)? {
            Upsert::New(e) => {
                tracing::info!(%edge, recording_id = %m.recording_id, files = m.files.len(), "manifest cataloged");
                e
            }
            Upsert::Duplicate(e) => {
                inc(&self.metrics.manifest_duplicates_total);
                tracing::info!(%edge, recording_id = %m.recording_id, "duplicate manifest acked again");
                e
            }
            Upsert::Conflict { owner } => {
                inc(&self.metrics.manifests_refused_total);
                let reason = format!("recording id already cataloged for edge {owner}");
                self.outbox.send(&acks, &refuse(reason));
                return Ok(());
            }
        };
        self.outbox.send(
            &acks,
            &Ack::new(AckBody::Manifest {
                recording_id: m.recording_id.clone(),
            }),
        );
        // Storage policy: where this edge's recordings go.
        let policy = self
            .store
            .latest_config(edge)?
            .map(|c| c.edge.storage)
            .unwrap_or_default();
        // `edge:<id>`: uploaded into the relay's staging, then relayed (crate::relay).
        let target = crate::relay::upload_target(&policy.target);
        if target == crate::jobs::EDGE_LOCAL || policy.keep_local_copy {
            // The edge keeps the files: the catalog records that copy (`edge:<id>`).
            let here = crate::catalog::edge_target(edge);
            if !entry.targets().contains(&here) {
                let only_copy = target == crate::jobs::EDGE_LOCAL;
                self.store.update_recording(&m.recording_id, |e| {
                    for f in &mut e.files {
                        let loc = crate::catalog::Location {
                            target: here.clone(),
                            path: format!("{}/{}", e.recording_id, f.name),
                        };
                        if !f.locations.contains(&loc) {
                            f.locations.push(loc);
                        }
                    }
                    e.manifest_locations.push(crate::catalog::Location {
                        target: here.clone(),
                        path: format!("{}/manifest.json", e.recording_id),
                    });
                    if only_copy {
                        e.state = RecordingState::Stored;
                    }
                })?;
                tracing::info!(%edge, recording_id = %m.recording_id, "recording kept in the edge's local storage");
            }
        }
        if self.targets.get(&target).is_none() {
            if target != crate::jobs::EDGE_LOCAL {
                tracing::warn!(%edge, %target, "storage target is not configured; no upload job");
            }
            return Ok(());
        }
        if !entry.all_stored_in(&target) {
            let job_id = format!("upload-{}", self.store.next_id("job")?);
            let job = Job::new(
                job_id.clone(),
                JobAction::Upload {
                    recording_id: m.recording_id.clone(),
                    files: Vec::new(),
                },
            );
            self.outbox
                .send(&Topic::edge(tenant, edge, Channel::Jobs)?, &job);
            tracing::info!(%edge, %job_id, recording_id = %m.recording_id, %target, "upload job sent");
        } else if !entry.manifest_locations.iter().any(|l| l.target == target) {
            self.mover
                .send(MoverCmd::Finalize {
                    recording_id: m.recording_id.clone(),
                    target,
                })
                .await?;
        }
        Ok(())
    }

    /// Sends the enrollment session its answer.
    fn answer_enroll(
        &mut self,
        session: &str,
        result: Result<EnrollGrant, String>,
    ) -> anyhow::Result<()> {
        let response_topic = Topic::enroll_response(session)?;
        let result = match result {
            Ok(grant) => {
                inc(&self.metrics.enrollments_accepted_total);
                EnrollResult::Accepted(grant)
            }
            Err(reason) => {
                inc(&self.metrics.enrollments_refused_total);
                tracing::warn!(%session, %reason, "enrollment refused");
                EnrollResult::Refused { reason }
            }
        };
        self.outbox.send(
            &response_topic,
            &EnrollResponse::new(session.to_owned(), result),
        );
        Ok(())
    }

    /// Enrolls an edge; the error is the refusal reason sent back.
    fn enroll(&mut self, session: &str, req: &EnrollRequest) -> Result<EnrollGrant, String> {
        let internal = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "enrollment failed");
            "internal error".to_owned()
        };
        if req.session != session {
            return Err("session does not match the topic".into());
        }
        let now = now_ms();
        let revoked: HashSet<String> = self
            .store
            .revoked_edges()
            .map_err(|e| internal(&e))?
            .into_iter()
            .map(|(e, _)| e)
            .collect();
        let edges = self.store.edges().map_err(|e| internal(&e))?;
        let renewing = session.strip_prefix(tapfleet_broker::acl::RENEW_SESSION_PREFIX);
        let (digest, tenant, existing) = if let Some(edge) = renewing {
            // Only that edge, connected with its own credentials, can publish on its renewal
            // session (the broker's ACL): no claim token needed.
            let rec = edges
                .iter()
                .find(|e| e.edge_id == edge)
                .cloned()
                .ok_or_else(|| "unknown edge".to_owned())?;
            (rec.claim_digest.clone(), rec.tenant.clone(), Some(rec))
        } else {
            let digest = tapfleet_broker::claim_token_digest(&req.token);
            let claim = self
                .store
                .claim(&digest)
                .map_err(|e| internal(&e))?
                .ok_or_else(|| "invalid claim token".to_owned())?;
            crate::tokens::check(&claim, now, false).map_err(|e| e.to_string())?;
            // Same host, same token: the same edge again (idempotent), with a new password.
            let existing = edges
                .iter()
                .find(|e| {
                    e.tenant == claim.tenant
                        && e.hostname == req.hostname
                        && e.claim_digest == digest
                })
                .cloned();
            if existing.is_none() {
                // A new edge uses the token once.
                crate::tokens::check(&claim, now, true).map_err(|e| e.to_string())?;
                let mut used = claim.clone();
                used.uses += 1;
                self.store
                    .put_claim(&digest, &used)
                    .map_err(|e| internal(&e))?;
            }
            (digest, claim.tenant, existing)
        };
        if let Some(e) = &existing
            && revoked.contains(&e.edge_id)
        {
            return Err("edge revoked".into());
        }
        let mut rec = match existing {
            Some(e) => e,
            None => {
                let wish = req.requested_edge_id.as_deref().unwrap_or(&req.hostname);
                let mut taken: HashSet<String> = edges.iter().map(|e| e.edge_id.clone()).collect();
                taken.extend(revoked.iter().cloned());
                let edge_id = unique_edge_id(&sanitize_edge_id(wish), &taken);
                EdgeRecord {
                    edge_id,
                    tenant: tenant.clone(),
                    hostname: req.hostname.clone(),
                    claim_digest: digest,
                    software_version: String::new(),
                    enrolled_ms: now_ms(),
                    online: false,
                    reported_config_version: None,
                    config_error: None,
                    last_seen_ms: None,
                }
            }
        };
        rec.software_version = req.software_version.clone();
        let edge_id = rec.edge_id.clone();
        let certificate_pem = match (&req.csr_pem, &self.ca) {
            (Some(csr), Some(ca)) => Some(
                ca.sign_edge_csr(
                    csr,
                    &tenant,
                    &edge_id,
                    now / 1000,
                    crate::ca::EDGE_CERT_LIFETIME_S,
                )
                .map_err(|e| format!("bad certificate signing request: {e}"))?,
            ),
            _ => None,
        };
        // A renewal keeps the edge's password (the grant's is empty); an enrollment issues one.
        let (password, hash) = if renewing.is_some() {
            (String::new(), None)
        } else {
            let password = random_hex(24).map_err(|e| internal(&e))?;
            let hash = PasswordHash::new(&password).map_err(|e| internal(&e))?;
            self.store
                .put_credential(
                    &edge_id,
                    &EdgeCredential {
                        hash: hash.to_string(),
                        tenant: tenant.clone(),
                    },
                )
                .map_err(|e| internal(&e))?;
            (password, Some(hash))
        };
        self.store.put_edge(&rec).map_err(|e| internal(&e))?;
        let cfg = match self
            .store
            .latest_config(&edge_id)
            .map_err(|e| internal(&e))?
        {
            Some(c) => c,
            // Version 1: the config layers (defaults, groups) as they are now.
            None => crate::config_api::initial_config(&self.store, &edge_id, now)
                .map_err(|e| internal(&e))?,
        };
        if let (Some(b), Some(hash)) = (&self.creds.broker, hash) {
            b.insert_hash(
                &edge_id,
                hash,
                Role::Edge {
                    tenant: tenant.clone(),
                },
            );
        }
        if let Err(e) = self.creds.write_file(&self.store) {
            tracing::error!(error = %e, "credentials file not written");
        }
        self.known.insert(edge_id.clone(), tenant.clone());
        let cfg_topic =
            Topic::edge(&tenant, &edge_id, Channel::Config).map_err(|e| internal(&e))?;
        self.outbox.send(&cfg_topic, &cfg);
        tracing::info!(%tenant, edge = %edge_id, hostname = %req.hostname, renewal = renewing.is_some(), certificate = certificate_pem.is_some(), "edge enrolled");
        Ok(EnrollGrant {
            tenant,
            username: edge_id.clone(),
            edge_id,
            password,
            ca_pem: certificate_pem
                .as_ref()
                .and_then(|_| self.ca.as_ref().map(|c| c.cert_pem().to_owned())),
            certificate_pem,
        })
    }
}
