//! The mover: writes transfers into storage targets through OpenDAL, off the MQTT polling task.
//! The receive logic is the pure state machine in [`transfer`]; this module wires it to OpenDAL
//! writers, the catalog and the acks.
//!
//! Concurrency: [`Mover::run`] is a router. It resolves each command's target (an offer: the
//! recording's `upload_target`, else the edge's storage policy; a chunk: its transfer's record;
//! a finalize: named) and hands it to a worker task keyed by (target, a shard of the edge id):
//! at most [`WORKERS_PER_TARGET`] workers per target, each with its own transfers, so a target
//! that is down (a failing write is retried by the operator's retry layer for many seconds)
//! delays only the transfers into it, and one edge's commands stay in order on one worker. The
//! router never waits for a worker: when a worker's queue is full, a chunk or an offer is
//! dropped and counted (the edge's go-back-N / offer timeout sends it again); a finalize waits
//! on a task of its own. A worker aborts transfers idle for [`IDLE_TRANSFER`].
//!
//! Per offer: refused, answered `Stored` at once (already stored), resumed (an open transfer of
//! the same file), or started — a transfer id from the store's counter (unique across restarts),
//! a record in the `transfers` table, a [`commit::AtomicWriter`] for the final path, and
//! `Accept{offset: 0}`. Per chunk: write what the state machine says, ack. At the end: commit
//! when the SHA-256 matches (the writer checks it again over the bytes it wrote), else abort
//! (nothing becomes visible), and when every file of the recording is stored, write
//! `manifest.json` (through the same verified atomic write) and mark the recording stored.
//! A transfer open when the manager stopped is answered `TransferFailed` so the edge offers again.

pub mod commit;
pub mod direct;
pub mod transfer;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tapfleet_schemas::{Ack, AckBody, Channel, Sha256, Topic, TransferOffer};

/// A chunk of an upload, its data a slice of the MQTT payload it came in.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub transfer_id: u64,
    pub offset: u64,
    pub data: Bytes,
}
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::catalog::{Location, recording_dir};
use crate::metrics::{Metrics, add, inc};
use crate::mqtt::Outbox;
use crate::store::{Store, TransferRecord};
use crate::targets::{DEFAULT_TARGET, Target, Targets};
use commit::{AtomicWriter, write_verified};
use transfer::{ChunkDecision, KnownFile, OfferDecision, Transfer, decide_offer};

/// Work for the mover.
#[derive(Debug)]
pub enum MoverCmd {
    Offer {
        tenant: String,
        edge: String,
        offer: TransferOffer,
    },
    Chunk {
        tenant: String,
        edge: String,
        chunk: Chunk,
    },
    /// Every file is stored: write `manifest.json` (again) and mark the recording stored.
    Finalize {
        recording_id: String,
        target: String,
    },
}

fn has_manifest_in(e: &crate::catalog::RecordingEntry, target: &str) -> bool {
    e.manifest_locations.iter().any(|l| l.target == target)
}

/// Workers per target: transfers into one target run concurrently up to this many edges.
pub const WORKERS_PER_TARGET: usize = 4;
/// Commands queued per worker (a chunk is at most the edge's chunk size).
const WORKER_QUEUE: usize = 64;
/// Chunks queued per transfer for its writer task: the worker waits (and so acks later) when
/// the target writes slower than chunks arrive.
const WRITE_QUEUE: usize = 4;
/// An open transfer without a chunk this long is abandoned (its writer aborted).
pub const IDLE_TRANSFER: Duration = Duration::from_secs(600);
/// Transfer id -> target routes kept by the router before it forgets them all.
const MAX_ROUTES: usize = 4096;

/// A command for one worker: the router resolved its target.
#[derive(Debug)]
enum WorkerCmd {
    Offer {
        tenant: String,
        edge: String,
        target: String,
        offer: TransferOffer,
    },
    Chunk {
        tenant: String,
        edge: String,
        chunk: Chunk,
    },
    Finalize {
        recording_id: String,
        target: String,
    },
}

/// The router: hands each command to the worker of its target and edge shard.
pub struct Mover {
    store: Arc<Store>,
    targets: Targets,
    outbox: Outbox,
    metrics: Arc<Metrics>,
}

fn shard(edge: &str) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    edge.hash(&mut h);
    usize::try_from(h.finish() % WORKERS_PER_TARGET as u64).unwrap_or(0)
}

impl Mover {
    pub fn new(store: Arc<Store>, targets: Targets, outbox: Outbox, metrics: Arc<Metrics>) -> Self {
        Mover {
            store,
            targets,
            outbox,
            metrics,
        }
    }

    fn target_of(&self, edge: &str) -> anyhow::Result<String> {
        let policy = self
            .store
            .latest_config(edge)?
            .map(|c| c.edge.storage.target)
            .unwrap_or_else(|| DEFAULT_TARGET.to_owned());
        // relay hook: a policy `edge:<id>` is staged at the manager, then relayed.
        Ok(crate::relay::upload_target(&policy))
    }

    /// Where an offer's file goes: a job's destination wins over the edge's storage policy.
    fn offer_target(&self, edge: &str, recording_id: &str) -> anyhow::Result<String> {
        match self
            .store
            .recording(recording_id)?
            .and_then(|e| e.upload_target)
        {
            Some(t) => Ok(t),
            None => self.target_of(edge),
        }
    }

    /// Runs until the command channel closes; the workers then abort their open transfers.
    pub async fn run(self, mut rx: mpsc::Receiver<MoverCmd>) {
        let mut workers: HashMap<(String, usize), mpsc::Sender<WorkerCmd>> = HashMap::new();
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        let mut routes: HashMap<u64, String> = HashMap::new();
        while let Some(cmd) = rx.recv().await {
            let routed = match cmd {
                MoverCmd::Offer {
                    tenant,
                    edge,
                    offer,
                } => self.offer_target(&edge, &offer.recording_id).map(|target| {
                    (
                        target.clone(),
                        shard(&edge),
                        WorkerCmd::Offer {
                            tenant,
                            edge,
                            target,
                            offer,
                        },
                    )
                }),
                MoverCmd::Chunk {
                    tenant,
                    edge,
                    chunk,
                } => {
                    let id = chunk.transfer_id;
                    let target = match routes.get(&id) {
                        Some(t) => Ok(t.clone()),
                        // Unknown transfers go to any worker, which answers `TransferFailed`.
                        None => self.store.transfer(id).map(|r| {
                            let t = r.map(|r| r.target).unwrap_or_default();
                            if routes.len() >= MAX_ROUTES {
                                routes.clear();
                            }
                            routes.insert(id, t.clone());
                            t
                        }),
                    };
                    target.map_err(anyhow::Error::from).map(|target| {
                        (
                            target,
                            shard(&edge),
                            WorkerCmd::Chunk {
                                tenant,
                                edge,
                                chunk,
                            },
                        )
                    })
                }
                MoverCmd::Finalize {
                    recording_id,
                    target,
                } => self
                    .store
                    .recording(&recording_id)
                    .map_err(Into::into)
                    .map(|e| {
                        let edge = e.map(|e| e.edge_id).unwrap_or_default();
                        (
                            target.clone(),
                            shard(&edge),
                            WorkerCmd::Finalize {
                                recording_id,
                                target,
                            },
                        )
                    }),
            };
            let (target, shard, cmd) = match routed {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "mover command not routed");
                    continue;
                }
            };
            let tx = workers.entry((target.clone(), shard)).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(WORKER_QUEUE);
                let w = Worker {
                    ctx: Ctx {
                        store: self.store.clone(),
                        targets: self.targets.clone(),
                        outbox: self.outbox.clone(),
                        metrics: self.metrics.clone(),
                    },
                    active: HashMap::new(),
                    by_file: HashMap::new(),
                };
                tracing::debug!(%target, shard, "mover worker started");
                tasks.push(tokio::spawn(w.run(rx)));
                tx
            });
            match tx.try_send(cmd) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(cmd @ WorkerCmd::Finalize { .. })) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(cmd).await;
                    });
                }
                Err(mpsc::error::TrySendError::Full(cmd)) => {
                    inc(&self.metrics.mover_queue_dropped_total);
                    if let WorkerCmd::Offer { edge, offer, .. } = &cmd {
                        tracing::warn!(%edge, %target, recording_id = %offer.recording_id, file = %offer.file, "target busy: offer dropped (the edge offers again)");
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::error!(%target, shard, "mover worker gone");
                    workers.remove(&(target, shard));
                }
            }
        }
        drop(workers);
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// What a transfer's writer task receives, in order.
#[derive(Debug)]
enum WriteOp {
    /// Bytes to append (already hashed by the state machine).
    Data(Bytes),
    /// Every byte was received and hashes to the offered digest: commit, catalog, ack `Stored`.
    Commit(Sha256),
}

struct Active {
    sm: Transfer,
    /// The transfer's writer task; dropping it aborts the write.
    tx: mpsc::Sender<WriteOp>,
    rec: TransferRecord,
    /// When the last chunk arrived (IO side only: the state machine has no clock).
    last: Instant,
}

/// What the worker and the writer tasks share: the catalog, the targets and the acks.
#[derive(Clone)]
struct Ctx {
    store: Arc<Store>,
    targets: Targets,
    outbox: Outbox,
    metrics: Arc<Metrics>,
}

/// One worker: the transfers of some edges into one target.
struct Worker {
    ctx: Ctx,
    active: HashMap<u64, Active>,
    /// (edge, recording, file) -> open transfer id.
    by_file: HashMap<(String, String, String), u64>,
}

impl Worker {
    /// Runs until the command channel closes; open transfers are then aborted.
    async fn run(mut self, mut rx: mpsc::Receiver<WorkerCmd>) {
        let sweep_every = Duration::from_secs(60);
        let mut last_sweep = Instant::now();
        loop {
            let cmd = match tokio::time::timeout(sweep_every, rx.recv()).await {
                Ok(Some(cmd)) => Some(cmd),
                Ok(None) => break,
                Err(_) => None,
            };
            let r = match cmd {
                None => Ok(()),
                Some(WorkerCmd::Offer {
                    tenant,
                    edge,
                    target,
                    offer,
                }) => self.on_offer(&tenant, &edge, &target, offer).await,
                Some(WorkerCmd::Chunk {
                    tenant,
                    edge,
                    chunk,
                }) => self.on_chunk(&tenant, &edge, chunk).await,
                Some(WorkerCmd::Finalize {
                    recording_id,
                    target,
                }) => self.ctx.finalize(&recording_id, &target).await,
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "mover command failed");
            }
            if last_sweep.elapsed() >= sweep_every {
                last_sweep = Instant::now();
                self.sweep();
            }
        }
        // Dropping the writer tasks' senders aborts their writes.
        self.active.clear();
    }

    /// Aborts transfers no chunk reached for [`IDLE_TRANSFER`] (the edge gave up or offered
    /// the file into another target).
    fn sweep(&mut self) {
        let idle: Vec<u64> = self
            .active
            .iter()
            .filter(|(_, a)| a.last.elapsed() >= IDLE_TRANSFER)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            if let Some(rec) = self.drop_transfer(id) {
                tracing::warn!(edge = %rec.edge_id, recording_id = %rec.recording_id, file = %rec.file, transfer_id = id, "idle transfer abandoned");
            }
        }
    }

    async fn on_offer(
        &mut self,
        tenant: &str,
        edge: &str,
        target: &str,
        offer: TransferOffer,
    ) -> anyhow::Result<()> {
        let ctx = self.ctx.clone();
        // relay hook: an edge holding a copy for others may upload it too (a fetch back).
        let holder = crate::catalog::edge_target(edge);
        let entry = ctx
            .store
            .recording(&offer.recording_id)?
            .filter(|e| e.tenant == tenant && (e.edge_id == edge || e.targets().contains(&holder)));
        let target = target.to_owned();
        let Some(op) = ctx.targets.get(&target).cloned() else {
            let reason = format!("storage target {target:?} is not configured at the manager");
            return ctx.fail(tenant, edge, &offer.recording_id, &offer.file, 0, reason);
        };
        let known = match &entry {
            None => KnownFile::UnknownRecording,
            Some(e) => match e.file(&offer.file) {
                None => KnownFile::UnknownFile,
                Some(f) => KnownFile::Listed {
                    size: f.size,
                    sha256: f.sha256.parse().unwrap_or(Sha256([0; 32])),
                    stored: e.is_stored_in(&offer.file, &target),
                },
            },
        };
        let key = (
            edge.to_owned(),
            offer.recording_id.clone(),
            offer.file.clone(),
        );
        let mut open_id = self.by_file.get(&key).copied();
        // A transfer whose writer task ended (a failed write, answered `TransferFailed`) is
        // not resumed.
        if let Some(id) = open_id
            && self.active.get(&id).is_none_or(|a| a.tx.is_closed())
        {
            self.drop_transfer(id);
            open_id = None;
        }
        let open = open_id.and_then(|id| self.active.get(&id).map(|a| (id, &a.sm)));
        match decide_offer(&offer, &known, open) {
            OfferDecision::Refuse { reason } => {
                ctx.fail(tenant, edge, &offer.recording_id, &offer.file, 0, reason)
            }
            OfferDecision::AlreadyStored => {
                let location = entry
                    .as_ref()
                    .and_then(|e| e.file(&offer.file))
                    .and_then(|f| f.locations.iter().find(|l| l.target == target))
                    .map(|l| l.path.clone())
                    .unwrap_or_default();
                ctx.ack(
                    tenant,
                    edge,
                    AckBody::Stored {
                        recording_id: offer.recording_id,
                        file: offer.file,
                        target,
                        location,
                        sha256: offer.sha256,
                    },
                )
            }
            OfferDecision::Resume {
                transfer_id,
                offset,
            } => ctx.ack(
                tenant,
                edge,
                AckBody::Accept {
                    recording_id: offer.recording_id,
                    file: offer.file,
                    transfer_id,
                    offset,
                },
            ),
            OfferDecision::Start => {
                if let Some(old) = open_id {
                    self.drop_transfer(old);
                }
                let start_ns = entry.as_ref().map(|e| e.start_ns).unwrap_or(0);
                // The recording's own edge names the folder, whoever uploads it (relay hook).
                let owner = entry.as_ref().map_or(edge, |e| e.edge_id.as_str());
                let path = format!(
                    "{}/{}",
                    recording_dir(tenant, owner, start_ns, &offer.recording_id),
                    offer.file
                );
                let transfer_id = ctx.store.next_id("transfer")?;
                let rec = TransferRecord {
                    transfer_id,
                    tenant: tenant.to_owned(),
                    edge_id: edge.to_owned(),
                    recording_id: offer.recording_id.clone(),
                    file: offer.file.clone(),
                    size: offer.size,
                    sha256: offer.sha256.to_hex(),
                    target: target.clone(),
                    path: path.clone(),
                };
                let sm = Transfer::new(offer.size, offer.sha256);
                if offer.size == 0 {
                    // Nothing to send: store the empty file now.
                    let refused = if sm.completion().matches {
                        write_verified(&op, &path, [], &offer.sha256)
                            .await
                            .err()
                            .map(|e| e.to_string())
                    } else {
                        Some("an empty file cannot have that sha256".to_owned())
                    };
                    if let Some(reason) = refused {
                        return ctx.fail(
                            tenant,
                            edge,
                            &offer.recording_id,
                            &offer.file,
                            transfer_id,
                            reason,
                        );
                    }
                    return ctx.stored(&rec, &op, offer.sha256).await;
                }
                // The state machine hashes every byte it lets through: the writer does not.
                let writer = match AtomicWriter::open_prehashed(&op, &path, offer.size).await {
                    Ok(w) => w,
                    Err(e) => {
                        let reason = format!("target {target} cannot be written: {e}");
                        return ctx.fail(
                            tenant,
                            edge,
                            &offer.recording_id,
                            &offer.file,
                            transfer_id,
                            reason,
                        );
                    }
                };
                ctx.store.put_transfer(&rec)?;
                let (tx, rx) = mpsc::channel(WRITE_QUEUE);
                tokio::spawn(ctx.clone().write_transfer(rec.clone(), op, writer, rx));
                self.active.insert(
                    transfer_id,
                    Active {
                        sm,
                        tx,
                        rec,
                        last: Instant::now(),
                    },
                );
                self.by_file.insert(key, transfer_id);
                tracing::info!(%edge, recording_id = %offer.recording_id, file = %offer.file, size = offer.size, transfer_id, %path, "transfer accepted");
                ctx.ack(
                    tenant,
                    edge,
                    AckBody::Accept {
                        recording_id: offer.recording_id,
                        file: offer.file,
                        transfer_id,
                        offset: 0,
                    },
                )
            }
        }
    }

    /// Forgets an open transfer: its writer task aborts the write (the temporary object is
    /// removed) and its record goes.
    fn drop_transfer(&mut self, id: u64) -> Option<TransferRecord> {
        let a = self.active.remove(&id)?;
        self.by_file.remove(&(
            a.rec.edge_id.clone(),
            a.rec.recording_id.clone(),
            a.rec.file.clone(),
        ));
        if let Err(e) = self.ctx.store.remove_transfer(id) {
            tracing::warn!(error = %e, transfer_id = id, "transfer record not removed");
        }
        Some(a.rec)
    }

    async fn on_chunk(&mut self, tenant: &str, edge: &str, chunk: Chunk) -> anyhow::Result<()> {
        let ctx = self.ctx.clone();
        inc(&ctx.metrics.chunks_received_total);
        let id = chunk.transfer_id;
        let Some(a) = self.active.get_mut(&id) else {
            // Not open: interrupted by a restart (a record is left), or unknown.
            let (rid, file) = match ctx.store.transfer(id)? {
                Some(r) if r.edge_id == edge => {
                    ctx.store.remove_transfer(id)?;
                    (r.recording_id, r.file)
                }
                _ => (String::new(), String::new()),
            };
            let reason =
                "no such transfer open (the manager may have restarted): offer the file again"
                    .to_owned();
            return ctx.fail(tenant, edge, &rid, &file, id, reason);
        };
        if a.rec.edge_id != edge || a.rec.tenant != tenant {
            inc(&ctx.metrics.unknown_edge_messages_total);
            tracing::warn!(%edge, transfer_id = id, "chunk for another edge's transfer dropped");
            return Ok(());
        }
        a.last = Instant::now();
        match a.sm.on_chunk(chunk.offset, &chunk.data) {
            ChunkDecision::ReAck { next_offset, gap } => {
                if gap {
                    inc(&ctx.metrics.chunks_gap_total);
                } else {
                    inc(&ctx.metrics.chunks_duplicate_total);
                }
                ctx.ack(
                    tenant,
                    edge,
                    AckBody::Chunk {
                        transfer_id: id,
                        next_offset,
                    },
                )
            }
            ChunkDecision::Overrun { reason } => {
                let rec = self.drop_transfer(id);
                let (rid, file) = rec.map(|r| (r.recording_id, r.file)).unwrap_or_default();
                ctx.fail(tenant, edge, &rid, &file, id, reason)
            }
            ChunkDecision::Write {
                skip,
                next_offset,
                done,
            } => {
                // No copy: the payload's buffer goes to the writer task as it is.
                let data = chunk.data.slice(skip.min(chunk.data.len())..);
                if a.tx.send(WriteOp::Data(data)).await.is_err() {
                    // The writer task failed (and answered `TransferFailed`) or is gone.
                    self.drop_transfer(id);
                    return Ok(());
                }
                // The ack goes out while the writer task writes: the edge sends on at once.
                ctx.ack(
                    tenant,
                    edge,
                    AckBody::Chunk {
                        transfer_id: id,
                        next_offset,
                    },
                )?;
                let Some(done) = done else {
                    return Ok(());
                };
                let Some(a) = self.active.remove(&id) else {
                    return Ok(());
                };
                self.by_file.remove(&(
                    a.rec.edge_id.clone(),
                    a.rec.recording_id.clone(),
                    a.rec.file.clone(),
                ));
                if !done.matches {
                    // Dropping the sender aborts the write.
                    drop(a.tx);
                    let _ = ctx.store.remove_transfer(id);
                    let reason = format!(
                        "sha256 mismatch: received {} but {} was offered",
                        done.sha256, a.rec.sha256
                    );
                    return ctx.fail(tenant, edge, &a.rec.recording_id, &a.rec.file, id, reason);
                }
                // Commit (fsync), catalog and `Stored` happen in the writer task, while this
                // worker goes on with other transfers.
                let _ = a.tx.send(WriteOp::Commit(done.sha256)).await;
                Ok(())
            }
        }
    }
}

impl Ctx {
    fn ack(&self, tenant: &str, edge: &str, body: AckBody) -> anyhow::Result<()> {
        self.outbox
            .send(&Topic::edge(tenant, edge, Channel::Acks)?, &Ack::new(body));
        Ok(())
    }

    fn fail(
        &self,
        tenant: &str,
        edge: &str,
        recording_id: &str,
        file: &str,
        transfer_id: u64,
        reason: String,
    ) -> anyhow::Result<()> {
        inc(&self.metrics.transfers_failed_total);
        tracing::warn!(%edge, %recording_id, %file, transfer_id, %reason, "transfer failed");
        self.ack(
            tenant,
            edge,
            AckBody::TransferFailed {
                recording_id: recording_id.to_owned(),
                file: file.to_owned(),
                transfer_id,
                reason,
            },
        )
    }

    /// One transfer's writes, in the order the worker accepted them: appends each chunk;
    /// at [`WriteOp::Commit`] publishes the object (the fs service syncs it first) and
    /// reports it stored. A failed write aborts and answers `TransferFailed`; a closed channel
    /// without a commit (the transfer was dropped) aborts.
    async fn write_transfer(
        self,
        rec: TransferRecord,
        op: Target,
        mut writer: AtomicWriter,
        mut rx: mpsc::Receiver<WriteOp>,
    ) {
        let id = rec.transfer_id;
        let outcome = loop {
            match rx.recv().await {
                Some(WriteOp::Data(data)) => {
                    if let Err(e) = writer.write_bytes(data).await {
                        writer.abort().await;
                        break Err(e.to_string());
                    }
                }
                Some(WriteOp::Commit(sha256)) => {
                    break writer
                        .commit(&sha256)
                        .await
                        .map(|()| sha256)
                        .map_err(|e| e.to_string());
                }
                None => {
                    writer.abort().await;
                    return;
                }
            }
        };
        // Whatever the outcome, nothing of this transfer is open any more.
        rx.close();
        if let Err(e) = self.store.remove_transfer(id) {
            tracing::warn!(error = %e, transfer_id = id, "transfer record not removed");
        }
        let r = match outcome {
            Ok(sha256) => self.stored(&rec, &op, sha256).await,
            Err(reason) => self.fail(
                &rec.tenant,
                &rec.edge_id,
                &rec.recording_id,
                &rec.file,
                id,
                reason,
            ),
        };
        if let Err(e) = r {
            tracing::error!(error = %e, transfer_id = id, "transfer not finished");
        }
    }

    /// A file is in its target: catalog it, finish the recording if complete, ack `Stored`.
    async fn stored(
        &self,
        rec: &TransferRecord,
        op: &Target,
        sha256: Sha256,
    ) -> anyhow::Result<()> {
        inc(&self.metrics.transfers_ok_total);
        add(&self.metrics.bytes_stored_total, rec.size);
        let loc = Location {
            target: rec.target.clone(),
            path: rec.path.clone(),
        };
        let entry = self.store.add_location(&rec.recording_id, &rec.file, loc)?;
        tracing::info!(edge = %rec.edge_id, recording_id = %rec.recording_id, file = %rec.file, path = %rec.path, size = rec.size, "file stored");
        if let Some(e) = entry
            && e.all_stored_in(&rec.target)
            && !has_manifest_in(&e, &rec.target)
        {
            self.write_manifest(&rec.recording_id, &rec.target, op)
                .await?;
        }
        self.ack(
            &rec.tenant,
            &rec.edge_id,
            AckBody::Stored {
                recording_id: rec.recording_id.clone(),
                file: rec.file.clone(),
                target: rec.target.clone(),
                location: rec.path.clone(),
                sha256,
            },
        )
    }

    async fn finalize(&self, recording_id: &str, target: &str) -> anyhow::Result<()> {
        let Some(op) = self.targets.get(target).cloned() else {
            return Ok(());
        };
        match self.store.recording(recording_id)? {
            Some(e) if e.all_stored_in(target) && !has_manifest_in(&e, target) => {
                self.write_manifest(recording_id, target, &op).await
            }
            _ => Ok(()),
        }
    }

    /// Writes `manifest.json` beside the files and marks the recording stored.
    async fn write_manifest(
        &self,
        recording_id: &str,
        target: &str,
        op: &Target,
    ) -> anyhow::Result<()> {
        let (Some(m), Some(e)) = (
            self.store.manifest(recording_id)?,
            self.store.recording(recording_id)?,
        ) else {
            return Ok(());
        };
        let path = format!(
            "{}/manifest.json",
            recording_dir(&e.tenant, &e.edge_id, e.start_ns, recording_id)
        );
        let json = tapfleet_schemas::manifest_json(&m);
        let digest = commit::sha256(&json);
        write_verified(op, &path, [json], &digest).await?;
        self.store.mark_stored(
            recording_id,
            Location {
                target: target.to_owned(),
                path: path.clone(),
            },
        )?;
        tracing::info!(%recording_id, %path, "recording stored");
        crate::jobs::announce_stored(&self.outbox, &e.tenant, &e.edge_id, recording_id, target);
        // relay hook: complete in staging under a policy `edge:<id>` -> relay it there.
        crate::relay::on_stored(&self.store, recording_id, target)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edge_always_lands_on_the_same_worker_of_a_target() {
        let shards: std::collections::BTreeSet<usize> =
            (0..64).map(|i| shard(&format!("edge-{i}"))).collect();
        assert!(shards.iter().all(|s| *s < WORKERS_PER_TARGET));
        assert!(shards.len() > 1, "edges spread over the workers");
        assert_eq!(shard("edge-7"), shard("edge-7"));
    }
}
