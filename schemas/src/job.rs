//! Commands from the manager to an edge ([`Job`]) and what the edge answers ([`JobReply`]),
//! including the offer that opens a file transfer.

use serde::{Deserialize, Serialize};

use crate::Sha256;
use crate::codec::{SCHEMA_VERSION, message};

/// manager -> edge on the `jobs` topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub v: u16,
    /// Unique per manager; replies name it.
    pub job_id: String,
    pub action: JobAction,
}
message!(Job, "Job", 64 * 1024);

impl Job {
    pub fn new(job_id: String, action: JobAction) -> Self {
        Job {
            v: SCHEMA_VERSION,
            job_id,
            action,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobAction {
    /// Upload these files of a recording (all of them when `files` is empty) now.
    Upload {
        recording_id: String,
        files: Vec<String>,
    },
    /// Delete a recording from the edge's cache (only honoured once it is stored elsewhere).
    Delete { recording_id: String },
    /// "I want to send you this file" (manager -> edge, into the edge's local storage for
    /// recordings it holds for others): the mirror of an edge's [`ReplyBody::Offer`]. The edge
    /// answers [`ReplyBody::DownloadAccept`]; the chunks of `transfer_id` then come on the
    /// edge's `download` topic. Addition within v1 (an older edge refuses the job as malformed).
    Download {
        transfer_id: u64,
        recording_id: String,
        file: String,
        size: u64,
        sha256: Sha256,
    },
}

/// edge -> manager on the `replies` topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReply {
    pub v: u16,
    /// The job this answers (none for an offer the edge makes on its own).
    pub job_id: Option<String>,
    pub body: ReplyBody,
}
message!(JobReply, "JobReply", 64 * 1024);

impl JobReply {
    pub fn new(job_id: Option<String>, body: ReplyBody) -> Self {
        JobReply {
            v: SCHEMA_VERSION,
            job_id,
            body,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReplyBody {
    Progress {
        done_bytes: u64,
        total_bytes: u64,
    },
    Done,
    Failed {
        reason: String,
    },
    /// "I want to send you this file": answered by an accept ack.
    Offer(TransferOffer),
    /// Download (manager -> edge): send chunks of `transfer_id` from `offset` (the bytes the
    /// edge already holds of an interrupted download of the same file).
    DownloadAccept {
        transfer_id: u64,
        offset: u64,
    },
    /// Download: every byte before `next_offset` was received.
    DownloadChunk {
        transfer_id: u64,
        next_offset: u64,
    },
    /// Download: the file is in the edge's local storage (synced, renamed into place, in its
    /// index) and its SHA-256 matched.
    DownloadStored {
        transfer_id: u64,
        recording_id: String,
        file: String,
        sha256: Sha256,
    },
    /// Download: refused or failed (the manager offers the file again later).
    DownloadFailed {
        transfer_id: u64,
        recording_id: String,
        file: String,
        reason: String,
    },
}

/// A file the edge offers to upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferOffer {
    pub recording_id: String,
    pub file: String,
    pub size: u64,
    pub sha256: Sha256,
}
