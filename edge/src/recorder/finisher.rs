//! The finisher: closes recordings off the packet thread, durably and in batches.
//!
//! Finishing a recording flushes its files, patches and hashes `audio.wav`, and publishes
//! `manifest.json` atomically: milliseconds of blocking IO the packet thread must not wait for.
//! The recorder hands each ended call to one background thread through a bounded channel (the
//! packet thread waits only when [`QUEUE_BOUND`] recordings are already waiting: bounded memory)
//! and takes the outcomes back when it is polled. One thread, FIFO: outcomes come back in the
//! order the calls ended.
//!
//! Durability is batched: the thread takes every recording waiting (up to [`BATCH_MAX`], never
//! waiting for more), writes each one's files and temporary manifest unsynced, syncs the cache
//! filesystem once (`syncfs`), renames the manifests into place, and syncs once more for the
//! renames: two syncs per batch instead of about four fsyncs per recording.
//!
//! The invariant the service's cache relies on is kept: an outcome is `Ok` only once every file
//! and the manifest are synced, so the core never commits `finalized` before the data is on disk.
//! A failed sync fails every recording of the batch on that filesystem (which file the kernel
//! could not write back is not known), each reported on its own. A recorder that is not
//! `durable` (offline `record`, like `cp`) skips both syncs; its manifests are still renamed into
//! place after the other files are written.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use tapfleet_schemas::Manifest;

use super::call::{CallRecording, publish_manifest};
use crate::calls::Dialog;

/// Ended recordings waiting for the finisher thread at most; a further one makes the packet
/// thread wait (each holds its call's buffers, under 100 KiB).
pub const QUEUE_BOUND: usize = 128;

/// Recordings made durable together at most (the thread never waits to fill a batch).
pub const BATCH_MAX: usize = 64;

/// A recording to finish.
#[derive(Debug)]
pub(super) struct Job {
    pub rec: CallRecording,
    pub dialog: Dialog,
}

/// What finishing a recording gave.
#[derive(Debug)]
pub(super) struct Outcome {
    pub id: String,
    pub dir: PathBuf,
    pub result: io::Result<Manifest>,
}

/// Finishes recordings on a background thread (or inline when built with `background: false`).
#[derive(Debug)]
pub(super) struct Finisher {
    edge_id: Option<String>,
    background: bool,
    /// Sync the files before the manifests are published and reported.
    durable: bool,
    jobs: Option<SyncSender<Job>>,
    done: Option<Receiver<Outcome>>,
    thread: Option<JoinHandle<()>>,
    /// Recordings handed to the thread and not yet returned: id -> folder.
    pending: HashMap<String, PathBuf>,
    /// Outcomes of recordings finished inline (or failed to hand over).
    ready: VecDeque<Outcome>,
    /// Outcomes the thread has sent, and those taken: polling is one atomic load while they
    /// are equal (the packet thread polls after every packet).
    sent: Arc<AtomicU64>,
    taken: u64,
}

/// Finishes a batch of recordings: their files and temporary manifests written, one sync of the
/// filesystem, the manifests renamed into place, one more sync. Outcomes in the jobs' order.
fn finish_batch(jobs: Vec<Job>, edge_id: Option<&str>, durable: bool) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = jobs
        .into_iter()
        .map(|Job { rec, dialog }| {
            let (id, dir) = (rec.id.clone(), rec.dir.clone());
            let result = rec.finish(&dialog, edge_id);
            Outcome { id, dir, result }
        })
        .collect();
    // The files and temporary manifests on disk before any manifest is published.
    if durable {
        sync_filesystems(&mut outcomes);
    }
    for o in outcomes.iter_mut().filter(|o| o.result.is_ok()) {
        if let Err(e) = publish_manifest(&o.dir) {
            o.result = Err(e);
        }
    }
    // The renames (folder entries) on disk before anything is reported finished.
    if durable {
        sync_filesystems(&mut outcomes);
    }
    outcomes
}

/// Syncs, once each, the filesystems holding the folders of the recordings still `Ok`; a
/// recording whose filesystem fails to sync becomes `Err`.
fn sync_filesystems(outcomes: &mut [Outcome]) {
    // Device id -> the sync's failure, if it failed.
    let mut synced: Vec<(u64, Option<(io::ErrorKind, String)>)> = Vec::new();
    for o in outcomes.iter_mut().filter(|o| o.result.is_ok()) {
        if let Err(e) = sync_filesystem_of(&o.dir, &mut synced) {
            tracing::warn!(recording = %o.id, error = %e, "cannot sync the recording's filesystem");
            o.result = Err(e);
        }
    }
}

/// Syncs the filesystem holding `dir` unless already done in this round (`synced`).
fn sync_filesystem_of(
    dir: &Path,
    synced: &mut Vec<(u64, Option<(io::ErrorKind, String)>)>,
) -> io::Result<()> {
    let folder = File::open(dir)?;
    let dev = folder.metadata()?.dev();
    let failure = match synced.iter().find(|(d, _)| *d == dev) {
        Some((_, failure)) => failure.clone(),
        None => {
            let failure = rustix::fs::syncfs(&folder)
                .err()
                .map(|e| (io::Error::from(e).kind(), format!("syncfs: {e}")));
            synced.push((dev, failure.clone()));
            failure
        }
    };
    match failure {
        None => Ok(()),
        Some((kind, msg)) => Err(io::Error::new(kind, msg)),
    }
}

/// Finishes one recording here, as a batch of one.
fn finish_one(job: Job, edge_id: Option<&str>, durable: bool) -> Outcome {
    let (id, dir) = (job.rec.id.clone(), job.rec.dir.clone());
    finish_batch(vec![job], edge_id, durable)
        .pop()
        .unwrap_or_else(|| Outcome {
            id,
            dir,
            result: Err(io::Error::other("the recording was not finished")),
        })
}

impl Finisher {
    pub fn new(edge_id: Option<String>, background: bool, durable: bool) -> Self {
        Finisher {
            edge_id,
            background,
            durable,
            jobs: None,
            done: None,
            thread: None,
            pending: HashMap::new(),
            ready: VecDeque::new(),
            sent: Arc::new(AtomicU64::new(0)),
            taken: 0,
        }
    }

    /// The thread, started on first use (a recorder that never ends a call starts none).
    fn sender(&mut self) -> Option<&SyncSender<Job>> {
        if self.jobs.is_none() && self.background {
            let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(QUEUE_BOUND);
            let (done_tx, done_rx) = mpsc::channel::<Outcome>();
            let edge_id = self.edge_id.clone();
            let sent = Arc::clone(&self.sent);
            let durable = self.durable;
            let spawned = std::thread::Builder::new()
                .name("finisher".to_owned())
                .spawn(move || {
                    while let Ok(first) = jobs_rx.recv() {
                        // Whatever else is already waiting joins the batch; nothing waits for it.
                        let mut batch = vec![first];
                        while batch.len() < BATCH_MAX {
                            match jobs_rx.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                        for outcome in finish_batch(batch, edge_id.as_deref(), durable) {
                            // With the recorder gone nobody takes outcomes; the files are still
                            // finished, so the remaining jobs go on.
                            if done_tx.send(outcome).is_ok() {
                                sent.fetch_add(1, Ordering::Release);
                            }
                        }
                    }
                });
            match spawned {
                Ok(t) => {
                    self.jobs = Some(jobs_tx);
                    self.done = Some(done_rx);
                    self.thread = Some(t);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the finisher thread; finishing inline");
                    self.background = false;
                }
            }
        }
        self.jobs.as_ref()
    }

    /// Hands a recording over; waits only while [`QUEUE_BOUND`] recordings are queued.
    pub fn submit(&mut self, job: Job) {
        let (id, dir) = (job.rec.id.clone(), job.rec.dir.clone());
        let job = match self.sender() {
            Some(tx) => match tx.send(job) {
                Ok(()) => {
                    self.pending.insert(id, dir);
                    return;
                }
                // The thread is gone (it panicked): finish here.
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let outcome = finish_one(job, self.edge_id.as_deref(), self.durable);
        self.ready.push_back(outcome);
    }

    /// Whether recording `id` is being finished.
    pub fn is_pending(&self, id: &str) -> bool {
        self.pending.contains_key(id)
    }

    /// Recordings not yet returned.
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.ready.len()
    }

    /// The next outcome, waiting for one when `wait` and some recording is pending.
    pub fn next(&mut self, wait: bool) -> Option<Outcome> {
        if let Some(o) = self.ready.pop_front() {
            return Some(o);
        }
        if self.pending.is_empty() || (!wait && self.sent.load(Ordering::Acquire) == self.taken) {
            return None;
        }
        let rx = self.done.as_ref()?;
        let got = if wait {
            rx.recv().map_err(|_| mpsc::TryRecvError::Disconnected)
        } else {
            rx.try_recv()
        };
        match got {
            Ok(o) => {
                self.taken += 1;
                self.pending.remove(&o.id);
                Some(o)
            }
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => {
                // The thread died: what it had not returned is failed, not lost silently.
                for (id, dir) in self.pending.drain() {
                    self.ready.push_back(Outcome {
                        id,
                        dir,
                        result: Err(io::Error::other("the finisher thread stopped")),
                    });
                }
                self.ready.pop_front()
            }
        }
    }
}

impl Drop for Finisher {
    /// Lets the thread finish what it was given (files complete on disk) before going away.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
