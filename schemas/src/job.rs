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
}

/// A file the edge offers to upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferOffer {
    pub recording_id: String,
    pub file: String,
    pub size: u64,
    pub sha256: Sha256,
}
