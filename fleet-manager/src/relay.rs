//! The relay: stores recordings into an edge's local storage (`edge:<edge_id>`), for a job
//! (`copy`/`move` with `to = "edge:<id>"`) or for a storage policy `edge:<other edge>`.
//!
//! Data flow. The manager sends only from a copy it can read: a manager target, or the staging
//! target [`STAGING`] (`_relay`, an fs target at `DATA/relay`, internal: no user target can
//! have that name). A recording only on an edge is first uploaded from that edge into staging
//! (the ordinary upload path: offer -> accept -> chunks -> `Stored`, SHA-256 checked, cataloged
//! there). Then, per file (every file of the catalog, then `manifest.json` with the catalog's
//! manifest bytes), a *download* to the destination edge:
//!
//! ```text
//! manager                                              edge (destination)
//! jobs:     Job Download{transfer_id, file, size, sha} ─>
//!                                 <─ replies: DownloadAccept{transfer_id, offset}
//! download: TransferChunk (window of 8 MiB) ───────────>
//!                                 <─ replies: DownloadChunk{transfer_id, next_offset}
//!                                 <─ replies: DownloadStored{..sha256} (synced, renamed, indexed)
//! ```
//!
//! The per-file sending logic is the pure [`FileSend`] (no IO, `now` passed in): offer, resend
//! an unanswered offer, go-back-N window (`tapfleet_edge::transfer::Sender`), re-offer when the
//! `DownloadStored` does not come (the edge answers it at once when it holds the file), and a
//! `DownloadFailed` (a refused offer, a digest mismatch, an edge that restarted and forgot the
//! transfer) re-offers after a pause; the edge resumes from the bytes its partial file holds.
//! Which files are in flight is the pure [`Lane`], one per destination edge across every relay
//! into it: at most [`MAX_IN_FLIGHT`] (the next file is offered once the current one is all
//! acknowledged, so the edge's sync and index of one file overlap the transfer of the next),
//! oldest relay first, `manifest.json` only after every other file of its recording is stored.
//! Lanes of different edges are independent.
//!
//! Persistence: each relay is a [`RelayRecord`] in the `relays` table (key `recording\0edge`),
//! written by a job or by the mover's hook [`on_stored`] (a recording complete in staging whose
//! edge's policy is `edge:<id>`), so a manager restart resumes every relay (the edge resumes
//! its partial file). While the destination edge is offline (its retained state says so) the
//! relay waits with that status, and starts again when the edge is back.
//!
//! Invariants: a location `edge:<id>` enters the catalog only after that edge answered
//! `DownloadStored` with the catalog's SHA-256; the staging copy is deleted only after every
//! file and `manifest.json` are cataloged at the destination; nothing is deleted from a user
//! target or an edge by the relay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opendal::Operator;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tapfleet_edge::transfer::{ChunkRange, Sender, SenderConfig};
use tapfleet_schemas::{Channel, Job, JobAction, ReplyBody, Sha256, Topic, TransferChunk};
use tokio::sync::mpsc;

use crate::catalog::{Location, RecordingEntry, edge_of_target, edge_target};
use crate::fleet::now_ms;
use crate::mqtt::Outbox;
use crate::store::{Store, StoreError};
use crate::targets::Targets;

/// The manager's internal staging target for relays (an fs target at `DATA/relay`).
pub const STAGING: &str = "_relay";

const RELAYS: TableDefinition<&str, &[u8]> = TableDefinition::new("relays");

/// Wakes the relay task when a relay is requested (it also looks every [`REFRESH`]), so a
/// relay starts at once rather than at the next look.
static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Where the manager stores an upload whose storage policy is `policy`: `edge:<id>` goes to
/// [`STAGING`] first, anything else is itself.
pub fn upload_target(policy: &str) -> String {
    if edge_of_target(policy).is_some() {
        STAGING.to_owned()
    } else {
        policy.to_owned()
    }
}

// ------------------------------------------------------------------------------------------
// Pure: one file's download to an edge.

/// Tuning of [`FileSend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendConfig {
    pub sender: SenderConfig,
    /// An offer without answer is made again after this long.
    pub offer_timeout_ns: i64,
    /// Every byte acknowledged but no `DownloadStored` this long: offer again.
    pub stored_timeout_ns: i64,
    /// After a `DownloadFailed`, wait this long before offering again.
    pub retry_ns: i64,
}

impl Default for SendConfig {
    fn default() -> Self {
        SendConfig {
            sender: SenderConfig::default(),
            offer_timeout_ns: 5_000_000_000,
            stored_timeout_ns: 10_000_000_000,
            retry_ns: 2_000_000_000,
        }
    }
}

#[derive(Debug, Clone)]
enum Phase {
    /// Offer at `due_ns` (none: now).
    Offer {
        due_ns: Option<i64>,
    },
    Send(Box<Sender>),
    AwaitStored {
        since_ns: i64,
    },
    Stored,
}

/// What the IO side does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAction {
    /// Publish the `Download` job (the offer).
    Offer,
    /// Read this range of the source and publish it as a chunk.
    Chunk(ChunkRange),
}

/// One file sent to an edge, pure: feed it the edge's replies and `now`, publish what
/// [`FileSend::poll`] returns.
#[derive(Debug, Clone)]
pub struct FileSend {
    cfg: SendConfig,
    size: u64,
    phase: Phase,
    offers: u64,
    failures: u64,
}

impl FileSend {
    pub fn new(cfg: SendConfig, size: u64) -> FileSend {
        FileSend {
            cfg,
            size,
            phase: Phase::Offer { due_ns: None },
            offers: 0,
            failures: 0,
        }
    }

    /// The next thing to publish now, if any (call until `None`).
    pub fn poll(&mut self, now_ns: i64) -> Option<SendAction> {
        match &mut self.phase {
            Phase::Offer { due_ns } => {
                if due_ns.is_some_and(|d| now_ns < d) {
                    return None;
                }
                *due_ns = Some(now_ns.saturating_add(self.cfg.offer_timeout_ns));
                self.offers += 1;
                Some(SendAction::Offer)
            }
            Phase::Send(s) => match s.poll_chunk(now_ns) {
                Some(r) => Some(SendAction::Chunk(r)),
                None if s.is_done() => {
                    self.phase = Phase::AwaitStored { since_ns: now_ns };
                    None
                }
                None => None,
            },
            Phase::AwaitStored { since_ns } => {
                if now_ns.saturating_sub(*since_ns) >= self.cfg.stored_timeout_ns {
                    self.phase = Phase::Offer { due_ns: None };
                    self.poll(now_ns)
                } else {
                    None
                }
            }
            Phase::Stored => None,
        }
    }

    /// The edge accepted the (latest) offer: send from `offset`.
    pub fn on_accept(&mut self, offset: u64, now_ns: i64) {
        if !matches!(self.phase, Phase::Stored) {
            self.phase = Phase::Send(Box::new(Sender::new(
                self.cfg.sender,
                self.size,
                offset,
                now_ns,
            )));
        }
    }

    /// The edge has every byte before `next_offset`.
    pub fn on_ack(&mut self, next_offset: u64, now_ns: i64) {
        if let Phase::Send(s) = &mut self.phase {
            s.on_ack(next_offset, now_ns);
        }
    }

    /// The edge holds the file (its digest matched).
    pub fn on_stored(&mut self) {
        self.phase = Phase::Stored;
    }

    /// The edge refused or failed the download: offer again after a pause.
    pub fn on_failed(&mut self, now_ns: i64) {
        if !matches!(self.phase, Phase::Stored) {
            self.failures += 1;
            self.phase = Phase::Offer {
                due_ns: Some(now_ns.saturating_add(self.cfg.retry_ns)),
            };
        }
    }

    /// The edge went offline: start over with an offer when it is back (it resumes).
    pub fn pause(&mut self) {
        if !matches!(self.phase, Phase::Stored) {
            self.phase = Phase::Offer { due_ns: None };
        }
    }

    pub fn is_stored(&self) -> bool {
        matches!(self.phase, Phase::Stored)
    }

    /// Every byte is acknowledged: only the edge's `DownloadStored` is awaited (the edge syncs
    /// and indexes the file meanwhile).
    pub fn is_all_acked(&self) -> bool {
        match &self.phase {
            Phase::Send(s) => s.is_done(),
            Phase::AwaitStored { .. } => true,
            Phase::Offer { .. } | Phase::Stored => false,
        }
    }

    /// Bytes the edge acknowledged (of the current attempt).
    pub fn acked(&self) -> u64 {
        match &self.phase {
            Phase::Send(s) => s.acked(),
            Phase::AwaitStored { .. } | Phase::Stored => self.size,
            Phase::Offer { .. } => 0,
        }
    }

    pub fn offers(&self) -> u64 {
        self.offers
    }

    pub fn failures(&self) -> u64 {
        self.failures
    }
}

// ------------------------------------------------------------------------------------------
// Pure: which files are in flight to one edge.

/// Most files in flight to one edge: the one being sent and one waiting for its
/// `DownloadStored` (as the edge's uploads, `edge/src/service/inflight.rs`).
pub const MAX_IN_FLIGHT: usize = 2;

/// The files in flight to one destination edge, across every relay into it (pure). A file is
/// started (offered) when fewer than [`MAX_IN_FLIGHT`] are in flight and every one in flight is
/// all acknowledged, so the edge's sync and index of file N (and the manager's catalog write)
/// overlap the transfer of file N+1 while the unacknowledged bytes stay one file's window. A
/// file leaves only when stored. Relays are served oldest first; `manifest.json` (each relay's
/// last file) starts only once every other file of its recording is stored.
#[derive(Debug, Clone)]
pub struct Lane<K> {
    /// (relay, file index), oldest first.
    files: Vec<(K, usize)>,
}

impl<K> Default for Lane<K> {
    fn default() -> Self {
        Lane { files: Vec::new() }
    }
}

impl<K: Clone + PartialEq> Lane<K> {
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn contains(&self, relay: &K, file: usize) -> bool {
        self.files.iter().any(|(k, i)| k == relay && *i == file)
    }

    /// Forgets a relay's files (it finished or was dropped).
    pub fn forget(&mut self, relay: &K) {
        self.files.retain(|(k, _)| k != relay);
    }

    /// Drops stored files, polls the files in flight and starts the next ones while there is
    /// room; returns what to publish, in order. `relays`: every relay into this edge, oldest
    /// first, with its files' state machines (`manifest.json` last).
    pub fn schedule(
        &mut self,
        relays: &mut [(K, &mut [FileSend])],
        now_ns: i64,
    ) -> Vec<(K, usize, SendAction)> {
        let mut out = Vec::new();
        loop {
            self.files.retain(|(k, i)| {
                relays
                    .iter()
                    .find(|(r, _)| r == k)
                    .and_then(|(_, files)| files.get(*i))
                    .is_some_and(|f| !f.is_stored())
            });
            let mut all_acked = true;
            for (k, i) in &self.files {
                let Some(f) = relays
                    .iter_mut()
                    .find(|(r, _)| r == k)
                    .and_then(|(_, files)| files.get_mut(*i))
                else {
                    continue;
                };
                while let Some(a) = f.poll(now_ns) {
                    out.push((k.clone(), *i, a));
                }
                all_acked &= f.is_all_acked();
            }
            if self.files.len() >= MAX_IN_FLIGHT || !all_acked {
                return out;
            }
            let next = relays.iter().find_map(|(k, files)| {
                next_file(files, |i| self.contains(k, i)).map(|i| (k.clone(), i))
            });
            match next {
                Some(n) => self.files.push(n),
                None => return out,
            }
        }
    }
}

/// A relay's next file to start: the first neither stored nor in flight; the last one
/// (`manifest.json`) only once every other file is stored.
pub fn next_file(files: &[FileSend], in_flight: impl Fn(usize) -> bool) -> Option<usize> {
    let last = files.len().checked_sub(1)?;
    let i = files
        .iter()
        .enumerate()
        .position(|(i, f)| !f.is_stored() && !in_flight(i))?;
    if i < last || files.iter().take(last).all(FileSend::is_stored) {
        Some(i)
    } else {
        None
    }
}

// ------------------------------------------------------------------------------------------
// Persistence.

/// Where a relay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayState {
    Pending,
    Done,
    Failed,
}

/// One recording to store into one edge, as kept in the `relays` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRecord {
    pub recording_id: String,
    /// The destination edge.
    pub edge: String,
    /// The manager target to read from (none: any complete copy, staging included).
    pub source: Option<String>,
    /// Delete the staging copy once the destination has every file.
    pub drop_staging: bool,
    /// A job waits for it (and removes it); otherwise it is removed when done.
    pub by_job: bool,
    pub state: RelayState,
    /// What the relay is doing or waiting for, in words.
    pub status: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub updated_ms: i64,
}

fn key(recording_id: &str, edge: &str) -> String {
    format!("{recording_id}\0{edge}")
}

fn db<T, E: Into<redb::Error>>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Db(e.into()))
}

/// Reads one relay record.
pub fn get(
    store: &Store,
    recording_id: &str,
    edge: &str,
) -> Result<Option<RelayRecord>, StoreError> {
    let tx = db(store.db().begin_read())?;
    let t = match tx.open_table(RELAYS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(StoreError::Db(e.into())),
    };
    let Some(v) = db(t.get(key(recording_id, edge).as_str()))? else {
        return Ok(None);
    };
    serde_json::from_slice(v.value())
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            what: "relay",
            reason: e.to_string(),
        })
}

/// Every relay record.
pub fn all(store: &Store) -> Result<Vec<RelayRecord>, StoreError> {
    let tx = db(store.db().begin_read())?;
    let t = match tx.open_table(RELAYS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::Db(e.into())),
    };
    let mut out = Vec::new();
    for row in db(t.iter())? {
        let (_, v) = db(row)?;
        match serde_json::from_slice(v.value()) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(error = %e, "unreadable relay record skipped"),
        }
    }
    Ok(out)
}

/// Writes a relay record.
pub fn put(store: &Store, r: &RelayRecord) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(r).map_err(|e| StoreError::Encode(e.to_string()))?;
    let tx = db(store.db().begin_write())?;
    {
        let mut t = db(tx.open_table(RELAYS))?;
        db(t.insert(key(&r.recording_id, &r.edge).as_str(), bytes.as_slice()))?;
    }
    db(tx.commit())
}

/// Removes a relay record.
pub fn remove(store: &Store, recording_id: &str, edge: &str) -> Result<(), StoreError> {
    let tx = db(store.db().begin_write())?;
    {
        let mut t = db(tx.open_table(RELAYS))?;
        db(t.remove(key(recording_id, edge).as_str()))?;
    }
    db(tx.commit())
}

/// Asks for a relay (idempotent: an existing pending record is kept, a finished one renewed).
pub fn request(
    store: &Store,
    recording_id: &str,
    edge: &str,
    source: Option<String>,
    drop_staging: bool,
    by_job: bool,
) -> Result<RelayRecord, StoreError> {
    if let Some(r) = get(store, recording_id, edge)?
        && r.state == RelayState::Pending
    {
        return Ok(r);
    }
    let r = RelayRecord {
        recording_id: recording_id.to_owned(),
        edge: edge.to_owned(),
        source,
        drop_staging,
        by_job,
        state: RelayState::Pending,
        status: "queued".to_owned(),
        done_bytes: 0,
        total_bytes: 0,
        updated_ms: now_ms(),
    };
    put(store, &r)?;
    WAKE.notify_one();
    Ok(r)
}

/// The mover's hook: a recording is complete in `target`. In [`STAGING`], for a recording whose
/// edge's storage policy is `edge:<id>`, that asks for a relay into that edge.
pub fn on_stored(store: &Store, recording_id: &str, target: &str) -> Result<(), StoreError> {
    if target != STAGING {
        return Ok(());
    }
    let Some(e) = store.recording(recording_id)? else {
        return Ok(());
    };
    let policy = store
        .latest_config(&e.edge_id)?
        .map(|c| c.edge.storage.target)
        .unwrap_or_default();
    if let Some(dest) = edge_of_target(&policy) {
        let r = request(store, recording_id, dest, None, true, false)?;
        tracing::info!(%recording_id, edge = %r.edge, "relay queued by the storage policy");
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// IO: the relay task.

/// A download reply and the edge it came from.
type Reply = (String, ReplyBody);

/// Edge replies to downloads, delivered by the dispatcher; the relay task takes the receiver.
#[derive(Clone)]
pub struct RelayInbox {
    tx: mpsc::UnboundedSender<Reply>,
    rx: Arc<Mutex<Option<mpsc::UnboundedReceiver<Reply>>>>,
}

impl Default for RelayInbox {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        RelayInbox {
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
        }
    }
}

impl RelayInbox {
    /// A reply from `edge` (one of the `Download*` bodies).
    pub fn deliver(&self, edge: &str, body: ReplyBody) {
        let _ = self.tx.send((edge.to_owned(), body));
    }
}

/// Starts the relay task (once: a second call does nothing).
pub fn spawn(store: Arc<Store>, targets: Targets, outbox: Outbox, inbox: &RelayInbox) {
    let rx = inbox.rx.lock().ok().and_then(|mut g| g.take());
    if let Some(rx) = rx {
        let r = Relay {
            store,
            targets,
            outbox,
            cfg: SendConfig::default(),
            active: HashMap::new(),
            by_transfer: HashMap::new(),
            lanes: HashMap::new(),
            seq: 0,
        };
        tokio::spawn(r.run(rx));
    }
}

/// Where a file's bytes come from.
enum Source {
    Object { op: Operator, path: String },
    Bytes(Vec<u8>),
}

struct FileJob {
    name: String,
    size: u64,
    sha256: Sha256,
    source: Source,
    transfer_id: u64,
}

struct Active {
    rec: RelayRecord,
    tenant: String,
    files: Vec<FileJob>,
    /// Each file's state machine (same order as `files`).
    sends: Vec<FileSend>,
    /// Order of start: the lane serves the oldest relay first.
    seq: u64,
    online: bool,
    last_write: tokio::time::Instant,
}

struct Relay {
    store: Arc<Store>,
    targets: Targets,
    outbox: Outbox,
    cfg: SendConfig,
    active: HashMap<String, Active>,
    /// transfer id -> relay key.
    by_transfer: HashMap<u64, String>,
    /// Destination edge -> its files in flight.
    lanes: HashMap<String, Lane<String>>,
    seq: u64,
}

const TICK: Duration = Duration::from_millis(100);
const REFRESH: Duration = Duration::from_millis(500);

fn mono_ns(start: tokio::time::Instant) -> i64 {
    i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX)
}

impl Relay {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Reply>) {
        let epoch = tokio::time::Instant::now();
        let mut last_refresh: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some((edge, body)) => self.on_reply(&edge, body, mono_ns(epoch)).await,
                    None => return,
                },
                () = WAKE.notified() => last_refresh = None,
                () = tokio::time::sleep(TICK) => {}
            }
            if last_refresh.is_none_or(|t| t.elapsed() >= REFRESH) {
                last_refresh = Some(tokio::time::Instant::now());
                if let Err(e) = self.refresh().await {
                    tracing::warn!(error = %e, "relays not refreshed");
                }
            }
            let mut edges: Vec<String> = self.active.values().map(|a| a.rec.edge.clone()).collect();
            edges.sort();
            edges.dedup();
            for edge in edges {
                self.pump(&edge, mono_ns(epoch)).await;
            }
        }
    }

    /// Picks up new pending records; notes each destination's presence.
    async fn refresh(&mut self) -> Result<(), StoreError> {
        for rec in all(&self.store)? {
            let k = key(&rec.recording_id, &rec.edge);
            if rec.state != RelayState::Pending {
                continue;
            }
            let online = self.store.edge(&rec.edge)?.is_some_and(|e| e.online);
            if let Some(a) = self.active.get_mut(&k) {
                if a.online && !online {
                    for f in &mut a.sends {
                        f.pause();
                    }
                }
                a.online = online;
                continue;
            }
            match self.prepare(rec.clone(), online)? {
                Ok(mut a) => {
                    self.seq += 1;
                    a.seq = self.seq;
                    for f in &a.files {
                        self.by_transfer.insert(f.transfer_id, k.clone());
                    }
                    tracing::info!(recording_id = %rec.recording_id, edge = %rec.edge, files = a.files.len(), "relay started");
                    self.active.insert(k, a);
                }
                Err((status, fatal)) => self.set_status(rec, status, fatal)?,
            }
        }
        Ok(())
    }

    /// Resolves a relay's source and files; `Err(status)` when it cannot start yet (or ever).
    fn prepare(
        &self,
        mut rec: RelayRecord,
        online: bool,
    ) -> Result<Result<Active, (String, bool)>, StoreError> {
        let Some(e) = self.store.recording(&rec.recording_id)? else {
            return Ok(Err(("the recording is not in the catalog".into(), true)));
        };
        let Some(m) = self.store.manifest(&rec.recording_id)? else {
            return Ok(Err(("the catalog has no manifest for it".into(), true)));
        };
        if self.store.edge(&rec.edge)?.is_none() {
            return Ok(Err((format!("edge {} is not enrolled", rec.edge), true)));
        }
        let source = match &rec.source {
            Some(s) if e.all_stored_in(s) && self.targets.get(s).is_some() => Some(s.clone()),
            _ => e
                .complete_copies()
                .into_iter()
                .chain(e.all_stored_in(STAGING).then(|| STAGING.to_owned()))
                .find(|t| self.targets.get(t).is_some()),
        };
        let Some(source) = source else {
            return Ok(Err((
                format!(
                    "waiting for a copy at the manager (copies: {:?})",
                    e.targets()
                ),
                false,
            )));
        };
        let Some(op) = self.targets.get(&source).cloned() else {
            return Ok(Err((format!("target {source} is not configured"), false)));
        };
        let mut files = Vec::new();
        for f in &e.files {
            let Some(loc) = f.locations.iter().find(|l| l.target == source) else {
                return Ok(Err((format!("{} has no copy in {source}", f.name), false)));
            };
            let Ok(sha256) = f.sha256.parse::<Sha256>() else {
                return Ok(Err((
                    format!("catalog sha256 of {} is not valid", f.name),
                    true,
                )));
            };
            files.push(FileJob {
                name: f.name.clone(),
                size: f.size,
                sha256,
                source: Source::Object {
                    op: op.op().clone(),
                    path: loc.path.clone(),
                },
                transfer_id: self.store.next_id("transfer")?,
            });
        }
        // Last: `manifest.json`, the same bytes the edge and every target have.
        let json = tapfleet_schemas::manifest_json(&m);
        let size = json.len() as u64;
        files.push(FileJob {
            name: "manifest.json".into(),
            size,
            sha256: crate::mover::commit::sha256(&json),
            source: Source::Bytes(json),
            transfer_id: self.store.next_id("transfer")?,
        });
        let here = edge_target(&rec.edge);
        // Files the destination already holds (a relay resumed after a restart) are skipped.
        let sends: Vec<FileSend> = files
            .iter()
            .map(|f| {
                let mut sm = FileSend::new(self.cfg, f.size);
                let held = if f.name == "manifest.json" {
                    e.manifest_locations.iter().any(|l| l.target == here)
                } else {
                    e.is_stored_in(&f.name, &here)
                };
                if held {
                    sm.on_stored();
                }
                sm
            })
            .collect();
        rec.source = Some(source);
        rec.total_bytes = files.iter().map(|f| f.size).sum();
        rec.done_bytes = stored_bytes(&files, &sends);
        Ok(Ok(Active {
            rec,
            tenant: e.tenant.clone(),
            files,
            sends,
            seq: 0,
            online,
            last_write: tokio::time::Instant::now(),
        }))
    }

    /// Records why a relay cannot start (yet, or with `fatal`, ever).
    fn set_status(
        &self,
        mut rec: RelayRecord,
        status: String,
        fatal: bool,
    ) -> Result<(), StoreError> {
        if rec.status == status && !fatal {
            return Ok(());
        }
        if fatal {
            tracing::warn!(recording_id = %rec.recording_id, edge = %rec.edge, %status, "relay failed");
            rec.state = RelayState::Failed;
        }
        rec.status = status;
        rec.updated_ms = now_ms();
        put(&self.store, &rec)
    }

    /// Publishes what the lane of `edge` says: the files in flight to that edge, across its
    /// relays (at most [`MAX_IN_FLIGHT`], see [`Lane`]).
    async fn pump(&mut self, edge: &str, now: i64) {
        let mut keys: Vec<(u64, String)> = self
            .active
            .iter()
            .filter(|(_, a)| a.rec.edge == edge)
            .map(|(k, a)| (a.seq, k.clone()))
            .collect();
        keys.sort();
        // Relays with every file stored (e.g. resumed after a restart) finish here.
        for (_, k) in &keys {
            if self
                .active
                .get(k)
                .is_some_and(|a| a.sends.iter().all(FileSend::is_stored))
            {
                self.finish(k).await;
            }
        }
        keys.retain(|(_, k)| self.active.contains_key(k));
        let Some(first) = keys.first().and_then(|(_, k)| self.active.get(k)) else {
            self.lanes.remove(edge);
            return;
        };
        let tenant = first.tenant.clone();
        if !first.online {
            let status = format!("waiting: edge {edge} is offline (resumes when it is back)");
            for (_, k) in &keys {
                let Some(a) = self.active.get_mut(k) else {
                    continue;
                };
                if a.rec.status != status {
                    a.rec.status.clone_from(&status);
                    a.rec.updated_ms = now_ms();
                    let _ = put(&self.store, &a.rec);
                    tracing::info!(recording_id = %a.rec.recording_id, %edge, "relay waiting for the edge");
                }
            }
            return;
        }
        let (Ok(jobs), Ok(download)) = (
            Topic::edge(&tenant, edge, Channel::Jobs),
            Topic::edge(&tenant, edge, Channel::Download),
        ) else {
            return;
        };
        let lane = self.lanes.entry(edge.to_owned()).or_default();
        let actions = {
            let mut by_key: HashMap<&String, &mut Active> = self
                .active
                .iter_mut()
                .filter(|(_, a)| a.rec.edge == edge)
                .collect();
            let mut relays: Vec<(String, &mut [FileSend])> = Vec::new();
            for (_, k) in &keys {
                if let Some(a) = by_key.remove(k) {
                    relays.push((k.clone(), a.sends.as_mut_slice()));
                }
            }
            lane.schedule(&mut relays, now)
        };
        let mut offered: Vec<(String, usize)> = Vec::new();
        for (k, i, action) in actions {
            let Some(a) = self.active.get_mut(&k) else {
                continue;
            };
            let rid = a.rec.recording_id.clone();
            let (Some(f), Some(sm)) = (a.files.get(i), a.sends.get_mut(i)) else {
                continue;
            };
            match action {
                SendAction::Offer => {
                    let job = Job::new(
                        format!("relay-{}", f.transfer_id),
                        JobAction::Download {
                            transfer_id: f.transfer_id,
                            recording_id: rid.clone(),
                            file: f.name.clone(),
                            size: f.size,
                            sha256: f.sha256,
                        },
                    );
                    self.outbox.send(&jobs, &job);
                    offered.push((k.clone(), i));
                    tracing::debug!(recording_id = %rid, %edge, file = %f.name, transfer_id = f.transfer_id, "download offered");
                }
                SendAction::Chunk(r) => {
                    if sm.is_stored() {
                        continue; // stored meanwhile (a late `DownloadStored`)
                    }
                    match read_range(&f.source, r).await {
                        Ok(data) => {
                            let chunk = TransferChunk::new(f.transfer_id, r.offset, data);
                            self.outbox.send(&download, &chunk);
                        }
                        Err(reason) => {
                            tracing::warn!(recording_id = %rid, file = %f.name, %reason, "relay source unreadable; retrying");
                            sm.on_failed(now);
                        }
                    }
                }
            }
        }
        let lane = self.lanes.get(edge);
        for (_, k) in &keys {
            let Some(a) = self.active.get_mut(k) else {
                continue;
            };
            let sending: Vec<usize> = (0..a.files.len())
                .filter(|i| lane.is_some_and(|l| l.contains(k, *i)))
                .collect();
            let status = match sending.first() {
                None => format!("queued behind other relays into edge {edge}"),
                Some(&i) => {
                    let (name, offers) = (
                        a.files.get(i).map_or("", |f| f.name.as_str()),
                        a.sends.get(i).map_or(0, FileSend::offers),
                    );
                    if offered.contains(&(k.clone(), i)) && offers > 1 {
                        format!(
                            "offering {name} to edge {edge} (attempt {offers}; waiting for its answer)"
                        )
                    } else {
                        format!("sending {name} to edge {edge}")
                    }
                }
            };
            let done = stored_bytes(&a.files, &a.sends)
                + sending
                    .iter()
                    .filter_map(|i| a.sends.get(*i))
                    .map(FileSend::acked)
                    .sum::<u64>();
            if (a.rec.status != status || a.rec.done_bytes != done)
                && a.last_write.elapsed() >= Duration::from_millis(250)
            {
                a.rec.status = status;
                a.rec.done_bytes = done;
                a.rec.updated_ms = now_ms();
                a.last_write = tokio::time::Instant::now();
                let _ = put(&self.store, &a.rec);
            }
        }
    }

    async fn on_reply(&mut self, edge: &str, body: ReplyBody, now: i64) {
        let tid = match &body {
            ReplyBody::DownloadAccept { transfer_id, .. }
            | ReplyBody::DownloadChunk { transfer_id, .. }
            | ReplyBody::DownloadStored { transfer_id, .. }
            | ReplyBody::DownloadFailed { transfer_id, .. } => *transfer_id,
            _ => return,
        };
        let Some(k) = self.by_transfer.get(&tid).cloned() else {
            tracing::debug!(%edge, transfer_id = tid, "reply to an unknown download");
            return;
        };
        let Some(a) = self.active.get_mut(&k) else {
            return;
        };
        if a.rec.edge != edge {
            tracing::warn!(%edge, transfer_id = tid, "download reply from another edge dropped");
            return;
        }
        let Some(pos) = a.files.iter().position(|f| f.transfer_id == tid) else {
            return;
        };
        let (Some(f), Some(sm)) = (a.files.get(pos), a.sends.get_mut(pos)) else {
            return;
        };
        if sm.is_stored() {
            return; // a late reply for a file already stored
        }
        match body {
            ReplyBody::DownloadAccept { offset, .. } => {
                tracing::info!(%edge, file = %f.name, transfer_id = tid, offset, "download accepted");
                sm.on_accept(offset, now);
            }
            ReplyBody::DownloadChunk { next_offset, .. } => sm.on_ack(next_offset, now),
            ReplyBody::DownloadStored { sha256, .. } if sha256 == f.sha256 => {
                sm.on_stored();
                let rid = a.rec.recording_id.clone();
                let here = edge_target(edge);
                let r = if f.name == "manifest.json" {
                    self.store.mark_stored(
                        &rid,
                        Location {
                            target: here,
                            path: format!("{rid}/manifest.json"),
                        },
                    )
                } else {
                    self.store.add_location(
                        &rid,
                        &f.name,
                        Location {
                            target: here,
                            path: format!("{rid}/{}", f.name),
                        },
                    )
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "relay location not cataloged; will offer again");
                    // Not stored after all: the catalog has no location for it yet.
                    *sm = FileSend::new(self.cfg, f.size);
                    sm.on_failed(now);
                    return;
                }
                tracing::info!(%edge, recording_id = %rid, file = %f.name, size = f.size, "file stored in the edge's local storage");
                a.rec.done_bytes = stored_bytes(&a.files, &a.sends);
                // Only once the edge confirmed every file (`manifest.json` last): the staging
                // copy may go.
                if a.sends.iter().all(FileSend::is_stored) {
                    self.finish(&k).await;
                }
            }
            ReplyBody::DownloadStored { .. } => {
                tracing::warn!(%edge, file = %f.name, "edge stored a file with another digest");
                sm.on_failed(now);
            }
            ReplyBody::DownloadFailed { reason, .. } => {
                tracing::warn!(%edge, file = %f.name, transfer_id = tid, %reason, "download failed; offering again");
                sm.on_failed(now);
                a.rec.status = format!("edge {edge}: {reason} (offering again)");
                a.rec.updated_ms = now_ms();
                let _ = put(&self.store, &a.rec);
            }
            _ => {}
        }
    }

    /// Every file is at the destination: drop staging, announce, record the result.
    async fn finish(&mut self, k: &str) {
        let Some(a) = self.active.remove(k) else {
            return;
        };
        for f in &a.files {
            self.by_transfer.remove(&f.transfer_id);
        }
        if let Some(lane) = self.lanes.get_mut(&a.rec.edge) {
            lane.forget(&k.to_owned());
        }
        let mut rec = a.rec;
        let rid = rec.recording_id.clone();
        if rec.drop_staging
            && let Err(e) = self.drop_staging(&rid, &rec.edge).await
        {
            tracing::warn!(recording_id = %rid, error = %e, "staging copy not deleted");
        }
        crate::jobs::announce_stored(
            &self.outbox,
            &a.tenant,
            &rec.edge,
            &rid,
            &edge_target(&rec.edge),
        );
        tracing::info!(recording_id = %rid, edge = %rec.edge, bytes = rec.total_bytes, "relay done");
        rec.state = RelayState::Done;
        rec.status = format!("stored in edge {}", rec.edge);
        rec.done_bytes = rec.total_bytes;
        rec.updated_ms = now_ms();
        let r = if rec.by_job {
            put(&self.store, &rec)
        } else {
            remove(&self.store, &rid, &rec.edge)
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "relay result not stored");
        }
    }

    /// Deletes the recording's copy in [`STAGING`] unless a pending relay of it into another
    /// edge still reads it.
    async fn drop_staging(&self, rid: &str, done_edge: &str) -> Result<(), String> {
        let others = all(&self.store)
            .map_err(|e| e.to_string())?
            .into_iter()
            .any(|r| {
                r.recording_id == rid && r.edge != done_edge && r.state == RelayState::Pending
            });
        if others {
            return Ok(());
        }
        let Some(e) = self.store.recording(rid).map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let Some(op) = self.targets.get(STAGING) else {
            return Ok(());
        };
        for l in staged_paths(&e) {
            op.delete(&l).await.map_err(|e| e.to_string())?;
        }
        self.store
            .update_recording(rid, |r| r.remove_target(STAGING))
            .map_err(|e| e.to_string())?;
        tracing::info!(recording_id = %rid, "staging copy deleted");
        Ok(())
    }
}

/// Bytes of the files the edge confirmed.
fn stored_bytes(files: &[FileJob], sends: &[FileSend]) -> u64 {
    files
        .iter()
        .zip(sends)
        .filter(|(_, s)| s.is_stored())
        .map(|(f, _)| f.size)
        .sum()
}

fn staged_paths(e: &RecordingEntry) -> Vec<String> {
    e.files
        .iter()
        .flat_map(|f| f.locations.iter())
        .chain(e.manifest_locations.iter())
        .filter(|l| l.target == STAGING)
        .map(|l| l.path.clone())
        .collect()
}

async fn read_range(src: &Source, r: ChunkRange) -> Result<Vec<u8>, String> {
    let end = r.offset + u64::from(r.len);
    match src {
        Source::Bytes(b) => {
            let (s, e) = (
                usize::try_from(r.offset).map_err(|e| e.to_string())?,
                usize::try_from(end).map_err(|e| e.to_string())?,
            );
            b.get(s..e)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| "range past the manifest".to_owned())
        }
        Source::Object { op, path } => {
            let buf = op
                .read_with(path)
                .range(r.offset..end)
                .await
                .map_err(|e| e.to_string())?;
            let v = buf.to_vec();
            if v.len() as u64 != u64::from(r.len) {
                return Err(format!(
                    "{path}: read {} bytes at {}, expected {}",
                    v.len(),
                    r.offset,
                    r.len
                ));
            }
            Ok(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::Digest;
    use tapfleet_edge::receive::{ChunkDecision, HeldFile, OfferDecision, Receiver, decide_offer};

    fn sha(b: &[u8]) -> Sha256 {
        Sha256(sha2::Sha256::digest(b).into())
    }

    fn cfg(chunk: u32, window_chunks: u64) -> SendConfig {
        SendConfig {
            sender: SenderConfig {
                chunk_bytes: chunk,
                window_bytes: u64::from(chunk) * window_chunks,
                stall_timeout_ns: 100,
            },
            offer_timeout_ns: 300,
            stored_timeout_ns: 500,
            retry_ns: 200,
        }
    }

    #[test]
    fn offers_are_resent_and_failures_pause() {
        let mut s = FileSend::new(cfg(10, 2), 25);
        assert_eq!(s.poll(0), Some(SendAction::Offer));
        assert_eq!(s.poll(100), None);
        assert_eq!(
            s.poll(300),
            Some(SendAction::Offer),
            "unanswered offer resent"
        );
        s.on_accept(20, 310);
        assert_eq!(
            s.poll(310),
            Some(SendAction::Chunk(ChunkRange { offset: 20, len: 5 }))
        );
        assert_eq!(s.poll(310), None);
        s.on_ack(25, 320);
        assert_eq!(s.poll(320), None);
        assert_eq!(s.acked(), 25);
        // No `DownloadStored`: offer again (the edge answers it at once if it has the file).
        assert_eq!(s.poll(900), Some(SendAction::Offer));
        s.on_failed(900);
        assert_eq!(s.poll(1000), None);
        assert_eq!(s.poll(1100), Some(SendAction::Offer));
        s.on_stored();
        assert!(s.is_stored());
        assert_eq!(s.poll(5000), None);
        s.on_failed(5000);
        assert!(s.is_stored(), "a late failure does not undo a stored file");
        assert_eq!((s.offers(), s.failures()), (4, 1));
    }

    #[test]
    fn policy_edge_targets_are_staged() {
        assert_eq!(upload_target("edge:b"), STAGING);
        assert_eq!(upload_target("cloud"), "cloud");
        assert_eq!(upload_target("edge-local"), "edge-local");
    }

    #[test]
    fn the_next_file_is_offered_while_the_current_one_finishes() {
        let c = cfg(10, 2);
        let mut a = vec![
            FileSend::new(c, 20),
            FileSend::new(c, 5),
            FileSend::new(c, 3),
        ];
        let mut b = vec![FileSend::new(c, 4), FileSend::new(c, 3)];
        let mut lane: Lane<&str> = Lane::default();
        let out = lane.schedule(&mut [("a", a.as_mut_slice()), ("b", b.as_mut_slice())], 0);
        assert_eq!(
            out,
            vec![("a", 0, SendAction::Offer)],
            "one file offered at first"
        );
        a[0].on_accept(0, 1);
        let out = lane.schedule(&mut [("a", a.as_mut_slice()), ("b", b.as_mut_slice())], 1);
        assert_eq!(out.len(), 2, "the window: {out:?}");
        a[0].on_ack(20, 2);
        // a/0 all acked, its `DownloadStored` pending: a/1 is offered meanwhile.
        let out = lane.schedule(&mut [("a", a.as_mut_slice()), ("b", b.as_mut_slice())], 2);
        assert_eq!(out, vec![("a", 1, SendAction::Offer)]);
        a[1].on_accept(0, 3);
        let out = lane.schedule(&mut [("a", a.as_mut_slice()), ("b", b.as_mut_slice())], 3);
        assert_eq!(
            out,
            vec![("a", 1, SendAction::Chunk(ChunkRange { offset: 0, len: 5 }))]
        );
        a[1].on_ack(5, 3);
        // Two in flight (a/1 all acked too): nothing more until one is stored; the manifest of
        // `a` never before a/0 and a/1 are stored, so `b` comes next.
        let out = lane.schedule(&mut [("a", a.as_mut_slice()), ("b", b.as_mut_slice())], 3);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(lane.len(), 2);
        a[1].on_stored();
        let out = lane.schedule(&mut [("a", a.as_mut_slice()), ("b", b.as_mut_slice())], 4);
        assert_eq!(out, vec![("b", 0, SendAction::Offer)]);
        a[0].on_stored();
        b[0].on_stored();
        let out = lane.schedule(&mut [("a", a.as_mut_slice()), ("b", b.as_mut_slice())], 5);
        assert_eq!(out, vec![("a", 2, SendAction::Offer)], "a's manifest last");
        assert_eq!(next_file(&b, |_| false), Some(1));
        assert_eq!(next_file(&[], |_| false), None);
    }

    /// A seeded xorshift die: `roll(pct)` is true `pct` % of the time.
    fn roller(seed: u64) -> impl FnMut(u64) -> bool {
        let mut rng = seed | 1;
        move |pct| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % 100 < pct
        }
    }

    proptest! {
        /// The lane over relays of several recordings into one edge, with lost offers, chunks
        /// and replies, `DownloadStored` answered late (the edge syncs and indexes), refusals
        /// and the edge going offline: at most two files in flight, a file starts only when
        /// every file in flight is all acknowledged, only files in flight are sent,
        /// `manifest.json` starts (and so is confirmed) only after every other file of its
        /// recording is confirmed, and every relay completes with every file confirmed.
        #[test]
        fn at_most_two_files_in_flight_per_edge_and_manifests_last(
            sizes in proptest::collection::vec(proptest::collection::vec(0u64..400, 1..4), 1..4),
            chunk in 1u32..100,
            window_chunks in 1u64..4,
            loss in 0u64..20,
            fail in 0u64..5,
            offline in 0u64..3,
            stored_delay in 0i64..400,
            seed in any::<u64>(),
        ) {
            let c = cfg(chunk, window_chunks);
            let mut roll = roller(seed);
            let mut sends: Vec<Vec<FileSend>> = sizes
                .iter()
                .map(|r| r.iter().map(|s| FileSend::new(c, *s)).collect())
                .collect();
            // The edge: bytes received per file, confirmed files, `DownloadStored` due.
            let mut received: Vec<Vec<u64>> = sizes.iter().map(|r| vec![0; r.len()]).collect();
            let mut held: Vec<Vec<bool>> = sizes.iter().map(|r| vec![false; r.len()]).collect();
            let mut due: Vec<(i64, usize, usize)> = Vec::new();
            let mut lane: Lane<usize> = Lane::default();
            let mut now = 0i64;
            let mut down = 0u32;
            let mut steps = 0u64;
            while !sends.iter().flatten().all(FileSend::is_stored) {
                steps += 1;
                prop_assert!(steps < 200_000, "no progress");
                now += 50;
                if down > 0 {
                    down -= 1;
                    continue;
                }
                if roll(offline) {
                    for f in sends.iter_mut().flatten() {
                        f.pause();
                    }
                    down = 5;
                    continue;
                }
                let before = lane.files.clone();
                let actions = {
                    let mut relays: Vec<(usize, &mut [FileSend])> =
                        sends.iter_mut().map(Vec::as_mut_slice).enumerate().collect();
                    lane.schedule(&mut relays, now)
                };
                prop_assert!(lane.len() <= MAX_IN_FLIGHT);
                let new: Vec<(usize, usize)> =
                    lane.files.iter().filter(|f| !before.contains(f)).cloned().collect();
                prop_assert!(new.len() <= 1, "one file started at a time: {:?}", new);
                for (r, i) in &new {
                    for (r2, i2) in lane.files.iter().filter(|f| *f != &(*r, *i)) {
                        prop_assert!(sends[*r2][*i2].is_all_acked(), "started beside an unacked file");
                    }
                    if *i + 1 == sends[*r].len() {
                        prop_assert!(sends[*r][..*i].iter().all(FileSend::is_stored), "manifest last");
                    }
                }
                for (r, i, action) in actions {
                    prop_assert!(lane.contains(&r, i), "only files in flight are sent");
                    if roll(loss) {
                        continue;
                    }
                    let size = sizes[r][i];
                    let reply = match action {
                        SendAction::Offer if held[r][i] => Some(ReplyBody::DownloadStored {
                            transfer_id: 0, recording_id: String::new(), file: String::new(), sha256: Sha256([0; 32]),
                        }),
                        SendAction::Offer if roll(fail) => Some(ReplyBody::DownloadFailed {
                            transfer_id: 0, recording_id: String::new(), file: String::new(), reason: "refused".into(),
                        }),
                        SendAction::Offer => {
                            if received[r][i] >= size {
                                due.push((now + stored_delay, r, i));
                            }
                            Some(ReplyBody::DownloadAccept { transfer_id: 0, offset: received[r][i] })
                        }
                        SendAction::Chunk(ch) => {
                            if ch.offset == received[r][i] {
                                received[r][i] += u64::from(ch.len);
                                if received[r][i] >= size {
                                    due.push((now + stored_delay, r, i));
                                }
                            }
                            Some(ReplyBody::DownloadChunk { transfer_id: 0, next_offset: received[r][i] })
                        }
                    };
                    if roll(loss) {
                        continue;
                    }
                    let f = &mut sends[r][i];
                    match reply {
                        Some(ReplyBody::DownloadAccept { offset, .. }) => f.on_accept(offset, now),
                        Some(ReplyBody::DownloadChunk { next_offset, .. }) => f.on_ack(next_offset, now),
                        Some(ReplyBody::DownloadStored { .. }) => f.on_stored(),
                        Some(ReplyBody::DownloadFailed { .. }) => f.on_failed(now),
                        _ => {}
                    }
                }
                // The edge confirms what it synced and indexed (the reply may be lost).
                let (ready, later): (Vec<_>, Vec<_>) = due.into_iter().partition(|(t, _, _)| *t <= now);
                due = later;
                for (_, r, i) in ready {
                    held[r][i] = true;
                    if i + 1 == held[r].len() {
                        prop_assert!(held[r].iter().all(|h| *h), "manifest.json confirmed last");
                    }
                    if !roll(loss) {
                        sends[r][i].on_stored();
                    }
                }
            }
            prop_assert!(held.iter().flatten().all(|h| *h));
            prop_assert!(lane.schedule(&mut [], now).is_empty());
        }
    }

    /// The edge side as the service runs it: a receiver per open transfer, the partial file
    /// on "disk", the held index.
    struct EdgeModel {
        disk: Vec<u8>,
        open: Option<(u64, Receiver)>,
        held: Option<Sha256>,
    }

    proptest! {
        /// [`FileSend`] against the edge's pure receiver (`tapfleet_edge::receive`) over a link
        /// that loses offers, chunks and replies, with the edge going offline (the relay
        /// pauses) and restarting (its open transfer forgotten, the partial file kept): every
        /// run ends with the edge holding exactly the file and the sender `stored`.
        #[test]
        fn relays_complete_over_loss_outages_and_restarts(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            chunk in 1u32..600,
            window_chunks in 1u64..6,
            loss in 0u64..40,
            outage in 0u64..3,
            restart in 0u64..3,
            seed in any::<u64>(),
        ) {
            let c = cfg(chunk, window_chunks);
            let expected = sha(&data);
            let mut roll = roller(seed);
            let mut s = FileSend::new(c, data.len() as u64);
            let mut edge = EdgeModel { disk: Vec::new(), open: None, held: None };
            let tid = 7u64;
            let mut now = 0i64;
            let mut steps = 0u64;
            while !s.is_stored() {
                steps += 1;
                prop_assert!(steps < 3_000_000, "no progress");
                if roll(outage) {
                    s.pause();
                }
                if roll(restart) {
                    edge.open = None;
                }
                let Some(action) = s.poll(now) else {
                    now += 50;
                    continue;
                };
                if roll(loss) {
                    continue;
                }
                // The edge's answer (None: nothing to say), then possibly lost.
                let reply: Option<ReplyBody> = match action {
                    SendAction::Offer => {
                        let have = match edge.held {
                            Some(d) => HeldFile::Held(d),
                            None if edge.disk.is_empty() => HeldFile::Nothing,
                            None => HeldFile::Partial(edge.disk.len() as u64),
                        };
                        match decide_offer(data.len() as u64, expected, have, true, u64::MAX) {
                            OfferDecision::AlreadyHeld => Some(ReplyBody::DownloadStored {
                                transfer_id: tid, recording_id: String::new(), file: String::new(), sha256: expected,
                            }),
                            OfferDecision::Accept { offset } => {
                                edge.disk.truncate(usize::try_from(offset).unwrap_or(0));
                                let rx = Receiver::resume(data.len() as u64, expected, &edge.disk);
                                let done = rx.is_complete();
                                edge.open = Some((tid, rx));
                                if done {
                                    edge.held = Some(expected);
                                    edge.open = None;
                                }
                                Some(ReplyBody::DownloadAccept { transfer_id: tid, offset })
                            }
                            OfferDecision::Refuse { reason } => {
                                prop_assert!(false, "{}", reason);
                                None
                            }
                        }
                    }
                    SendAction::Chunk(r) => match edge.open.as_mut() {
                        None => Some(ReplyBody::DownloadFailed {
                            transfer_id: tid, recording_id: String::new(), file: String::new(), reason: "unknown".into(),
                        }),
                        Some((_, rx)) => {
                            let start = usize::try_from(r.offset).unwrap_or(usize::MAX);
                            let bytes = &data[start..start + r.len as usize];
                            match rx.on_chunk(r.offset, bytes) {
                                ChunkDecision::Write { skip, next_offset, done } => {
                                    edge.disk.extend_from_slice(&bytes[skip..]);
                                    if let Some(d) = done {
                                        prop_assert!(d.matches);
                                        edge.held = Some(d.sha256);
                                        edge.open = None;
                                        // The ack and the stored reply: model the stored one.
                                        s.on_ack(next_offset, now);
                                        Some(ReplyBody::DownloadStored {
                                            transfer_id: tid, recording_id: String::new(), file: String::new(), sha256: d.sha256,
                                        })
                                    } else {
                                        Some(ReplyBody::DownloadChunk { transfer_id: tid, next_offset })
                                    }
                                }
                                ChunkDecision::ReAck { next_offset, .. } => {
                                    Some(ReplyBody::DownloadChunk { transfer_id: tid, next_offset })
                                }
                                ChunkDecision::Overrun { reason } => {
                                    prop_assert!(false, "{}", reason);
                                    None
                                }
                            }
                        }
                    },
                };
                if roll(loss) {
                    continue;
                }
                match reply {
                    Some(ReplyBody::DownloadAccept { offset, .. }) => s.on_accept(offset, now),
                    Some(ReplyBody::DownloadChunk { next_offset, .. }) => s.on_ack(next_offset, now),
                    Some(ReplyBody::DownloadStored { sha256, .. }) => {
                        prop_assert_eq!(sha256, expected);
                        s.on_stored();
                    }
                    Some(ReplyBody::DownloadFailed { .. }) => s.on_failed(now),
                    _ => {}
                }
            }
            prop_assert_eq!(&edge.disk, &data);
            prop_assert_eq!(edge.held, Some(expected));
        }
    }
}
