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

//!
//! Room: simultaneous downloads must not together overfill the cache, so each accepted offer
//! reserves its file's full size in [`Reservations`] (in memory) until the file is stored
//! (indexed), failed, replaced by a new offer of the same file, or abandoned (no chunk for
//! [`ABANDON_MS`]). [`Reservations::decide`] counts every reserved file at its full size instead
//! of its partial file's current size, so a second offer that would not fit beside the first is
//! refused. After a restart there are no reservations: partial files count by their size on disk
//! (the cache's usage), and the manager offers them again (resume).

use std::collections::HashMap;

use tapfleet_schemas::Sha256;

pub use crate::transfer::{ChunkDecision, Completion, Receiver};

/// A reserved download without a chunk for this long is abandoned (its reservation released,
/// its partial file kept and counted by its size on disk).
pub const ABANDON_MS: i64 = 60_000;

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

/// A download accepted and not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reserved {
    transfer_id: u64,
    size: u64,
    last_ms: i64,
}

/// The room the cache has for a download offer, as measured by the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub capacity_bytes: u64,
    /// Everything the cache holds on disk (partial files included).
    pub used_bytes: u64,
    /// The size on disk of the reserved downloads' partial files, measured *before* `used_bytes`
    /// (a partial file growing in between is then counted a little high, never low).
    pub reserved_on_disk: u64,
}

/// The downloads accepted and not finished, by (recording, file), each reserving its full size
/// (pure: times are passed in).
#[derive(Debug, Clone, Default)]
pub struct Reservations {
    by_file: HashMap<(String, String), Reserved>,
}

impl Reservations {
    /// Decides an offer with the room the reservations leave, and reserves the file's size when
    /// it is accepted. A reservation of the same file (an earlier offer) is replaced: its
    /// partial file then counts by its size on disk, as `have` says (measure `room` after
    /// [`Reservations::release`] of that file).
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &mut self,
        transfer_id: u64,
        recording_id: &str,
        file: &str,
        size: u64,
        sha256: Sha256,
        have: HeldFile,
        file_name_ok: bool,
        room: Room,
        now_ms: i64,
    ) -> OfferDecision {
        self.release(recording_id, file);
        let d = decide_offer(size, sha256, have, file_name_ok, self.free_bytes(room));
        if matches!(d, OfferDecision::Accept { .. }) {
            self.by_file.insert(
                (recording_id.to_owned(), file.to_owned()),
                Reserved {
                    transfer_id,
                    size,
                    last_ms: now_ms,
                },
            );
        }
        d
    }

    /// Room left: capacity minus what the cache holds on disk, each reserved download counted
    /// at its full size instead of its partial file's size on disk.
    pub fn free_bytes(&self, room: Room) -> u64 {
        let used = room
            .used_bytes
            .saturating_sub(room.reserved_on_disk)
            .saturating_add(self.reserved_bytes());
        room.capacity_bytes.saturating_sub(used)
    }

    /// The bytes reserved (full sizes).
    pub fn reserved_bytes(&self) -> u64 {
        self.by_file
            .values()
            .fold(0u64, |a, r| a.saturating_add(r.size))
    }

    /// The reserved files (to measure their partial files).
    pub fn files(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_file.keys().map(|(r, f)| (r.as_str(), f.as_str()))
    }

    pub fn len(&self) -> usize {
        self.by_file.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_file.is_empty()
    }

    /// A chunk of `transfer_id` arrived: it is alive.
    pub fn touch(&mut self, transfer_id: u64, now_ms: i64) {
        if let Some(r) = self
            .by_file
            .values_mut()
            .find(|r| r.transfer_id == transfer_id)
        {
            r.last_ms = now_ms;
        }
    }

    /// The file is stored (indexed) or its offer replaced: the reservation goes. Returns the
    /// transfer it was reserved for.
    pub fn release(&mut self, recording_id: &str, file: &str) -> Option<u64> {
        self.by_file
            .remove(&(recording_id.to_owned(), file.to_owned()))
            .map(|r| r.transfer_id)
    }

    /// The transfer failed: its reservation goes (if it is still the file's transfer).
    pub fn release_transfer(&mut self, transfer_id: u64) -> bool {
        let before = self.by_file.len();
        self.by_file.retain(|_, r| r.transfer_id != transfer_id);
        self.by_file.len() != before
    }

    /// Releases the reservations without a chunk for `idle_ms`; returns their transfer ids (the
    /// service stops those transfers: a later chunk is refused and the manager offers again).
    pub fn expire(&mut self, now_ms: i64, idle_ms: i64) -> Vec<u64> {
        let mut gone = Vec::new();
        self.by_file.retain(|_, r| {
            let keep = now_ms.saturating_sub(r.last_ms) < idle_ms;
            if !keep {
                gone.push(r.transfer_id);
            }
            keep
        });
        gone.sort_unstable();
        gone
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

    fn room(capacity_bytes: u64, used_bytes: u64, reserved_on_disk: u64) -> Room {
        Room {
            capacity_bytes,
            used_bytes,
            reserved_on_disk,
        }
    }

    #[test]
    fn a_second_offer_that_does_not_fit_beside_the_first_is_refused() {
        let d = sha(b"x");
        let mut r = Reservations::default();
        // 100 bytes of room: a 60-byte download is accepted and reserves its size.
        let first = r.decide(
            1,
            "r",
            "a",
            60,
            d,
            HeldFile::Nothing,
            true,
            room(100, 0, 0),
            0,
        );
        assert_eq!(first, OfferDecision::Accept { offset: 0 });
        // 10 bytes of it are on disk (in the cache's usage): still 60 reserved in all.
        assert_eq!(r.free_bytes(room(100, 10, 10)), 40);
        let second = r.decide(
            2,
            "r",
            "b",
            50,
            d,
            HeldFile::Nothing,
            true,
            room(100, 10, 10),
            1,
        );
        assert!(
            matches!(&second, OfferDecision::Refuse { reason } if reason.contains("50 bytes do not fit the cache (40 bytes free)")),
            "{second:?}"
        );
        assert_eq!(r.len(), 1, "a refused offer reserves nothing");
        assert_eq!(
            r.decide(
                3,
                "r",
                "c",
                40,
                d,
                HeldFile::Nothing,
                true,
                room(100, 10, 10),
                1
            ),
            OfferDecision::Accept { offset: 0 }
        );
        assert_eq!(r.free_bytes(room(100, 10, 10)), 0);
        // Stored: `a` is indexed (60 in the cache's usage) and released.
        assert_eq!(r.release("r", "a"), Some(1));
        assert_eq!(r.free_bytes(room(100, 60, 0)), 0);
        // A failed transfer releases; a re-offer of the same file replaces its reservation,
        // its partial file then counting by its size on disk.
        assert!(r.release_transfer(3));
        assert!(!r.release_transfer(3));
        assert_eq!(
            r.decide(
                4,
                "r",
                "a2",
                30,
                d,
                HeldFile::Nothing,
                true,
                room(100, 60, 0),
                5
            ),
            OfferDecision::Accept { offset: 0 }
        );
        assert_eq!(r.release("r", "a2"), Some(4));
        assert_eq!(
            r.decide(
                5,
                "r",
                "a2",
                30,
                d,
                HeldFile::Partial(20),
                true,
                room(100, 80, 0),
                6
            ),
            OfferDecision::Accept { offset: 20 }
        );
        assert_eq!(r.reserved_bytes(), 30);
        // Abandoned: no chunk for ABANDON_MS.
        r.touch(5, 1000);
        assert!(r.expire(1000 + ABANDON_MS - 1, ABANDON_MS).is_empty());
        assert_eq!(r.expire(1000 + ABANDON_MS, ABANDON_MS), vec![5]);
        assert!(r.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Offer { file: u8, size: u64 },
        Write { pick: usize, bytes: u64 },
        Stored { pick: usize },
        Failed { pick: usize, delete: bool },
        Idle,
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..5, 0u64..120).prop_map(|(file, size)| Op::Offer { file, size }),
            4 => (any::<usize>(), 0u64..60).prop_map(|(pick, bytes)| Op::Write { pick, bytes }),
            2 => any::<usize>().prop_map(|pick| Op::Stored { pick }),
            1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, delete)| Op::Failed { pick, delete }),
            1 => Just(Op::Idle),
            1 => Just(Op::Restart),
        ]
    }

    proptest! {
        /// The reservations against a model of the cache's disk, with downloads accepted,
        /// written, stored, failed, abandoned and the edge restarting (reservations lost,
        /// partial files kept): what the cache holds plus what the open downloads will still
        /// write never exceeds the capacity, and an offer is refused exactly when the bytes it
        /// lacks do not fit beside everything held and reserved.
        #[test]
        fn accepted_downloads_never_overfill_the_cache(
            capacity in 0u64..400,
            held0 in 0u64..400,
            ops in proptest::collection::vec(op(), 0..80),
        ) {
            let d = sha(b"x");
            let mut held = held0.min(capacity);
            let mut partial: HashMap<u8, u64> = HashMap::new();
            // Open downloads (the service's download task): transfer id -> (file, size).
            let mut open: Vec<(u64, u8, u64)> = Vec::new();
            let mut r = Reservations::default();
            let mut now = 0i64;
            let name = |f: u8| format!("f{f}");
            for (tid, o) in (1u64..).zip(ops) {
                now += 1000;
                match o {
                    Op::Offer { file, size } => {
                        // The service: a new offer replaces the file's open download.
                        if let Some(old) = r.release("r", &name(file)) {
                            open.retain(|(t, _, _)| *t != old);
                        }
                        open.retain(|(_, f, _)| *f != file);
                        let reserved_on_disk: u64 = r
                            .files()
                            .filter_map(|(_, f)| f.strip_prefix('f')?.parse::<u8>().ok())
                            .map(|f| partial.get(&f).copied().unwrap_or(0))
                            .sum();
                        let used = held + partial.values().sum::<u64>();
                        let have = partial.get(&file).map_or(HeldFile::Nothing, |n| HeldFile::Partial(*n));
                        // What fits, by the model: everything else committed stays.
                        let others: u64 = held
                            + partial.iter().filter(|(f, _)| **f != file && !open.iter().any(|(_, o, _)| o == *f)).map(|(_, n)| n).sum::<u64>()
                            + open.iter().map(|(_, _, s)| s).sum::<u64>()
                            + partial.get(&file).copied().unwrap_or(0);
                        let lacks = match have { HeldFile::Partial(n) if n <= size => size - n, _ => size };
                        let fits = match have {
                            HeldFile::Partial(n) => size.saturating_sub(n) <= capacity.saturating_sub(others),
                            _ => size <= capacity.saturating_sub(others),
                        };
                        let dec = r.decide(tid, "r", &name(file), size, d, have, true,
                            Room { capacity_bytes: capacity, used_bytes: used, reserved_on_disk }, now);
                        prop_assert_eq!(matches!(dec, OfferDecision::Accept { .. }), fits, "{:?} lacks {}", dec, lacks);
                        if let OfferDecision::Accept { offset } = dec {
                            partial.insert(file, offset);
                            open.push((tid, file, size));
                        }
                    }
                    Op::Write { pick, bytes } => {
                        if let Some((t, f, size)) = open.get(pick % open.len().max(1)).copied() {
                            let p = partial.entry(f).or_insert(0);
                            *p = (*p + bytes).min(size);
                            r.touch(t, now);
                        }
                    }
                    Op::Stored { pick } => {
                        if let Some((t, f, size)) = open.get(pick % open.len().max(1)).copied() {
                            // The last byte, verified, renamed into place and indexed.
                            partial.remove(&f);
                            held += size;
                            open.retain(|(o, _, _)| *o != t);
                            prop_assert_eq!(r.release("r", &name(f)), Some(t));
                        }
                    }
                    Op::Failed { pick, delete } => {
                        if let Some((t, f, _)) = open.get(pick % open.len().max(1)).copied() {
                            if delete {
                                partial.remove(&f);
                            }
                            open.retain(|(o, _, _)| *o != t);
                            prop_assert!(r.release_transfer(t));
                        }
                    }
                    Op::Idle => {
                        now += ABANDON_MS;
                        let gone = r.expire(now, ABANDON_MS);
                        let mut was: Vec<u64> = open.iter().map(|(t, _, _)| *t).collect();
                        was.sort_unstable();
                        prop_assert_eq!(&gone, &was);
                        open.clear();
                    }
                    Op::Restart => {
                        r = Reservations::default();
                        open.clear();
                    }
                }
                // Held + partial files nobody writes + the full size of every open download.
                let committed = held
                    + partial.iter().filter(|(f, _)| !open.iter().any(|(_, o, _)| o == *f)).map(|(_, n)| n).sum::<u64>()
                    + open.iter().map(|(_, _, s)| s).sum::<u64>();
                prop_assert!(committed <= capacity.max(held0.min(capacity)), "{} > {}", committed, capacity);
                prop_assert_eq!(r.len(), open.len());
            }
        }
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
