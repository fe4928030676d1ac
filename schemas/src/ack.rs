//! Acknowledgements from the manager: only these count as "received" (a broker's PUBACK does
//! not). They also carry transfer flow control.

use serde::{Deserialize, Serialize};

use crate::Sha256;
use crate::codec::{SCHEMA_VERSION, message};

/// manager -> edge on the `acks` topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub v: u16,
    pub body: AckBody,
}
message!(Ack, "Ack", 64 * 1024);

impl Ack {
    pub fn new(body: AckBody) -> Self {
        Ack {
            v: SCHEMA_VERSION,
            body,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AckBody {
    /// The manifest is in the catalog.
    Manifest { recording_id: String },
    /// The manifest was refused (it will never be accepted as sent).
    ManifestRefused {
        recording_id: String,
        reason: String,
    },
    /// An offer is accepted: send chunks of `transfer_id` from `offset`.
    Accept {
        recording_id: String,
        file: String,
        transfer_id: u64,
        offset: u64,
    },
    /// Every byte before `next_offset` of the transfer was received.
    Chunk { transfer_id: u64, next_offset: u64 },
    /// The file is stored in `target` at `location` and its SHA-256 matched.
    Stored {
        recording_id: String,
        file: String,
        target: String,
        location: String,
        sha256: Sha256,
    },
    /// The transfer failed; the edge offers the file again later.
    TransferFailed {
        recording_id: String,
        file: String,
        transfer_id: u64,
        reason: String,
    },
}
