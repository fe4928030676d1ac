//! The receiving side of a download (manager -> edge, into the edge's local storage for
//! recordings it holds for others), pure: no IO and no clock. The service's download task reads
//! and writes the files and publishes the replies this module names.
//!
//! Protocol (the mirror of an upload, see `tapfleet_schemas::JobAction::Download`): the manager
//! offers a file (`transfer_id`, size, SHA-256); [`decide_offer`] answers from what the edge
//! already has: `DownloadStored` at once (already held with that digest), or
//! `DownloadAccept{offset}` where `offset` is the length of the partial file an interrupted
//! download of the same file left (the receiver is rebuilt over those bytes with
//! [`Receiver::resume`]), else 0. Chunks then arrive on the edge's `download` topic and
//! [`Receiver::on_chunk`] says what to write and which `next_offset` to acknowledge
//! (`DownloadChunk`): in order -> append; overlap -> append the new tail; duplicate or gap ->
//! write nothing, re-ack so the manager rewinds; past the offered size -> fail. At the last byte
//! the digest decides: the service syncs and renames the file into place, indexes it and
//! answers `DownloadStored`, or deletes it and answers `DownloadFailed`.

use tapfleet_schemas::Sha256;

pub use crate::transfer::{ChunkDecision, Completion, Receiver};

/// What the edge has of an offered file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldFile {
    /// Nothing.
    Nothing,
    /// A partial file of an interrupted download of the same (recording, file, SHA-256) with
    /// this many bytes.
    Partial(u64),
    /// The file is held (in the index) with this digest.
    Held(Sha256),
}

/// How the edge answers a download offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferDecision {
    /// Already held with the offered digest: answer `DownloadStored`.
    AlreadyHeld,
    /// Accept from `offset` (the partial bytes kept, or 0).
    Accept { offset: u64 },
    /// Refuse (the reason goes into `DownloadFailed`).
    Refuse { reason: String },
}

/// Decides a download offer of a `size`-byte file hashing to `sha256`. `file_name_ok` is the
/// service's check of the file name as one path component; `free_bytes` the room left (capacity
/// minus everything the cache holds, partial downloads included).
pub fn decide_offer(
    size: u64,
    sha256: Sha256,
    have: HeldFile,
    file_name_ok: bool,
    free_bytes: u64,
) -> OfferDecision {
    if !file_name_ok {
        return OfferDecision::Refuse {
            reason: "file name is not a safe single path component".into(),
        };
    }
    match have {
        HeldFile::Held(d) if d == sha256 => OfferDecision::AlreadyHeld,
        HeldFile::Held(_) => OfferDecision::Refuse {
            reason: "a different file of that name is already held".into(),
        },
        // The partial bytes are on disk already (and counted as used): only the rest needs room.
        HeldFile::Partial(n) if size.saturating_sub(n) > free_bytes => OfferDecision::Refuse {
            reason: format!(
                "{} more bytes do not fit the cache ({free_bytes} bytes free)",
                size.saturating_sub(n)
            ),
        },
        HeldFile::Nothing if size > free_bytes => OfferDecision::Refuse {
            reason: format!("{size} bytes do not fit the cache ({free_bytes} bytes free)"),
        },
        HeldFile::Partial(n) if n <= size => OfferDecision::Accept { offset: n },
        _ => OfferDecision::Accept { offset: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::Digest;

    fn sha(data: &[u8]) -> Sha256 {
        Sha256(sha2::Sha256::digest(data).into())
    }

    #[test]
    fn offers_are_decided_from_what_the_edge_has() {
        let d = sha(b"abcd");
        assert_eq!(
            decide_offer(4, d, HeldFile::Held(d), true, 0),
            OfferDecision::AlreadyHeld
        );
        assert!(matches!(
            decide_offer(4, d, HeldFile::Held(sha(b"x")), true, 100),
            OfferDecision::Refuse { .. }
        ));
        assert_eq!(
            decide_offer(4, d, HeldFile::Partial(3), true, 100),
            OfferDecision::Accept { offset: 3 }
        );
        assert_eq!(
            decide_offer(4, d, HeldFile::Partial(9), true, 100),
            OfferDecision::Accept { offset: 0 },
            "a partial file longer than the offer is started over"
        );
        assert!(matches!(
            decide_offer(4, d, HeldFile::Nothing, true, 3),
            OfferDecision::Refuse { reason } if reason.contains("fit")
        ));
        assert_eq!(
            decide_offer(4, d, HeldFile::Partial(3), true, 1),
            OfferDecision::Accept { offset: 3 },
            "a resume needs room only for the bytes it lacks"
        );
        assert!(matches!(
            decide_offer(4, d, HeldFile::Partial(1), true, 2),
            OfferDecision::Refuse { reason } if reason.contains("3 more bytes")
        ));
        assert!(matches!(
            decide_offer(4, d, HeldFile::Nothing, false, 100),
            OfferDecision::Refuse { .. }
        ));
    }

    #[test]
    fn chunks_overlaps_gaps_and_overruns() {
        let data = b"hello world".to_vec();
        let mut r = Receiver::new(11, sha(&data));
        assert_eq!(
            r.on_chunk(6, b"world"),
            ChunkDecision::ReAck {
                next_offset: 0,
                gap: true
            }
        );
        assert!(matches!(
            r.on_chunk(0, b"hello "),
            ChunkDecision::Write {
                skip: 0,
                next_offset: 6,
                done: None
            }
        ));
        assert!(matches!(
            r.on_chunk(4, b"o wor"),
            ChunkDecision::Write {
                skip: 2,
                next_offset: 9,
                done: None
            }
        ));
        assert!(matches!(
            r.on_chunk(9, b"ld!"),
            ChunkDecision::Overrun { .. }
        ));
        match r.on_chunk(9, b"ld") {
            ChunkDecision::Write { done: Some(c), .. } => assert!(c.matches),
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            r.on_chunk(u64::MAX, b"ab"),
            ChunkDecision::Overrun { .. }
        ));
        let mut bad = Receiver::new(2, sha(b"ab"));
        match bad.on_chunk(0, b"xy") {
            ChunkDecision::Write { done: Some(c), .. } => assert!(!c.matches),
            d => panic!("{d:?}"),
        }
        assert!(Receiver::new(0, sha(b"")).completion().matches);
    }

    proptest! {
        /// The manager's go-back-N sender (`crate::transfer::Sender`, the same one the manager's
        /// relay uses) against this receiver over a link losing chunks and acks, with the edge
        /// restarting at random (its receiver rebuilt over the bytes on disk, the sender
        /// re-accepted at that offset as after a reconnect): every run completes, the file on
        /// "disk" is exactly the source, the digest matches, acks never go backwards within one
        /// receiver.
        #[test]
        fn downloads_complete_over_loss_and_restarts(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            chunk in 1u32..600,
            window_chunks in 1u64..6,
            loss_percent in 0u64..50,
            restart_percent in 0u64..5,
            seed in any::<u64>(),
        ) {
            use crate::transfer::{Sender, SenderConfig};
            let cfg = SenderConfig {
                chunk_bytes: chunk,
                window_bytes: u64::from(chunk) * window_chunks,
                stall_timeout_ns: 100,
            };
            let size = data.len() as u64;
            let expected = sha(&data);
            let mut rng = seed | 1;
            let mut roll = move |pct: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % 100 < pct
            };
            let mut disk: Vec<u8> = Vec::new();
            let mut now = 0i64;
            let mut rx = Receiver::new(size, expected);
            let mut tx = Sender::new(cfg, size, 0, now);
            let mut last_ack = 0u64;
            let mut done: Option<Completion> = if size == 0 { Some(rx.completion()) } else { None };
            let mut steps = 0u64;
            while done.is_none() {
                steps += 1;
                prop_assert!(steps < 2_000_000, "no progress");
                if roll(restart_percent) {
                    // The edge restarts: what it wrote survives; the manager re-offers.
                    rx = Receiver::resume(size, expected, &disk);
                    let offset = match decide_offer(size, expected, HeldFile::Partial(disk.len() as u64), true, u64::MAX) {
                        OfferDecision::Accept { offset } => offset,
                        other => { prop_assert!(false, "{other:?}"); 0 }
                    };
                    prop_assert_eq!(offset, disk.len() as u64);
                    tx = Sender::new(cfg, size, offset, now);
                    last_ack = offset;
                    continue;
                }
                match tx.poll_chunk(now) {
                    Some(r) => {
                        if roll(loss_percent) {
                            continue;
                        }
                        let start = usize::try_from(r.offset).unwrap_or(usize::MAX);
                        let end = start + r.len as usize;
                        let bytes = &data[start..end];
                        match rx.on_chunk(r.offset, bytes) {
                            ChunkDecision::Write { skip, next_offset, done: d } => {
                                disk.extend_from_slice(&bytes[skip..]);
                                prop_assert!(next_offset >= last_ack);
                                last_ack = next_offset;
                                if !roll(loss_percent) {
                                    tx.on_ack(next_offset, now);
                                }
                                done = d;
                            }
                            ChunkDecision::ReAck { next_offset, .. } => {
                                prop_assert!(next_offset >= last_ack);
                                if !roll(loss_percent) {
                                    tx.on_ack(next_offset, now);
                                }
                            }
                            ChunkDecision::Overrun { reason } => prop_assert!(false, "{}", reason),
                        }
                    }
                    None => now += 50,
                }
            }
            prop_assert_eq!(&disk, &data);
            prop_assert!(done.is_some_and(|c| c.matches));
        }
    }
}
