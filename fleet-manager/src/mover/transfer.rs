//! The receive side of one file transfer as a pure state machine: no IO, no clock.
//!
//! [`decide_offer`] answers a [`TransferOffer`] from what the catalog knows; [`Transfer`] (the
//! shared `tapfleet_edge::transfer::Receiver`) follows the chunks of an accepted offer. The caller
//! writes exactly the bytes a decision tells it to, publishes the acks it names, and on
//! [`ChunkDecision::Write`] with `done` closes the writer and compares digests.
//!
//! Chunk rules (offsets are byte positions in the file, `next` the first byte not yet received):
//! - `offset == next`: append, hash, advance, ack the new `next` (every chunk is acked: acks are
//!   small, and a sender whose window is smaller than any coalescing step would stall);
//! - `offset < next < offset + len` (overlap): append only the new tail;
//! - `offset + len <= next` (duplicate) or `offset > next` (gap): write nothing, re-ack `next` so
//!   the sender rewinds;
//! - bytes beyond the offered size: the transfer fails.

use tapfleet_schemas::{Sha256, TransferOffer};

/// One file being received: the transfer protocol's receiver, shared with the edge's downloads.
pub use tapfleet_edge::transfer::{ChunkDecision, Completion, Receiver as Transfer};

/// How [`decide_offer`] answers an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferDecision {
    /// The file is already stored with this digest: answer `Stored` at once.
    AlreadyStored,
    /// A transfer of this file is open: accept it again from where it is.
    Resume { transfer_id: u64, offset: u64 },
    /// Open a new transfer.
    Start,
    /// Refuse the offer.
    Refuse { reason: String },
}

/// What the catalog says about the offered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownFile {
    /// No manifest of that recording was received.
    UnknownRecording,
    /// The recording's manifest does not list that file.
    UnknownFile,
    /// The manifest lists it with this size and digest; `stored` when the target has a copy.
    Listed {
        size: u64,
        sha256: Sha256,
        stored: bool,
    },
}

/// Decides an offer. `open` is the transfer already open for the same edge, recording and file.
pub fn decide_offer(
    offer: &TransferOffer,
    known: &KnownFile,
    open: Option<(u64, &Transfer)>,
) -> OfferDecision {
    match known {
        KnownFile::UnknownRecording => OfferDecision::Refuse {
            reason: format!(
                "recording {} is not in the catalog (send its manifest first)",
                offer.recording_id
            ),
        },
        KnownFile::UnknownFile => OfferDecision::Refuse {
            reason: format!("file {:?} is not in the recording's manifest", offer.file),
        },
        KnownFile::Listed { size, sha256, .. }
            if *size != offer.size || *sha256 != offer.sha256 =>
        {
            OfferDecision::Refuse {
                reason: "offered size or sha256 differs from the manifest".into(),
            }
        }
        KnownFile::Listed { stored: true, .. } => OfferDecision::AlreadyStored,
        KnownFile::Listed { .. } => match open {
            Some((transfer_id, t)) if t.size() == offer.size && t.expected() == offer.sha256 => {
                OfferDecision::Resume {
                    transfer_id,
                    offset: t.next_offset(),
                }
            }
            _ => OfferDecision::Start,
        },
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

    /// Feeds chunks to a transfer and writes what it says into a buffer, like the mover does.
    fn run(data: &[u8], chunks: &[(u64, usize)]) -> (Vec<u8>, Option<Completion>, Vec<u64>) {
        let mut t = Transfer::new(data.len() as u64, sha(data));
        let mut out = Vec::new();
        let mut acks = Vec::new();
        let mut done = None;
        for &(off, len) in chunks {
            let start = usize::try_from(off).expect("small");
            let end = (start + len).min(data.len());
            let chunk = data.get(start..end).unwrap_or(&[]);
            match t.on_chunk(off, chunk) {
                ChunkDecision::Write {
                    skip,
                    next_offset,
                    done: d,
                } => {
                    out.extend_from_slice(&chunk[skip..]);
                    acks.push(next_offset);
                    if d.is_some() {
                        done = d;
                    }
                }
                ChunkDecision::ReAck { next_offset, .. } => acks.push(next_offset),
                ChunkDecision::Overrun { .. } => panic!("overrun"),
            }
        }
        (out, done, acks)
    }

    #[test]
    fn in_order_chunks_complete_with_matching_digest() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let (out, done, acks) = run(&data, &[(0, 400), (400, 400), (800, 200)]);
        assert_eq!(out, data);
        assert_eq!(acks, vec![400, 800, 1000]);
        assert_eq!(
            done,
            Some(Completion {
                sha256: sha(&data),
                matches: true
            })
        );
    }

    #[test]
    fn duplicates_and_gaps_are_reacked_and_overlaps_trimmed() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 13) as u8).collect();
        let (out, done, acks) = run(
            &data,
            &[
                (0, 300),
                (600, 300),
                (0, 300),
                (300, 300),
                (500, 300),
                (800, 200),
            ],
        );
        assert_eq!(out, data);
        assert_eq!(acks, vec![300, 300, 300, 600, 800, 1000]);
        assert!(done.is_some_and(|d| d.matches));
    }

    #[test]
    fn wrong_bytes_are_detected_and_overruns_refused() {
        let data = b"hello world".to_vec();
        let mut t = Transfer::new(11, sha(b"hello there"));
        match t.on_chunk(0, &data) {
            ChunkDecision::Write { done: Some(c), .. } => assert!(!c.matches),
            d => panic!("{d:?}"),
        }
        let mut t = Transfer::new(4, sha(b"abcd"));
        assert!(matches!(
            t.on_chunk(2, b"cdef"),
            ChunkDecision::ReAck { gap: true, .. }
        ));
        assert!(matches!(
            t.on_chunk(0, b"abcdef"),
            ChunkDecision::Overrun { .. }
        ));
        assert!(matches!(
            t.on_chunk(u64::MAX, b"ab"),
            ChunkDecision::Overrun { .. }
        ));
        assert!(Transfer::new(0, sha(b"")).completion().matches);
    }

    #[test]
    fn offers_are_decided_from_the_catalog() {
        let offer = TransferOffer {
            recording_id: "r".into(),
            file: "call.pcap".into(),
            size: 4,
            sha256: sha(b"abcd"),
        };
        let listed = |stored| KnownFile::Listed {
            size: 4,
            sha256: sha(b"abcd"),
            stored,
        };
        assert!(matches!(
            decide_offer(&offer, &KnownFile::UnknownRecording, None),
            OfferDecision::Refuse { .. }
        ));
        assert!(matches!(
            decide_offer(&offer, &KnownFile::UnknownFile, None),
            OfferDecision::Refuse { .. }
        ));
        assert_eq!(
            decide_offer(&offer, &listed(true), None),
            OfferDecision::AlreadyStored
        );
        assert_eq!(
            decide_offer(&offer, &listed(false), None),
            OfferDecision::Start
        );
        let mut t = Transfer::new(4, sha(b"abcd"));
        let _ = t.on_chunk(0, b"ab");
        assert_eq!(
            decide_offer(&offer, &listed(false), Some((9, &t))),
            OfferDecision::Resume {
                transfer_id: 9,
                offset: 2
            }
        );
        let other = KnownFile::Listed {
            size: 5,
            sha256: sha(b"abcd"),
            stored: false,
        };
        assert!(matches!(
            decide_offer(&offer, &other, None),
            OfferDecision::Refuse { .. }
        ));
    }

    proptest! {
        /// Whatever order, duplication and chunking the sender uses, a sender that rewinds to
        /// each ack delivers exactly the file, and the acks never go backwards.
        #[test]
        fn any_delivery_order_reassembles_the_file(
            data in proptest::collection::vec(any::<u8>(), 1..4000),
            ops in proptest::collection::vec((0u64..4000, 1usize..700), 0..40),
        ) {
            let mut t = Transfer::new(data.len() as u64, sha(&data));
            let mut out = Vec::new();
            let mut last_ack = 0;
            let feed = |t: &mut Transfer, out: &mut Vec<u8>, off: u64, len: usize| -> u64 {
                let start = usize::try_from(off).unwrap_or(usize::MAX).min(data.len());
                let end = (start + len).min(data.len());
                let chunk = &data[start..end];
                match t.on_chunk(start as u64, chunk) {
                    ChunkDecision::Write { skip, next_offset, .. } => {
                        out.extend_from_slice(&chunk[skip..]);
                        next_offset
                    }
                    ChunkDecision::ReAck { next_offset, .. } => next_offset,
                    ChunkDecision::Overrun { reason } => panic!("{reason}"),
                }
            };
            for (off, len) in ops {
                let ack = feed(&mut t, &mut out, off, len);
                prop_assert!(ack >= last_ack);
                last_ack = ack;
            }
            // Then the sender rewinds to the ack and sends the rest in order.
            while !t.is_complete() {
                let next = t.next_offset();
                let ack = feed(&mut t, &mut out, next, 500);
                prop_assert!(ack >= last_ack);
                last_ack = ack;
            }
            prop_assert_eq!(&out, &data);
            prop_assert!(t.completion().matches);
        }
    }
}
