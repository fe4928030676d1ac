//! [`TransferChunk`]: offset-addressed file data of an accepted transfer.

use serde::{Deserialize, Serialize};

use crate::codec::{SCHEMA_VERSION, message};

/// Largest `data` a chunk may carry. With the envelope it fits the broker's packet limit.
pub const MAX_CHUNK_DATA: usize = 1024 * 1024;

/// edge -> manager on `upload`, manager -> edge on `download`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferChunk {
    pub v: u16,
    pub transfer_id: u64,
    /// Byte offset of `data` in the file.
    pub offset: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}
message!(TransferChunk, "TransferChunk", MAX_CHUNK_DATA + 1024);

impl TransferChunk {
    pub fn new(transfer_id: u64, offset: u64, data: Vec<u8>) -> Self {
        TransferChunk {
            v: SCHEMA_VERSION,
            transfer_id,
            offset,
            data,
        }
    }
}
