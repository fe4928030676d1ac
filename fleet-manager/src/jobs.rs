//! User jobs: `upload` (ask an edge to send a recording now), `copy` and `move` a recording
//! between targets, `delete` copies, `fetch` recordings back (by id or by attributes) — each a
//! persisted [`JobRecord`] with a state (`queued` -> `running` -> `done` | `failed`) and progress
//! in bytes, in the store's `jobs` table. Also the legal hold.
//!
//! How each kind runs (one tokio task per job; every step is idempotent, so a job interrupted by
//! a restart is simply run again at start-up by [`Jobs::resume`]):
//! - copy between manager targets: an OpenDAL reader on the source, the mover's
//!   [`AtomicWriter`] on the destination (hashes what it writes, publishes only on the catalog's
//!   SHA-256), then `manifest.json` (the catalog's manifest, same bytes as the edge's) and the new
//!   locations in the catalog. Files already in the destination are skipped.
//! - copy from an edge (`edge:<edge_id>` source, or the recording is in no manager target): the
//!   recording's `upload_target` is set to the destination and `JobAction::Upload` is sent to
//!   the edge; the mover stores the files there (same transfer path as any upload); the job
//!   watches the catalog until every file and `manifest.json` are in the destination.
//! - copy into an edge's local storage (`to = "edge:<edge_id>"`): the relay
//!   ([`crate::relay`]) sends the files from a manager target, or, when only an edge has the
//!   recording, from the relay's staging target after an upload from that edge; the job waits
//!   for the relay and shows its status (e.g. waiting for the edge to come back online).
//! - move = copy, then delete the source copy (after the copy is verified and cataloged).
//! - delete: objects removed from a manager target, or `JobAction::Delete` sent to the edge and
//!   its reply awaited; the catalog forgets each deleted location. Refused while the recording is
//!   under legal hold (also checked again when the job runs).
//! - fetch: every matching recording is made available in `to` (default: wherever it already is
//!   in a manager target, else `cloud`), from which `GET /api/v1/recordings/{id}/files/{name}`
//!   streams it.
//!
//! Pure parts (request validation, query matching, time parsing) are plain functions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tapfleet_schemas::{Channel, Event, EventBody, Job, JobAction, ReplyBody, Sha256, Topic};

use crate::catalog::{Location, RecordingEntry, edge_of_target, edge_target, recording_dir};
use crate::fleet::now_ms;
use crate::mover::commit::{self, AtomicWriter, write_verified};
use crate::mqtt::Outbox;
use crate::store::{Store, StoreError};
use crate::targets::{DEFAULT_TARGET, Targets};

/// The storage policy target meaning "the recording edge keeps its files".
pub const EDGE_LOCAL: &str = "edge-local";

/// Bytes read from a source per request when copying.
const COPY_CHUNK: u64 = 8 * 1024 * 1024;
/// How often a job waiting for an edge re-sends its request (the edge may have been offline).
const EDGE_RESEND: Duration = Duration::from_secs(20);
/// How long a job waits for an edge's upload before failing.
const EDGE_UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a job waits without a new file stored after the edge answered its upload request.
const EDGE_STALL: Duration = Duration::from_secs(120);
/// How long a job waits for an edge's answer to a delete.
const EDGE_DELETE_TIMEOUT: Duration = Duration::from_secs(60);
/// Progress is written to the store at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Upload,
    Move,
    Copy,
    Delete,
    Fetch,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

/// `POST /api/v1/jobs` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub kind: JobKind,
    #[serde(default)]
    pub recording_id: Option<String>,
    /// Source: a target name or `edge:<edge_id>` (copy, move); the copy to delete (delete;
    /// none: every copy). Resolved when the job is accepted and kept in the record.
    #[serde(default)]
    pub from: Option<String>,
    /// Destination target (upload: the edge's storage policy by default; fetch: optional).
    #[serde(default)]
    pub to: Option<String>,
    /// fetch by attributes: exact SIP Call-ID.
    #[serde(default)]
    pub call_id: Option<String>,
    /// fetch by attributes: caller number prefix.
    #[serde(default)]
    pub caller: Option<String>,
    /// fetch by attributes: callee number prefix.
    #[serde(default)]
    pub callee: Option<String>,
    /// fetch by attributes: calls that started at or after this RFC 3339 time.
    #[serde(default)]
    pub since: Option<String>,
    /// fetch by attributes: calls that started before this RFC 3339 time.
    #[serde(default)]
    pub until: Option<String>,
}

impl JobRequest {
    /// A request of `kind` for one recording.
    pub fn new(kind: JobKind, recording_id: Option<String>) -> Self {
        JobRequest {
            kind,
            recording_id,
            from: None,
            to: None,
            call_id: None,
            caller: None,
            callee: None,
            since: None,
            until: None,
        }
    }

    fn has_query(&self) -> bool {
        self.call_id.is_some()
            || self.caller.is_some()
            || self.callee.is_some()
            || self.since.is_some()
            || self.until.is_some()
    }
}

/// A job as stored and as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: u64,
    pub request: JobRequest,
    pub state: JobState,
    /// The recordings the job works on (resolved when it was accepted).
    pub recording_ids: Vec<String>,
    pub progress_bytes: u64,
    pub total_bytes: u64,
    pub error: Option<String>,
    /// What a running job is doing or waiting for (e.g. "waiting: edge b is offline").
    #[serde(default)]
    pub status: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// Why a job or an API call was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// Refused in the recording's current state (legal hold).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses an RFC 3339 time (`2024-02-29T12:34:56Z`, fraction and offset optional) into Unix ns.
pub fn parse_rfc3339_ns(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 19 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = s.get(start..i)?;
        if digits.is_empty() {
            return None;
        }
        let nine: String = digits
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        frac_ns = nine.parse().ok()?;
    }
    let offset_s = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && matches!(tz.as_bytes().first(), Some(b'+' | b'-')) => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let secs = crate::search::civil_secs(y, mo, d) + h * 3600 + mi * 60 + sec - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

/// A fetch query, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub call_id: Option<String>,
    pub caller: Option<String>,
    pub callee: Option<String>,
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
}

impl Query {
    /// The query of a request; the error names the bad field.
    pub fn of(req: &JobRequest) -> Result<Query, JobError> {
        let t = |field: &str, v: &Option<String>| -> Result<Option<i64>, JobError> {
            v.as_deref()
                .map(|s| {
                    parse_rfc3339_ns(s).ok_or_else(|| {
                        JobError::BadRequest(format!(
                            "{field}: {s:?} is not an RFC 3339 time (e.g. 2024-02-29T12:00:00Z)"
                        ))
                    })
                })
                .transpose()
        };
        Ok(Query {
            call_id: req.call_id.clone(),
            caller: req.caller.clone(),
            callee: req.callee.clone(),
            since_ns: t("since", &req.since)?,
            until_ns: t("until", &req.until)?,
        })
    }

    /// Whether a recording matches every criterion given.
    pub fn matches(&self, e: &RecordingEntry) -> bool {
        self.call_id.as_ref().is_none_or(|c| &e.call_id == c)
            && self
                .caller
                .as_ref()
                .is_none_or(|p| e.caller.number.starts_with(p.as_str()))
            && self
                .callee
                .as_ref()
                .is_none_or(|p| e.callee.number.starts_with(p.as_str()))
            && self.since_ns.is_none_or(|t| e.start_ns >= t)
            && self.until_ns.is_none_or(|t| e.start_ns < t)
    }
}

/// The source a copy reads from: the first manager target holding a complete copy (other than
/// `to`), else an edge holding a complete copy (the recording's own first), else the
/// recording's edge.
pub fn pick_source(e: &RecordingEntry, targets: &Targets, to: Option<&str>) -> String {
    let copies = e.complete_copies();
    let own = edge_target(&e.edge_id);
    copies
        .iter()
        .find(|t| Some(t.as_str()) != to && targets.get(t).is_some())
        .or_else(|| copies.iter().find(|t| **t == own && Some(t.as_str()) != to))
        .or_else(|| {
            copies
                .iter()
                .find(|t| edge_of_target(t).is_some() && Some(t.as_str()) != to)
        })
        .cloned()
        .unwrap_or(own)
}

fn hold_refusal(id: &str) -> JobError {
    JobError::Conflict(format!(
        "recording {id} is under legal hold: no copy can be deleted or moved until the hold is \
         cleared (DELETE /api/v1/recordings/{id}/hold)"
    ))
}

fn recording_bytes(e: &RecordingEntry) -> u64 {
    e.files.iter().map(|f| f.size).sum()
}

/// Replies from edges to jobs, by the edge job id (`job-N-...`).
type Replies = Arc<Mutex<HashMap<String, ReplyBody>>>;

/// The job service: shared by the HTTP API (submit, read) and the dispatcher (edge replies).
#[derive(Clone)]
pub struct Jobs {
    pub store: Arc<Store>,
    pub targets: Targets,
    outbox: Outbox,
    replies: Replies,
    /// Edge replies to relay downloads, for the relay task ([`crate::relay::spawn`]).
    pub relay: crate::relay::RelayInbox,
}

impl Jobs {
    pub fn new(store: Arc<Store>, targets: Targets, outbox: Outbox) -> Self {
        Jobs {
            store,
            targets,
            outbox,
            replies: Arc::default(),
            relay: crate::relay::RelayInbox::default(),
        }
    }

    /// The storage policy target of an edge (`cloud` until configured otherwise).
    pub fn policy_target(&self, edge: &str) -> Result<String, StoreError> {
        Ok(self
            .store
            .latest_config(edge)?
            .map(|c| c.edge.storage.target)
            .unwrap_or_else(|| DEFAULT_TARGET.to_owned()))
    }

    fn is_target(&self, name: &str) -> bool {
        self.targets.get(name).is_some()
    }

    fn require_target(&self, field: &str, name: &str) -> Result<(), JobError> {
        if self.is_target(name) {
            return Ok(());
        }
        let names: Vec<&str> = self.targets.names().collect();
        Err(JobError::BadRequest(format!(
            "{field}: {name:?} is not a configured target (targets: {})",
            names.join(", ")
        )))
    }

    fn recording(&self, id: &str) -> Result<RecordingEntry, JobError> {
        self.store
            .recording(id)?
            .ok_or_else(|| JobError::NotFound(format!("no recording {id:?} in the catalog")))
    }

    /// Checks a request, resolves its recordings and source, stores it `queued` and starts it.
    pub fn submit(&self, mut req: JobRequest) -> Result<JobRecord, JobError> {
        let single = |req: &JobRequest| -> Result<RecordingEntry, JobError> {
            let id = req.recording_id.as_deref().ok_or_else(|| {
                JobError::BadRequest(format!("{:?} needs a recording_id", req.kind))
            })?;
            self.recording(id)
        };
        let entries: Vec<RecordingEntry> = match req.kind {
            JobKind::Upload => {
                let e = single(&req)?;
                let to = match req.to.clone() {
                    Some(t) => t,
                    // A policy `edge:<id>` is uploaded into the relay's staging, then relayed.
                    None => crate::relay::upload_target(&self.policy_target(&e.edge_id)?),
                };
                if to == EDGE_LOCAL {
                    return Err(JobError::BadRequest(format!(
                        "edge {} keeps its recordings in its local storage (edge-local): name a target with \"to\"",
                        e.edge_id
                    )));
                }
                self.require_target("to", &to)?;
                req.to = Some(to);
                req.from = Some(edge_target(&e.edge_id));
                vec![e]
            }
            JobKind::Copy | JobKind::Move => {
                let e = single(&req)?;
                let to = req.to.clone().ok_or_else(|| {
                    JobError::BadRequest("\"to\" names the destination target".into())
                })?;
                match edge_of_target(&to) {
                    // Into an edge's local storage: an enrolled edge of the recording's tenant.
                    Some(dest) => match self.store.edge(dest)? {
                        Some(d) if d.tenant == e.tenant => {}
                        _ => {
                            return Err(JobError::BadRequest(format!(
                                "to: {dest:?} is not an enrolled edge of tenant {}",
                                e.tenant
                            )));
                        }
                    },
                    None => self.require_target("to", &to)?,
                }
                let from = match req.from.clone() {
                    Some(f) => f,
                    None => pick_source(&e, &self.targets, Some(&to)),
                };
                if from == to {
                    return Err(JobError::BadRequest(format!("from and to are both {to:?}")));
                }
                match edge_of_target(&from) {
                    Some(edge) if edge != e.edge_id && !e.targets().contains(&from) => {
                        return Err(JobError::BadRequest(format!(
                            "from: {from:?} is neither the edge that recorded {} nor one holding a copy",
                            e.recording_id
                        )));
                    }
                    Some(_) => {}
                    None => {
                        self.require_target("from", &from)?;
                        if !e.all_stored_in(&from) {
                            return Err(JobError::NotFound(format!(
                                "recording {} has no complete copy in {from:?} (copies: {:?})",
                                e.recording_id,
                                e.targets()
                            )));
                        }
                    }
                }
                if req.kind == JobKind::Move && e.legal_hold {
                    return Err(hold_refusal(&e.recording_id));
                }
                req.from = Some(from);
                vec![e]
            }
            JobKind::Delete => {
                let e = single(&req)?;
                if e.legal_hold {
                    return Err(hold_refusal(&e.recording_id));
                }
                if let Some(from) = &req.from
                    && !e.targets().contains(from)
                {
                    return Err(JobError::NotFound(format!(
                        "recording {} has no copy in {from:?} (copies: {:?})",
                        e.recording_id,
                        e.targets()
                    )));
                }
                vec![e]
            }
            JobKind::Fetch => {
                if let Some(to) = &req.to {
                    self.require_target("to", to)?;
                }
                if let Some(id) = &req.recording_id {
                    vec![self.recording(id)?]
                } else if req.has_query() {
                    let q = Query::of(&req)?;
                    let found: Vec<RecordingEntry> = self
                        .store
                        .recordings()?
                        .into_iter()
                        .filter(|e| q.matches(e))
                        .collect();
                    if found.is_empty() {
                        return Err(JobError::NotFound("no recording matches the query".into()));
                    }
                    found
                } else {
                    return Err(JobError::BadRequest(
                        "fetch needs a recording_id or at least one of call_id, caller, callee, since, until"
                            .into(),
                    ));
                }
            }
        };
        let now = now_ms();
        let rec = JobRecord {
            id: self.store.next_id("user_job")?,
            request: req,
            state: JobState::Queued,
            recording_ids: entries.iter().map(|e| e.recording_id.clone()).collect(),
            progress_bytes: 0,
            total_bytes: entries.iter().map(recording_bytes).sum(),
            error: None,
            status: None,
            created_ms: now,
            updated_ms: now,
        };
        self.store.put_job(&rec)?;
        tracing::info!(job = rec.id, kind = ?rec.request.kind, recordings = rec.recording_ids.len(), "job queued");
        tokio::spawn(self.clone().run(rec.id));
        Ok(rec)
    }

    /// Starts again every job a previous run left queued or running.
    pub fn resume(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for j in self.store.jobs()? {
            if matches!(j.state, JobState::Queued | JobState::Running) {
                tracing::info!(job = j.id, "resuming job");
                tokio::spawn(self.clone().run(j.id));
                n += 1;
            }
        }
        Ok(n)
    }

    /// An edge answered a job (the dispatcher calls this for every reply with a job id).
    pub fn on_reply(&self, job_id: &str, body: ReplyBody) {
        if !job_id.starts_with("job-") {
            return;
        }
        if let Ok(mut r) = self.replies.lock() {
            if r.len() > 10_000 {
                r.clear();
            }
            r.insert(job_id.to_owned(), body);
        }
    }

    fn take_reply(&self, job_id: &str) -> Option<ReplyBody> {
        self.replies.lock().ok()?.remove(job_id)
    }

    /// Sets or clears a recording's legal hold.
    pub fn set_hold(&self, id: &str, on: bool) -> Result<RecordingEntry, JobError> {
        let e = self
            .store
            .update_recording(id, |e| e.legal_hold = on)?
            .ok_or_else(|| JobError::NotFound(format!("no recording {id:?} in the catalog")))?;
        tracing::info!(recording_id = %id, legal_hold = on, "legal hold changed");
        Ok(e)
    }

    // ---- running

    async fn run(self, id: u64) {
        let Ok(Some(mut rec)) = self.store.job(id) else {
            tracing::error!(job = id, "job vanished from the store");
            return;
        };
        rec.state = JobState::Running;
        rec.progress_bytes = 0;
        rec.updated_ms = now_ms();
        if let Err(e) = self.store.put_job(&rec) {
            tracing::error!(job = id, error = %e, "job not started");
            return;
        }
        let mut p = Progress {
            store: self.store.clone(),
            rec,
            last: tokio::time::Instant::now(),
        };
        let result = self.execute(&mut p).await;
        let mut rec = p.rec;
        match result {
            Ok(()) => {
                rec.state = JobState::Done;
                rec.status = None;
                rec.progress_bytes = rec.progress_bytes.max(rec.total_bytes);
                tracing::info!(job = id, kind = ?rec.request.kind, "job done");
            }
            Err(reason) => {
                tracing::warn!(job = id, kind = ?rec.request.kind, %reason, "job failed");
                rec.state = JobState::Failed;
                rec.error = Some(reason);
            }
        }
        rec.updated_ms = now_ms();
        if let Err(e) = self.store.put_job(&rec) {
            tracing::error!(job = id, error = %e, "job result not stored");
        }
    }

    async fn execute(&self, p: &mut Progress) -> Result<(), String> {
        let req = p.rec.request.clone();
        let ids = p.rec.recording_ids.clone();
        for (n, rid) in ids.iter().enumerate() {
            let e = self
                .store
                .recording(rid)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("recording {rid} is no longer in the catalog"))?;
            let tag = format!("job-{}-{n}", p.rec.id);
            match req.kind {
                JobKind::Upload => {
                    let to = req.to.as_deref().unwrap_or(DEFAULT_TARGET);
                    self.upload_from_edge(p, &tag, &e, &e.edge_id, to).await?;
                }
                JobKind::Copy | JobKind::Move => {
                    let to = req.to.as_deref().ok_or("no destination")?;
                    let from = req.from.clone().unwrap_or_else(|| edge_target(&e.edge_id));
                    self.copy(p, &tag, &e, &from, to).await?;
                    if req.kind == JobKind::Move {
                        let e = self.fresh(rid)?;
                        if !(e.all_stored_in(to) && has_manifest(&e, to)) {
                            return Err(format!("the copy in {to} is not complete: source kept"));
                        }
                        self.delete_copy(p, &format!("{tag}-del"), &e, &from, false)
                            .await?;
                    }
                }
                JobKind::Delete => {
                    let copies = match &req.from {
                        Some(f) => vec![f.clone()],
                        None => e.targets(),
                    };
                    for t in copies {
                        let e = self.fresh(rid)?;
                        self.delete_copy(p, &format!("{tag}-{t}"), &e, &t, true)
                            .await?;
                    }
                }
                JobKind::Fetch => {
                    let have: Vec<String> = e
                        .complete_copies()
                        .into_iter()
                        .filter(|t| self.is_target(t))
                        .collect();
                    let to = match &req.to {
                        Some(t) => t.clone(),
                        None if !have.is_empty() => {
                            p.add(recording_bytes(&e));
                            continue;
                        }
                        None => DEFAULT_TARGET.to_owned(),
                    };
                    let from = pick_source(&e, &self.targets, Some(&to));
                    self.copy(p, &tag, &e, &from, &to).await?;
                }
            }
        }
        p.flush();
        Ok(())
    }

    fn fresh(&self, id: &str) -> Result<RecordingEntry, String> {
        self.store
            .recording(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("recording {id} is no longer in the catalog"))
    }

    /// Copies a recording into `to` from `from` (a manager target or `edge:<id>`).
    async fn copy(
        &self,
        p: &mut Progress,
        tag: &str,
        e: &RecordingEntry,
        from: &str,
        to: &str,
    ) -> Result<(), String> {
        if let Some(dest) = edge_of_target(to) {
            return self.store_into_edge(p, tag, e, from, dest).await;
        }
        if let Some(edge) = edge_of_target(from) {
            return self.upload_from_edge(p, tag, e, edge, to).await;
        }
        let src = self
            .targets
            .get(from)
            .ok_or_else(|| format!("source target {from} is not configured"))?;
        let dst = self
            .targets
            .get(to)
            .ok_or_else(|| format!("target {to} is not configured"))?;
        let dir = recording_dir(&e.tenant, &e.edge_id, e.start_ns, &e.recording_id);
        for f in &e.files {
            if e.is_stored_in(&f.name, to) {
                p.add(f.size);
                continue;
            }
            let loc = f
                .locations
                .iter()
                .find(|l| l.target == from)
                .ok_or_else(|| format!("{} has no copy of {} in {from}", e.recording_id, f.name))?;
            let sha: Sha256 = f
                .sha256
                .parse()
                .map_err(|_| format!("catalog sha256 of {} is not valid", f.name))?;
            let path = format!("{dir}/{}", f.name);
            copy_object(src, &loc.path, dst, &path, f.size, &sha, p)
                .await
                .map_err(|err| format!("copying {} from {from} to {to}: {err}", f.name))?;
            self.store
                .add_location(
                    &e.recording_id,
                    &f.name,
                    Location {
                        target: to.to_owned(),
                        path,
                    },
                )
                .map_err(|e| e.to_string())?;
            tracing::info!(recording_id = %e.recording_id, file = %f.name, %from, %to, "file copied");
        }
        if !has_manifest(e, to) {
            let m = self
                .store
                .manifest(&e.recording_id)
                .map_err(|e| e.to_string())?
                .ok_or("the catalog has no manifest for the recording")?;
            let json = tapfleet_schemas::manifest_json(&m);
            let path = format!("{dir}/manifest.json");
            write_verified(dst, &path, [json.clone()], &commit::sha256(&json))
                .await
                .map_err(|err| format!("writing manifest.json into {to}: {err}"))?;
            self.store
                .mark_stored(
                    &e.recording_id,
                    Location {
                        target: to.to_owned(),
                        path,
                    },
                )
                .map_err(|e| e.to_string())?;
            announce_stored(&self.outbox, &e.tenant, &e.edge_id, &e.recording_id, to);
        }
        Ok(())
    }

    /// Stores a recording into edge `dest`'s local storage through the relay, from `from` (a
    /// manager target, or an edge: then uploaded into the relay's staging first), and waits
    /// for it; the job's status says what the relay waits for.
    async fn store_into_edge(
        &self,
        p: &mut Progress,
        tag: &str,
        e: &RecordingEntry,
        from: &str,
        dest: &str,
    ) -> Result<(), String> {
        use crate::relay::{self, RelayState, STAGING};
        let here = edge_target(dest);
        if e.all_stored_in(&here) && has_manifest(e, &here) {
            p.add(recording_bytes(e));
            return Ok(());
        }
        let rid = e.recording_id.clone();
        let base = p.rec.progress_bytes;
        let source = match edge_of_target(from) {
            Some(src_edge) => {
                if !(e.all_stored_in(STAGING) && has_manifest(e, STAGING)) {
                    p.rec.status = Some(format!("uploading from edge {src_edge} to the manager"));
                    p.flush();
                    self.upload_from_edge(p, &format!("{tag}-up"), e, src_edge, STAGING)
                        .await?;
                    p.set(base);
                }
                STAGING.to_owned()
            }
            None => from.to_owned(),
        };
        let staged = source == STAGING;
        relay::request(&self.store, &rid, dest, Some(source), staged, true)
            .map_err(|e| e.to_string())?;
        let total = recording_bytes(e);
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let Some(r) = relay::get(&self.store, &rid, dest).map_err(|e| e.to_string())? else {
                // A storage-policy relay of the same recording finished (and removed its record).
                let now = self.fresh(&rid)?;
                if now.all_stored_in(&here) && has_manifest(&now, &here) {
                    return Ok(());
                }
                relay::request(&self.store, &rid, dest, None, false, true)
                    .map_err(|e| e.to_string())?;
                continue;
            };
            p.set(base + r.done_bytes.min(total));
            if p.rec.status.as_deref() != Some(r.status.as_str()) {
                p.rec.status = Some(r.status.clone());
                p.flush();
            }
            match r.state {
                RelayState::Pending => {}
                RelayState::Done => {
                    let _ = relay::remove(&self.store, &rid, dest);
                    return Ok(());
                }
                RelayState::Failed => {
                    let _ = relay::remove(&self.store, &rid, dest);
                    return Err(format!("relay into edge {dest}: {}", r.status));
                }
            }
        }
    }

    /// Asks `edge` (the recording's edge, or one holding a copy) to upload the recording into
    /// `to` and waits until the catalog has it there.
    async fn upload_from_edge(
        &self,
        p: &mut Progress,
        tag: &str,
        e: &RecordingEntry,
        edge: &str,
        to: &str,
    ) -> Result<(), String> {
        let rid = e.recording_id.clone();
        let done = |e: &RecordingEntry| e.all_stored_in(to) && has_manifest(e, to);
        if done(e) {
            p.add(recording_bytes(e));
            return Ok(());
        }
        self.store
            .update_recording(&rid, |r| r.upload_target = Some(to.to_owned()))
            .map_err(|e| e.to_string())?;
        let topic = Topic::edge(&e.tenant, edge, Channel::Jobs).map_err(|e| e.to_string())?;
        let job = Job::new(
            tag.to_owned(),
            JobAction::Upload {
                recording_id: rid.clone(),
                files: Vec::new(),
            },
        );
        let base = p.rec.progress_bytes;
        let start = tokio::time::Instant::now();
        let mut sent: Option<tokio::time::Instant> = None;
        let (mut answered, mut last_stored) = (false, 0u64);
        let mut last_progress = tokio::time::Instant::now();
        let result = loop {
            if sent.is_none_or(|s| s.elapsed() >= EDGE_RESEND) {
                self.outbox.send(&topic, &job);
                tracing::info!(edge = %edge, recording_id = %rid, %to, job = tag, "upload requested from the edge");
                sent = Some(tokio::time::Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.fresh(&rid)?;
            let stored: u64 = now
                .files
                .iter()
                .filter(|f| now.is_stored_in(&f.name, to))
                .map(|f| f.size)
                .sum();
            p.set(base + stored);
            if done(&now) {
                break Ok(());
            }
            match self.take_reply(tag) {
                Some(ReplyBody::Failed { reason }) => {
                    break Err(format!("edge {}: {reason}", edge));
                }
                Some(ReplyBody::Done) => answered = true,
                _ => {}
            }
            if stored != last_stored {
                last_stored = stored;
                last_progress = tokio::time::Instant::now();
            }
            if answered && last_progress.elapsed() >= EDGE_STALL {
                break Err(format!(
                    "edge {} accepted the upload but stored nothing in {to} for {EDGE_STALL:?} \
                     (its copy may already be uploaded elsewhere or evicted)",
                    edge
                ));
            }
            if start.elapsed() >= EDGE_UPLOAD_TIMEOUT {
                break Err(format!(
                    "edge {} did not upload within {EDGE_UPLOAD_TIMEOUT:?}",
                    edge
                ));
            }
        };
        let _ = self.store.update_recording(&rid, |r| {
            if r.upload_target.as_deref() == Some(to) {
                r.upload_target = None;
            }
        });
        result
    }

    /// Deletes the copy of a recording in `target` (a manager target or `edge:<id>`).
    async fn delete_copy(
        &self,
        p: &mut Progress,
        tag: &str,
        e: &RecordingEntry,
        target: &str,
        count: bool,
    ) -> Result<(), String> {
        if e.legal_hold {
            return Err(format!("recording {} is under legal hold", e.recording_id));
        }
        let rid = &e.recording_id;
        if let Some(edge) = edge_of_target(target) {
            self.delete_on_edge(tag, e, edge).await?;
        } else if let Some(op) = self.targets.get(target) {
            let paths = e
                .files
                .iter()
                .flat_map(|f| f.locations.iter())
                .chain(e.manifest_locations.iter())
                .filter(|l| l.target == target);
            for l in paths {
                op.delete(&l.path)
                    .await
                    .map_err(|err| format!("deleting {} from {target}: {err}", l.path))?;
            }
        } else {
            return Err(format!("target {target} is not configured"));
        }
        self.store
            .update_recording(rid, |r| r.remove_target(target))
            .map_err(|e| e.to_string())?;
        if count {
            p.add(recording_bytes(e));
        }
        tracing::info!(recording_id = %rid, %target, "copy deleted");
        Ok(())
    }

    async fn delete_on_edge(
        &self,
        tag: &str,
        e: &RecordingEntry,
        edge: &str,
    ) -> Result<(), String> {
        let topic = Topic::edge(&e.tenant, edge, Channel::Jobs).map_err(|e| e.to_string())?;
        let job = Job::new(
            tag.to_owned(),
            JobAction::Delete {
                recording_id: e.recording_id.clone(),
            },
        );
        let start = tokio::time::Instant::now();
        let mut sent: Option<tokio::time::Instant> = None;
        loop {
            if sent.is_none_or(|s| s.elapsed() >= Duration::from_secs(10)) {
                self.outbox.send(&topic, &job);
                sent = Some(tokio::time::Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            match self.take_reply(tag) {
                Some(ReplyBody::Done) => return Ok(()),
                Some(ReplyBody::Failed { reason }) => return Err(format!("edge {edge}: {reason}")),
                _ => {}
            }
            if start.elapsed() >= EDGE_DELETE_TIMEOUT {
                return Err(format!("edge {edge} did not answer the delete"));
            }
        }
    }
}

/// Publishes `Event::RecordingStored` on the tenant's events topic.
pub fn announce_stored(
    outbox: &Outbox,
    tenant: &str,
    edge: &str,
    recording_id: &str,
    target: &str,
) {
    if target == crate::relay::STAGING {
        return; // a transient copy, not announced
    }
    if let Ok(topic) = Topic::events(tenant) {
        let body = EventBody::RecordingStored {
            recording_id: recording_id.to_owned(),
            target: target.to_owned(),
        };
        outbox.send(&topic, &Event::new(now_ms(), edge.to_owned(), body));
    }
}

fn has_manifest(e: &RecordingEntry, target: &str) -> bool {
    e.manifest_locations.iter().any(|l| l.target == target)
}

/// Copies one object between operators, verified: published at `to_path` only if its bytes hash
/// to `sha`.
async fn copy_object(
    src: &opendal::Operator,
    from_path: &str,
    dst: &crate::targets::Target,
    to_path: &str,
    size: u64,
    sha: &Sha256,
    p: &mut Progress,
) -> Result<(), String> {
    let reader = src.reader(from_path).await.map_err(|e| e.to_string())?;
    let mut w = AtomicWriter::open(dst, to_path, size)
        .await
        .map_err(|e| e.to_string())?;
    let mut off = 0u64;
    while off < size {
        let end = size.min(off + COPY_CHUNK);
        let buf = match reader.read(off..end).await {
            Ok(b) if !b.is_empty() => b.to_vec(),
            Ok(_) => {
                w.abort().await;
                return Err(format!(
                    "source ends at {off} bytes, the catalog says {size}"
                ));
            }
            Err(e) => {
                w.abort().await;
                return Err(e.to_string());
            }
        };
        let n = buf.len() as u64;
        if let Err(e) = w.write(buf).await {
            w.abort().await;
            return Err(e.to_string());
        }
        off += n;
        p.add(n);
    }
    w.commit(sha).await.map_err(|e| e.to_string())
}

/// A running job's record, written back at most every [`PROGRESS_EVERY`].
struct Progress {
    store: Arc<Store>,
    rec: JobRecord,
    last: tokio::time::Instant,
}

impl Progress {
    fn add(&mut self, n: u64) {
        let v = self.rec.progress_bytes.saturating_add(n);
        self.set(v);
    }

    fn set(&mut self, v: u64) {
        self.rec.progress_bytes = v;
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.last = tokio::time::Instant::now();
        self.rec.updated_ms = now_ms();
        if let Err(e) = self.store.put_job(&self.rec) {
            tracing::warn!(job = self.rec.id, error = %e, "progress not stored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PartyEntry;

    #[test]
    fn rfc3339_times_parse() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ns("2024-02-29T12:34:56Z"),
            Some(1_709_210_096_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-02-29T13:34:56.5+01:00"),
            Some(1_709_210_096_500_000_000)
        );
        for bad in [
            "",
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "2024-02-29T12:34:56",
            "x024-02-29T12:34:56Z",
        ] {
            assert_eq!(parse_rfc3339_ns(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn queries_match_by_prefix_call_id_and_time() {
        let party = |n: &str| PartyEntry {
            number: n.into(),
            display_name: None,
            uri: format!("sip:{n}@x"),
        };
        let mut m = tapfleet_schemas::Manifest::new(
            "20240229T123456Z-deadbeef00010203".into(),
            tapfleet_schemas::RecordingKind::Call,
        );
        m.start_ns = 1_709_210_096_000_000_000;
        m.call_id = "abc@host".into();
        let mut e = RecordingEntry::from_manifest(&m, "t", "e1");
        e.caller = party("+4930123");
        e.callee = party("+4940999");
        let mut req = JobRequest::new(JobKind::Fetch, None);
        req.caller = Some("+4930".into());
        req.since = Some("2024-02-29T12:00:00Z".into());
        req.until = Some("2024-02-29T13:00:00Z".into());
        assert!(Query::of(&req).expect("query").matches(&e));
        req.call_id = Some("abc@host".into());
        assert!(Query::of(&req).expect("query").matches(&e));
        req.callee = Some("+4930".into());
        assert!(!Query::of(&req).expect("query").matches(&e));
        req.callee = None;
        req.until = Some("2024-02-29T12:34:56Z".into());
        assert!(
            !Query::of(&req).expect("query").matches(&e),
            "until is exclusive"
        );
        req.since = Some("yesterday".into());
        assert!(matches!(Query::of(&req), Err(JobError::BadRequest(_))));
    }
}
