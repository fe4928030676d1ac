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

impl TransferChunk {
    /// The encoding of a chunk of `data_len` bytes up to its data: the CBOR of
    /// `TransferChunk::new(transfer_id, offset, data)` is this prefix followed by `data`. Lets a
    /// sender read file bytes straight into the payload instead of copying them in.
    pub fn encoded_prefix(transfer_id: u64, offset: u64, data_len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + data_len);
        // `data` is the last field, so an empty chunk ends with its (empty) byte string head.
        if ciborium::into_writer(
            &TransferChunk::new(transfer_id, offset, Vec::new()),
            &mut out,
        )
        .is_err()
            || out.pop() != Some(0x40)
        {
            // Writing into a Vec cannot fail, and `data` is always last; keep the general path
            // anyway rather than panic.
            out.clear();
            return out;
        }
        match u32::try_from(data_len) {
            Ok(n) if n < 24 => out.push(0x40 | n as u8),
            Ok(n) if n <= 0xff => out.extend_from_slice(&[0x58, n as u8]),
            Ok(n) if n <= 0xffff => {
                out.push(0x59);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            Ok(n) => {
                out.push(0x5a);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Err(_) => {
                out.push(0x5b);
                out.extend_from_slice(&(data_len as u64).to_be_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_prefix_plus_data_is_the_encoding() {
        for len in [0usize, 1, 23, 24, 255, 256, 65_535, 65_536, MAX_CHUNK_DATA] {
            for (id, off) in [(0u64, 0u64), (7, 1 << 20), (u64::MAX, u64::MAX)] {
                let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let mut got = TransferChunk::encoded_prefix(id, off, len);
                got.extend_from_slice(&data);
                let want = crate::encode(&TransferChunk::new(id, off, data)).expect("encode");
                assert_eq!(got, want, "len {len} id {id} offset {off}");
            }
        }
    }
}
