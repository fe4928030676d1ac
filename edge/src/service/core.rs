//! The core task of the service: owns the cache and the applied config, and turns what arrives
//! (recorder events, MQTT messages, upload progress, timers) into cache updates and publishes.
//!
//! Delivery rules it keeps:
//! - a manifest is re-published (outbox) on every (re)connect and every `OUTBOX_RESEND` until
//!   the manager's `Ack::Manifest` arrives; only then is the recording `Announced`;
//! - files of announced recordings are offered in order when the cache policy says so (or at
//!   once on an upload job); the next file is offered as soon as every chunk of the current one
//!   is acknowledged while the manager commits up to three earlier ones (`inflight.rs`); an
//!   offer without answer is made again;
//! - a recording becomes `Stored` only on the manager's `Ack::Stored` for each of its files;
//! - storage policy `edge-local`: recordings are announced but uploaded only on a job (the
//!   manager fetching one), and with `edge-local` or `keep_local_copy` nothing is evicted (this
//!   cache is a copy the catalog lists as `edge:<edge_id>`).
//! - recordings held for others (`cache::held`, downloads from the manager): a `Download` job
//!   already held is answered `DownloadStored` here; else the offer is decided here with the
//!   room left (`receive::Reservations`: every accepted, unfinished download reserves its full
//!   size until it is indexed, fails, is re-offered or sits a minute without a chunk), refused
//!   with `DownloadFailed` or handed to the download task; its `Verified` is indexed (and the
//!   reservation released) before `DownloadStored` is sent. Upload and delete jobs reach held
//!   recordings too (a fetch back, a move away); nothing else uploads or evicts them.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use rumqttc::{AsyncClient, QoS};
use tapfleet_schemas::{
    Ack, AckBody, CaptureConfig, Channel, DesiredConfig, EdgeConfig, Job, JobAction, JobReply,
    Manifest, Message, ReplyBody, ReportedState, SCHEMA_VERSION, Telemetry, Topic, TransferOffer,
    encode,
};
use tokio::sync::mpsc;

use super::capture_thread::{self, CaptureCounters, CaptureMsg, Source};
use super::download::{self, DownloadCmd, DownloadEvent};
use super::identity::Identity;
use super::inflight::InFlight;
use super::metrics::CoreMetrics;
use super::net::{self, Conn, NetEvent};
use super::upload::{self, UploadCmd, UploadEvent};
use super::{BrokerAddr, now_ms};
use crate::cache::{Cache, State, policy};
use crate::calls::direction::SiteNetworks;
use crate::inbound::{Inbound, InboundError};
use crate::receive::{ABANDON_MS, HeldFile, OfferDecision, Reservations, Room};
use crate::recorder::{RecorderEvent, RecorderOptions};
use crate::transfer::SenderConfig;

/// The storage policy target meaning "this edge keeps its recordings".
const EDGE_LOCAL: &str = "edge-local";
const OUTBOX_RESEND: Duration = Duration::from_secs(10);
/// An offer unanswered this long is made again (cheap and idempotent at the manager). Short,
/// because an offer made while the manager is not subscribed (a broker restart: the edge often
/// reconnects first) is simply lost.
const OFFER_TIMEOUT: Duration = Duration::from_secs(5);
/// A file all acknowledged but not `Stored` this long (the manager lost it, e.g. killed while
/// the edge stayed connected to another broker) is offered again: the manager resumes it or
/// answers `Stored` at once.
const STORED_TIMEOUT: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(500);

/// Everything the core needs to start.
pub struct Setup {
    pub data: PathBuf,
    pub broker: BrokerAddr,
    pub identity: Identity,
    pub hostname: String,
    pub config: Option<DesiredConfig>,
    pub source: Source,
    pub metrics: Option<std::net::SocketAddr>,
}

struct Topics {
    config: String,
    state: String,
    telemetry: String,
    manifests: String,
    jobs: String,
    replies: String,
    acks: String,
    upload: String,
    download: String,
}

impl Topics {
    fn new(id: &Identity) -> anyhow::Result<Topics> {
        let t = |c| Topic::edge(&id.tenant, &id.edge_id, c).map(|t| t.to_string());
        Ok(Topics {
            config: t(Channel::Config)?,
            state: t(Channel::State)?,
            telemetry: t(Channel::Telemetry)?,
            manifests: t(Channel::Manifests)?,
            jobs: t(Channel::Jobs)?,
            replies: t(Channel::Replies)?,
            acks: t(Channel::Acks)?,
            upload: t(Channel::Upload)?,
            download: t(Channel::Download)?,
        })
    }
}

/// The capture thread and what it takes to start it again when capture settings change.
struct CaptureCtl {
    source: Source,
    out_dir: PathBuf,
    edge_id: String,
    tx: mpsc::Sender<CaptureMsg>,
    /// The running thread's stop flag.
    stop: Arc<AtomicBool>,
    running: bool,
    /// Settings to start with once the running thread has ended.
    pending: Option<CaptureConfig>,
}

impl CaptureCtl {
    /// Starts a capture thread with `cfg` (its interfaces, when set, replace the command line's).
    fn start(
        &mut self,
        cfg: &CaptureConfig,
        counters: &Arc<CaptureCounters>,
        metrics: &CoreMetrics,
    ) -> anyhow::Result<()> {
        let source = match &self.source {
            Source::Live(_) if !cfg.interfaces.is_empty() => Source::Live(cfg.interfaces.clone()),
            s => s.clone(),
        };
        self.stop = Arc::new(AtomicBool::new(false));
        capture_thread::spawn(
            source,
            cfg.clone(),
            self.out_dir.clone(),
            recorder_options(&self.edge_id, cfg),
            self.tx.clone(),
            counters.clone(),
            self.stop.clone(),
        )?;
        self.running = true;
        metrics.capture_starts_total.fetch_add(1, Ordering::Relaxed);
        tracing::info!(snaplen = cfg.snaplen, rtp_timeout_secs = cfg.rtp_timeout_secs, interfaces = ?cfg.interfaces, "capture started");
        Ok(())
    }

    /// Restarts the capture with new settings: stops the running thread (its calls end as at
    /// the end of a capture) and starts a new one when it has ended.
    fn restart(
        &mut self,
        cfg: &CaptureConfig,
        counters: &Arc<CaptureCounters>,
        metrics: &CoreMetrics,
    ) -> anyhow::Result<()> {
        tracing::info!("capture settings changed: restarting the capture");
        if self.running {
            self.stop.store(true, Ordering::Relaxed);
            self.pending = Some(cfg.clone());
            Ok(())
        } else {
            self.start(cfg, counters, metrics)
        }
    }
}

fn recorder_options(edge_id: &str, cfg: &CaptureConfig) -> RecorderOptions {
    // A config with a bad network was refused by `inbound::validate_config`; should one get here
    // anyway, calls are recorded with an unknown direction.
    let networks =
        SiteNetworks::parse(&cfg.local_networks, &cfg.trunk_networks).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "site networks ignored: call directions are unknown");
            SiteNetworks::default()
        });
    RecorderOptions {
        edge_id: Some(edge_id.to_owned()),
        rtp_timeout_ns: i64::from(cfg.rtp_timeout_secs.max(1)) * 1_000_000_000,
        max_call_ns: i64::from(cfg.max_call_secs) * 1_000_000_000,
        networks,
        ..RecorderOptions::default()
    }
}

struct Core {
    data: PathBuf,
    hostname: String,
    cache: Cache,
    topics: Topics,
    control: AsyncClient,
    config: Option<DesiredConfig>,
    config_error: Option<String>,
    upload_tx: mpsc::UnboundedSender<UploadCmd>,
    /// The bulk connection (downloads arrive on it).
    bulk: AsyncClient,
    download_tx: mpsc::UnboundedSender<DownloadCmd>,
    /// Downloads accepted and not finished: their sizes count as used (in memory only).
    reservations: Reservations,
    queue: VecDeque<(String, String)>,
    queued: BTreeSet<(String, String)>,
    /// Files of recordings stored already that a job asked to upload again (a copy into another
    /// target): offered despite their state, until stored.
    again: BTreeSet<(String, String)>,
    /// The files offered, being sent or waiting for `Stored` (at most two).
    inflight: InFlight<tokio::time::Instant>,
    connected: bool,
    counters: Arc<CaptureCounters>,
    capture: CaptureCtl,
    metrics: Arc<CoreMetrics>,
    errors: u64,
    transfer_failures: u64,
    sent_bytes: u64,
    last_outbox: tokio::time::Instant,
    last_telemetry: tokio::time::Instant,
}

/// Runs the service until Ctrl-C / SIGTERM.
pub async fn run(setup: Setup) -> anyhow::Result<()> {
    let cache = Cache::open(&setup.data.join("cache")).context("opening the cache")?;
    let topics = Topics::new(&setup.identity)?;
    let (net_tx, mut net_rx) = mpsc::unbounded_channel();
    let will = encode(&ReportedState::offline(
        env!("CARGO_PKG_VERSION").to_owned(),
        setup.hostname.clone(),
    ))?;
    let control = net::connect(
        &setup.broker,
        &setup.identity,
        Conn::Control,
        Some((topics.state.clone(), will)),
        net_tx.clone(),
    );
    let bulk = net::connect(&setup.broker, &setup.identity, Conn::Bulk, None, net_tx);
    let (download_tx, download_rx) = mpsc::unbounded_channel();
    let (download_ev_tx, mut download_ev_rx) = mpsc::unbounded_channel();
    tokio::spawn(download::run(
        control.clone(),
        topics.replies.clone(),
        download_rx,
        download_ev_tx,
    ));
    let (upload_tx, upload_rx) = mpsc::unbounded_channel();
    let (upload_ev_tx, mut upload_ev_rx) = mpsc::unbounded_channel();
    tokio::spawn(upload::run(
        bulk.clone(),
        topics.upload.clone(),
        SenderConfig::default(),
        upload_rx,
        upload_ev_tx,
    ));

    let counters = Arc::new(CaptureCounters::default());
    let (cap_tx, mut cap_rx) = mpsc::channel(1024);
    let capture_cfg = setup
        .config
        .as_ref()
        .map(|c| c.edge.capture.clone())
        .unwrap_or_default();
    let opts = recorder_options(&setup.identity.edge_id, &capture_cfg);
    // Before capturing: whatever an earlier run left half-written is finalized, not lost.
    let report =
        super::recover::reconcile(&cache, &opts, now_ms()).context("reconciling the cache")?;
    if report != super::recover::Report::default() {
        tracing::warn!(?report, "cache reconciled after an unclean stop");
    }
    let mut capture = CaptureCtl {
        source: setup.source,
        out_dir: cache.recordings_dir().to_path_buf(),
        edge_id: setup.identity.edge_id.clone(),
        tx: cap_tx,
        stop: Arc::new(AtomicBool::new(false)),
        running: false,
        pending: None,
    };
    let metrics = Arc::new(CoreMetrics::default());
    capture.start(&capture_cfg, &counters, &metrics)?;

    let long_ago = tokio::time::Instant::now()
        .checked_sub(Duration::from_secs(3600))
        .unwrap_or_else(tokio::time::Instant::now);
    let mut core = Core {
        data: setup.data,
        hostname: setup.hostname,
        cache,
        topics,
        control,
        config: setup.config,
        config_error: None,
        upload_tx,
        bulk,
        download_tx,
        reservations: Reservations::default(),
        queue: VecDeque::new(),
        queued: BTreeSet::new(),
        again: BTreeSet::new(),
        inflight: InFlight::default(),
        connected: false,
        counters,
        capture,
        metrics,
        errors: 0,
        transfer_failures: 0,
        sent_bytes: 0,
        last_outbox: long_ago,
        last_telemetry: long_ago,
    };
    if let Some(addr) = setup.metrics {
        let (m, c) = (core.metrics.clone(), core.counters.clone());
        tokio::spawn(async move {
            if let Err(e) = super::metrics::serve(addr, m, c).await {
                tracing::error!(error = %format!("{e:#}"), "metrics server stopped");
            }
        });
    }
    let _ = core.upload_tx.send(UploadCmd::SetRate(
        core.edge_config().cache.bandwidth_limit_bps,
    ));
    let mut tick = tokio::time::interval(TICK);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let result = tokio::select! {
            Some(ev) = net_rx.recv() => core.on_net(ev).await,
            // The core holds a sender (to restart capture), so this never ends.
            Some(msg) = cap_rx.recv() => core.on_capture(msg).await,
            Some(ev) = upload_ev_rx.recv() => core.on_upload(ev).await,
            Some(ev) = download_ev_rx.recv() => core.on_download(ev).await,
            _ = tick.tick() => core.on_tick().await,
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        };
        core.update_metrics();
        if let Err(e) = result {
            core.errors += 1;
            tracing::error!(error = %format!("{e:#}"), "service error");
        }
    }
    tracing::info!("shutting down");
    Ok(())
}

impl Core {
    /// Mirrors the core's counters into the metrics (cheap: atomics only).
    fn update_metrics(&self) {
        let m = &self.metrics;
        m.errors_total.store(self.errors, Ordering::Relaxed);
        m.connected
            .store(u64::from(self.connected), Ordering::Relaxed);
        m.config_version.store(
            self.config.as_ref().map_or(0, |c| c.version),
            Ordering::Relaxed,
        );
    }

    /// Cache gauges, refreshed on every tick.
    fn update_cache_metrics(&self, s: &crate::cache::Summary, cfg: &EdgeConfig) {
        let m = &self.metrics;
        m.recordings_recording
            .store(s.counts.recording, Ordering::Relaxed);
        m.recordings_finalized
            .store(s.counts.finalized, Ordering::Relaxed);
        m.recordings_announced
            .store(s.counts.announced, Ordering::Relaxed);
        m.recordings_stored
            .store(s.counts.stored, Ordering::Relaxed);
        m.recordings_evicted
            .store(s.counts.evicted, Ordering::Relaxed);
        m.cache_used_bytes.store(s.used_bytes, Ordering::Relaxed);
        m.cache_capacity_bytes
            .store(cfg.cache.capacity_bytes, Ordering::Relaxed);
        m.backlog_bytes.store(s.backlog_bytes, Ordering::Relaxed);
        m.backlog_oldest_seconds.store(
            s.backlog_oldest_ms
                .map_or(0, |o| u64::try_from((now_ms() - o) / 1000).unwrap_or(0)),
            Ordering::Relaxed,
        );
    }

    fn edge_config(&self) -> EdgeConfig {
        self.config
            .as_ref()
            .map(|c| c.edge.clone())
            .unwrap_or_default()
    }

    async fn publish<M: Message>(&self, topic: &str, retain: bool, msg: &M) -> anyhow::Result<()> {
        let payload = encode(msg)?;
        if M::KIND == Manifest::KIND {
            self.metrics
                .manifests_published_total
                .fetch_add(1, Ordering::Relaxed);
        }
        self.control
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .with_context(|| format!("publishing {}", M::KIND))
    }

    async fn on_net(&mut self, ev: NetEvent) -> anyhow::Result<()> {
        match ev {
            NetEvent::Connected(Conn::Control) => {
                tracing::info!("control connection up");
                self.connected = true;
                for t in [&self.topics.config, &self.topics.jobs, &self.topics.acks] {
                    self.control.subscribe(t.as_str(), QoS::AtLeastOnce).await?;
                }
                self.publish_state().await?;
                // Whatever was in flight may be lost: offer it again, resend the outbox now.
                self.restart_current();
                self.send_outbox().await?;
            }
            NetEvent::Connected(Conn::Bulk) => {
                tracing::info!("bulk connection up");
                self.bulk
                    .subscribe(self.topics.download.as_str(), QoS::AtLeastOnce)
                    .await?;
            }
            NetEvent::Disconnected(conn, reason) => {
                if conn == Conn::Control && self.connected {
                    self.connected = false;
                    tracing::warn!(reason, "control connection lost");
                } else {
                    tracing::debug!(?conn, reason, "connection down");
                }
            }
            NetEvent::Message { topic, payload } => {
                let channel = if topic == self.topics.config {
                    Channel::Config
                } else if topic == self.topics.acks {
                    Channel::Acks
                } else if topic == self.topics.jobs {
                    Channel::Jobs
                } else if topic == self.topics.download {
                    Channel::Download
                } else {
                    tracing::debug!(topic, "message on an unexpected topic");
                    return Ok(());
                };
                // Decoded and checked without IO (`crate::inbound`, fuzzed).
                match crate::inbound::decode(channel, &payload) {
                    Ok(Inbound::ConfigCleared) => {}
                    Ok(Inbound::Config(cfg)) => self.on_config(Ok(*cfg)).await?,
                    Ok(Inbound::Ack(ack)) => self.on_ack(ack).await?,
                    Ok(Inbound::Job(job)) => self.on_job(job).await?,
                    Ok(Inbound::Chunk(chunk)) => {
                        self.reservations.touch(chunk.transfer_id, now_ms());
                        let _ = self.download_tx.send(DownloadCmd::Chunk(chunk));
                    }
                    Err(InboundError::Invalid(reason)) => self.on_config(Err(reason)).await?,
                    Err(e) => {
                        self.bad_input(&topic, payload.len(), &e);
                        if channel == Channel::Config {
                            self.on_config(Err(e.to_string())).await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn bad_input(&mut self, topic: &str, bytes: usize, e: &dyn std::error::Error) {
        self.errors += 1;
        self.metrics
            .bad_messages_total
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(topic, bytes, error = %e, "undecodable message dropped");
    }

    /// A desired config that decoded and validated, or why not (kept as `config_error`).
    async fn on_config(&mut self, decoded: Result<DesiredConfig, String>) -> anyhow::Result<()> {
        match decoded {
            Ok(cfg) => {
                let current = self.config.as_ref().map(|c| c.version);
                if current.is_some_and(|v| v > cfg.version) {
                    tracing::warn!(
                        applied = current,
                        offered = cfg.version,
                        "ignoring an older config"
                    );
                } else {
                    if current != Some(cfg.version) {
                        tracing::info!(version = cfg.version, "applying config");
                        // Live: only capture settings restart the capture; the rest (cache,
                        // upload, storage, telemetry) is read from `self.config` as it goes.
                        if self.edge_config().capture != cfg.edge.capture {
                            self.capture.restart(
                                &cfg.edge.capture,
                                &self.counters,
                                &self.metrics,
                            )?;
                        }
                    }
                    super::save_config(&self.data, &cfg)?;
                    let _ = self
                        .upload_tx
                        .send(UploadCmd::SetRate(cfg.edge.cache.bandwidth_limit_bps));
                    self.config = Some(cfg);
                    self.config_error = None;
                }
            }
            Err(reason) => {
                tracing::warn!(error = %reason, "desired config refused");
                self.config_error = Some(reason);
            }
        }
        self.publish_state().await
    }

    async fn publish_state(&self) -> anyhow::Result<()> {
        let state = ReportedState {
            v: SCHEMA_VERSION,
            online: true,
            config_version: self.config.as_ref().map(|c| c.version),
            config_error: self.config_error.clone(),
            software_version: env!("CARGO_PKG_VERSION").to_owned(),
            hostname: self.hostname.clone(),
            at_ms: now_ms(),
        };
        self.publish(&self.topics.state, true, &state).await
    }

    async fn on_capture(&mut self, msg: CaptureMsg) -> anyhow::Result<()> {
        match msg {
            CaptureMsg::Recorder(RecorderEvent::Started { recording_id, .. }) => {
                self.cache.begin(&recording_id, now_ms())?;
            }
            CaptureMsg::Recorder(RecorderEvent::Finished(done)) => {
                let manifest = done.manifest;
                tracing::info!(recording = %manifest.recording_id, call_id = %manifest.call_id, bytes = manifest.total_bytes(), "recording finalized");
                self.cache.finalize(manifest.clone(), now_ms())?;
                if self.connected {
                    self.publish(&self.topics.manifests, false, &manifest)
                        .await?;
                }
            }
            CaptureMsg::Failed {
                recording_id,
                error,
            } => {
                self.errors += 1;
                tracing::error!(recording = %recording_id, error, "recording failed and was dropped");
            }
            CaptureMsg::Ended { error } => {
                self.capture.running = false;
                match error {
                    None => tracing::info!("capture source ended"),
                    Some(e) => {
                        self.errors += 1;
                        tracing::error!(error = %e, "capture stopped");
                    }
                }
                if let Some(cfg) = self.capture.pending.take() {
                    self.capture.start(&cfg, &self.counters, &self.metrics)?;
                }
            }
        }
        Ok(())
    }

    async fn on_ack(&mut self, ack: Ack) -> anyhow::Result<()> {
        match ack.body {
            AckBody::Manifest { recording_id } => {
                if self.cache.mark_announced(&recording_id, now_ms())? {
                    tracing::debug!(recording = %recording_id, "manifest acknowledged");
                    // Its files may be queued already (an upload job): offer now, not at the
                    // next tick.
                    if !self.queue.is_empty() {
                        self.offer_next_now().await?;
                    }
                }
            }
            AckBody::ManifestRefused {
                recording_id,
                reason,
            } => {
                self.errors += 1;
                tracing::error!(recording = %recording_id, reason, "manager refused a manifest");
            }
            AckBody::Accept {
                recording_id,
                file,
                transfer_id,
                offset,
            } => {
                if !self
                    .inflight
                    .current()
                    .is_some_and(|c| c.recording_id == recording_id && c.file == file)
                {
                    return Ok(()); // a stale accept
                }
                let path = self.local_file(&recording_id, &file)?;
                let size = std::fs::metadata(&path)
                    .with_context(|| format!("{}", path.display()))?
                    .len();
                self.inflight.accepted(&recording_id, &file, transfer_id);
                let _ = self.upload_tx.send(UploadCmd::Start {
                    transfer_id,
                    path,
                    size,
                    offset,
                });
            }
            AckBody::Chunk {
                transfer_id,
                next_offset,
            } => {
                let _ = self.upload_tx.send(UploadCmd::Ack {
                    transfer_id,
                    next_offset,
                });
            }
            AckBody::Stored {
                recording_id,
                file,
                target,
                location,
                ..
            } => {
                tracing::info!(recording = %recording_id, file, target, location, "file stored");
                self.again.remove(&(recording_id.clone(), file.clone()));
                let whole = self
                    .cache
                    .mark_file_stored(&recording_id, &file, now_ms())?;
                if let Some(left) = self.inflight.stored(&recording_id, &file) {
                    if left.cancel_upload {
                        let _ = self.upload_tx.send(UploadCmd::Cancel);
                    }
                    // The next file at once, not at the next tick (one file per tick would cap
                    // delivery at two files a second).
                    self.offer_next_now().await?;
                }
                if whole {
                    tracing::info!(recording = %recording_id, "recording stored");
                }
            }
            AckBody::TransferFailed {
                recording_id,
                file,
                reason,
                ..
            } => {
                self.errors += 1;
                self.transfer_failures += 1;
                tracing::warn!(recording = %recording_id, file, reason, "transfer failed; will offer again");
                if let Some(left) = self.inflight.failed(&recording_id, &file) {
                    if left.cancel_upload {
                        let _ = self.upload_tx.send(UploadCmd::Cancel);
                    }
                    self.enqueue(recording_id, file, false);
                }
            }
        }
        Ok(())
    }

    async fn on_job(&mut self, job: Job) -> anyhow::Result<()> {
        let reply = match job.action {
            JobAction::Download {
                transfer_id,
                recording_id,
                file,
                size,
                sha256,
            } => {
                return self
                    .on_download_offer(transfer_id, recording_id, file, size, sha256)
                    .await;
            }
            JobAction::Upload {
                recording_id,
                files,
            } if self.cache.get(&recording_id)?.is_none()
                && self.cache.held(&recording_id)?.is_some() =>
            {
                // A recording held for another edge: a fetch back.
                let held = self.cache.held(&recording_id)?.unwrap_or_default();
                for f in held.files.keys().filter(|f| f.as_str() != "manifest.json") {
                    if files.is_empty() || files.contains(f) {
                        self.enqueue(recording_id.clone(), f.clone(), true);
                    }
                }
                ReplyBody::Done
            }
            JobAction::Delete { recording_id }
                if self.cache.get(&recording_id)?.is_none()
                    && self.cache.held(&recording_id)?.is_some() =>
            {
                self.cache.drop_held(&recording_id)?;
                tracing::info!(recording = %recording_id, "held recording deleted");
                ReplyBody::Done
            }
            JobAction::Upload {
                recording_id,
                files,
            } => match self.cache.get(&recording_id)? {
                Some(e) if matches!(e.state, State::Finalized | State::Announced) => {
                    let manifest_files: Vec<String> = e
                        .manifest
                        .iter()
                        .flat_map(|m| m.files.iter().map(|f| f.name.clone()))
                        .collect();
                    for f in manifest_files {
                        if (files.is_empty() || files.contains(&f)) && !e.stored_files.contains(&f)
                        {
                            self.enqueue(recording_id.clone(), f, true);
                        }
                    }
                    ReplyBody::Done
                }
                Some(e) if e.state == State::Stored => {
                    // Stored in one target; the manager wants another copy (e.g. a copy job into
                    // the cloud after a relay): send the files again while they are still here.
                    let mut again = 0;
                    for f in e.manifest.iter().flat_map(|m| m.files.iter()) {
                        if (files.is_empty() || files.contains(&f.name))
                            && self.local_file(&recording_id, &f.name)?.is_file()
                        {
                            self.again.insert((recording_id.clone(), f.name.clone()));
                            self.enqueue(recording_id.clone(), f.name.clone(), true);
                            again += 1;
                        }
                    }
                    if again == 0 {
                        ReplyBody::Failed {
                            reason: "stored, and its files are no longer in this edge's cache"
                                .to_owned(),
                        }
                    } else {
                        ReplyBody::Done
                    }
                }
                Some(e) => ReplyBody::Failed {
                    reason: format!("recording is {:?}", e.state),
                },
                None => ReplyBody::Failed {
                    reason: "no such recording on this edge".to_owned(),
                },
            },
            JobAction::Delete { recording_id } => match self.cache.get(&recording_id)? {
                Some(e) if e.state == State::Stored => {
                    self.cache.evict(&recording_id, now_ms())?;
                    ReplyBody::Done
                }
                Some(e) if e.state == State::Evicted => ReplyBody::Done,
                Some(_) => ReplyBody::Failed {
                    reason: "not stored elsewhere yet: refusing to delete".to_owned(),
                },
                None => ReplyBody::Failed {
                    reason: "no such recording on this edge".to_owned(),
                },
            },
        };
        let reply = JobReply::new(Some(job.job_id), reply);
        self.publish(&self.topics.replies, false, &reply).await?;
        // An upload job queued files: offer the first now, not at the next tick.
        if !self.queue.is_empty() {
            self.offer_next_now().await?;
        }
        Ok(())
    }

    async fn on_upload(&mut self, ev: UploadEvent) -> anyhow::Result<()> {
        match ev {
            UploadEvent::Sent { bytes } => {
                self.sent_bytes += bytes;
                self.metrics
                    .upload_bytes_total
                    .fetch_add(bytes, Ordering::Relaxed);
            }
            UploadEvent::AllAcked { transfer_id } => {
                tracing::debug!(transfer_id, "all chunks acknowledged; waiting for stored");
                // The manager commits this file while the next one is sent.
                if self
                    .inflight
                    .all_acked(transfer_id, tokio::time::Instant::now())
                {
                    self.offer_next_now().await?;
                }
            }
            UploadEvent::Failed {
                transfer_id,
                reason,
            } => {
                self.errors += 1;
                self.transfer_failures += 1;
                tracing::warn!(transfer_id, reason, "upload failed");
                if let Some((recording_id, file)) = self.inflight.by_transfer(transfer_id) {
                    self.inflight.failed(&recording_id, &file);
                    self.enqueue(recording_id, file, false);
                }
            }
        }
        Ok(())
    }

    async fn on_tick(&mut self) -> anyhow::Result<()> {
        let now = tokio::time::Instant::now();
        for transfer_id in self.reservations.expire(now_ms(), ABANDON_MS) {
            tracing::warn!(
                transfer_id,
                "download abandoned (no chunk for a minute): its reservation is released"
            );
            let _ = self.download_tx.send(DownloadCmd::Abandon { transfer_id });
        }
        if self.connected && now.duration_since(self.last_outbox) >= OUTBOX_RESEND {
            self.send_outbox().await?;
        }
        let cfg = self.edge_config();
        let summary = self.cache.summary()?;
        self.update_cache_metrics(&summary, &cfg);
        // `edge-local`: the files stay here; only a job (the manager's upload) sends them.
        let edge_local = cfg.storage.target == EDGE_LOCAL;
        if !edge_local
            && policy::should_upload(
                &cfg.cache,
                summary.backlog_bytes,
                summary.backlog_oldest_ms,
                now_ms(),
            )
        {
            for (id, e) in self.cache.in_state(State::Announced)? {
                for f in e.manifest.iter().flat_map(|m| m.files.iter()) {
                    if !e.stored_files.contains(&f.name) {
                        self.enqueue(id.clone(), f.name.clone(), false);
                    }
                }
            }
        }
        if let Some(f) = self.inflight.finishing()
            && f.acked_at.is_some_and(|t| t.elapsed() >= STORED_TIMEOUT)
        {
            let (recording_id, file) = (f.recording_id.clone(), f.file.clone());
            tracing::warn!(recording = %recording_id, file, "no stored ack; offering again");
            self.inflight.failed(&recording_id, &file);
            self.enqueue(recording_id, file, true);
        }
        if self.connected && policy::upload_window_open(&cfg.cache.upload_windows, now_ms()) {
            self.offer_next().await?;
        }
        // This edge's local storage is a copy the catalog counts on: never evicted.
        let keep_local = edge_local || cfg.storage.keep_local_copy;
        let entries = if keep_local {
            Vec::new()
        } else {
            self.cache.entries()?
        };
        let evict: Vec<String> = policy::to_evict(
            &cfg.cache,
            entries.iter().map(|(id, e)| (id.as_str(), e)),
            summary.used_bytes,
            now_ms(),
        )
        .into_iter()
        .map(str::to_owned)
        .collect();
        for id in evict {
            // Not while a job has it uploaded again.
            if self.again.iter().any(|(r, _)| *r == id) {
                continue;
            }
            self.cache.evict(&id, now_ms())?;
        }
        let every = Duration::from_secs(match cfg.telemetry_interval_secs {
            0 => 10,
            n => u64::from(n),
        });
        if self.connected && now.duration_since(self.last_telemetry) >= every {
            self.last_telemetry = now;
            self.send_telemetry(&cfg, every).await?;
        }
        Ok(())
    }

    async fn send_outbox(&mut self) -> anyhow::Result<()> {
        self.last_outbox = tokio::time::Instant::now();
        for (_, e) in self.cache.in_state(State::Finalized)?.into_iter().take(500) {
            if let Some(m) = &e.manifest {
                self.publish::<Manifest>(&self.topics.manifests, false, m)
                    .await?;
            }
        }
        Ok(())
    }

    fn enqueue(&mut self, recording_id: String, file: String, front: bool) {
        let key = (recording_id, file);
        if self.inflight.contains(&key.0, &key.1) || !self.queued.insert(key.clone()) {
            return;
        }
        if front {
            self.queue.push_front(key);
        } else {
            self.queue.push_back(key);
        }
    }

    /// After a reconnect the manager may have lost the transfers: offer them again (in their
    /// order, before the rest of the queue).
    fn restart_current(&mut self) {
        let keys = self.inflight.drain();
        if !keys.is_empty() {
            let _ = self.upload_tx.send(UploadCmd::Cancel);
        }
        for (recording_id, file) in keys.into_iter().rev() {
            self.enqueue(recording_id, file, true);
        }
    }

    /// Offers the next file now when connected and inside an upload window.
    async fn offer_next_now(&mut self) -> anyhow::Result<()> {
        let windows = self.edge_config().cache.upload_windows;
        if self.connected && policy::upload_window_open(&windows, now_ms()) {
            self.offer_next().await?;
        }
        Ok(())
    }

    async fn offer_next(&mut self) -> anyhow::Result<()> {
        if let Some(cur) = self.inflight.current() {
            if cur.transfer_id.is_none() && cur.offered_at.elapsed() >= OFFER_TIMEOUT {
                tracing::warn!(recording = %cur.recording_id, file = %cur.file, "no answer to offer; offering again");
                let key = (cur.recording_id.clone(), cur.file.clone());
                self.inflight.failed(&key.0, &key.1);
                self.enqueue(key.0, key.1, true);
            } else {
                return Ok(());
            }
        }
        // Files of recordings whose manifest the manager has not acknowledged yet wait in the
        // queue (an upload job can arrive before the manifest's ack).
        let mut not_yet = Vec::new();
        while let Some(key) = self.queue.pop_front() {
            self.queued.remove(&key);
            let (recording_id, file) = key;
            let (size, sha256) = match self.cache.get(&recording_id)? {
                Some(entry) => {
                    let Some(f) = entry.manifest.as_ref().and_then(|m| m.file(&file)).cloned()
                    else {
                        continue;
                    };
                    let again = self.again.contains(&(recording_id.clone(), file.clone()));
                    if entry.state == State::Finalized && !entry.stored_files.contains(&file) {
                        not_yet.push((recording_id, file));
                        continue;
                    }
                    if again && entry.state != State::Stored {
                        self.again.remove(&(recording_id.clone(), file.clone()));
                    }
                    if !(again && entry.state == State::Stored)
                        && (entry.stored_files.contains(&file) || entry.state != State::Announced)
                    {
                        continue;
                    }
                    (f.size, f.sha256)
                }
                // A recording held for another edge (a fetch back).
                None => match self
                    .cache
                    .held(&recording_id)?
                    .and_then(|h| h.files.get(&file).cloned())
                {
                    Some(f) => (f.size, f.sha256),
                    None => continue,
                },
            };
            let offer = JobReply::new(
                None,
                ReplyBody::Offer(TransferOffer {
                    recording_id: recording_id.clone(),
                    file: file.clone(),
                    size,
                    sha256,
                }),
            );
            self.publish(&self.topics.replies, false, &offer).await?;
            self.inflight
                .offered(recording_id, file, tokio::time::Instant::now());
            break;
        }
        for (recording_id, file) in not_yet.into_iter().rev() {
            self.enqueue(recording_id, file, true);
        }
        Ok(())
    }

    /// Where a file of one of this edge's recordings, or of one it holds for others, is.
    fn local_file(&self, recording_id: &str, file: &str) -> anyhow::Result<PathBuf> {
        if self.cache.get(recording_id)?.is_none()
            && let Some(h) = self.cache.held(recording_id)?
            && h.files.contains_key(file)
        {
            return Ok(self.cache.held_dir(recording_id)?.join(file));
        }
        Ok(self.cache.dir_of(recording_id)?.join(file))
    }

    /// A download offer: answered here when the file is held already (or cannot be taken),
    /// else handed to the download task.
    async fn on_download_offer(
        &mut self,
        transfer_id: u64,
        recording_id: String,
        file: String,
        size: u64,
        sha256: tapfleet_schemas::Sha256,
    ) -> anyhow::Result<()> {
        let held = self
            .cache
            .held(&recording_id)
            .ok()
            .flatten()
            .and_then(|h| h.files.get(&file).map(|f| f.sha256));
        let paths = self
            .cache
            .incoming_path(&recording_id, &file)
            .and_then(|p| Ok((p, self.cache.held_dir(&recording_id)?)));
        let reply = match (held, paths) {
            (Some(d), _) if d == sha256 => ReplyBody::DownloadStored {
                transfer_id,
                recording_id,
                file,
                sha256,
            },
            (Some(_), _) => ReplyBody::DownloadFailed {
                transfer_id,
                recording_id,
                file,
                reason: "a different file of that name is already held".into(),
            },
            (None, Err(e)) => ReplyBody::DownloadFailed {
                transfer_id,
                recording_id,
                file,
                reason: e.to_string(),
            },
            (None, Ok((part, dest_dir))) => {
                // A new offer of a file replaces its open download (and reservation).
                if let Some(old) = self.reservations.release(&recording_id, &file) {
                    let _ = self
                        .download_tx
                        .send(DownloadCmd::Abandon { transfer_id: old });
                }
                // The reserved partial files first, then the whole cache (see `Room`).
                let reserved_on_disk: u64 = self
                    .reservations
                    .files()
                    .filter_map(|(r, f)| self.cache.incoming_path(r, f).ok())
                    .filter_map(|p| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum();
                let room = Room {
                    capacity_bytes: self.edge_config().cache.capacity_bytes,
                    used_bytes: self.cache.summary()?.used_bytes,
                    reserved_on_disk,
                };
                let have = match std::fs::metadata(&part) {
                    Ok(m) => HeldFile::Partial(m.len()),
                    Err(_) => HeldFile::Nothing,
                };
                let free_bytes = self.reservations.free_bytes(room);
                match self.reservations.decide(
                    transfer_id,
                    &recording_id,
                    &file,
                    size,
                    sha256,
                    have,
                    true,
                    room,
                    now_ms(),
                ) {
                    OfferDecision::Refuse { reason } => {
                        self.transfer_failures += 1;
                        tracing::warn!(transfer_id, recording = %recording_id, file, size, reason, "download refused");
                        ReplyBody::DownloadFailed {
                            transfer_id,
                            recording_id,
                            file,
                            reason,
                        }
                    }
                    OfferDecision::Accept { .. } | OfferDecision::AlreadyHeld => {
                        let _ = self.download_tx.send(DownloadCmd::Offer {
                            transfer_id,
                            recording_id,
                            file,
                            size,
                            sha256,
                            part,
                            dest_dir,
                            free_bytes,
                        });
                        return Ok(());
                    }
                }
            }
        };
        self.publish(&self.topics.replies, false, &JobReply::new(None, reply))
            .await
    }

    async fn on_download(&mut self, ev: DownloadEvent) -> anyhow::Result<()> {
        match ev {
            DownloadEvent::Verified {
                transfer_id,
                recording_id,
                file,
                size,
                sha256,
            } => {
                let held = self
                    .cache
                    .hold_file(&recording_id, &file, size, sha256, now_ms());
                // Indexed (its bytes in the cache's usage) or failed: no longer reserved.
                self.reservations.release_transfer(transfer_id);
                held?;
                tracing::info!(recording = %recording_id, file, size, "file held for the fleet");
                let reply = ReplyBody::DownloadStored {
                    transfer_id,
                    recording_id,
                    file,
                    sha256,
                };
                self.publish(&self.topics.replies, false, &JobReply::new(None, reply))
                    .await?;
            }
            DownloadEvent::Received { bytes } => {
                self.metrics
                    .download_bytes_total
                    .fetch_add(bytes, Ordering::Relaxed);
            }
            DownloadEvent::Failed {
                transfer_id,
                reason,
            } => {
                self.reservations.release_transfer(transfer_id);
                self.transfer_failures += 1;
                tracing::warn!(reason, "download failed");
            }
        }
        Ok(())
    }

    async fn send_telemetry(&mut self, cfg: &EdgeConfig, every: Duration) -> anyhow::Result<()> {
        let s = self.cache.summary()?;
        let c = &self.counters;
        let mut t = Telemetry::new(now_ms());
        t.packets = c.packets.load(Ordering::Relaxed);
        t.bytes = c.bytes.load(Ordering::Relaxed);
        t.kernel_drops = c.kernel_drops.load(Ordering::Relaxed);
        t.interface_drops = c.interface_drops.load(Ordering::Relaxed);
        t.active_calls = c.active_calls.load(Ordering::Relaxed);
        t.sip_tls_packets = c.sip_tls_packets.load(Ordering::Relaxed);
        t.interfaces = capture_thread::interface_counters(c);
        t.recordings = s.counts;
        t.cache_used_bytes = s.used_bytes;
        t.cache_capacity_bytes = cfg.cache.capacity_bytes;
        t.backlog_bytes = s.backlog_bytes;
        t.backlog_oldest_secs = s
            .backlog_oldest_ms
            .map_or(0, |o| u64::try_from((now_ms() - o) / 1000).unwrap_or(0));
        t.upload_bytes_per_sec = self.sent_bytes / every.as_secs().max(1);
        self.sent_bytes = 0;
        t.errors = self.errors;
        t.transfer_failures = self.transfer_failures;
        self.publish(&self.topics.telemetry, false, &t).await
    }
}
