//! Both sides of a file transfer, pure. [`Sender`]: which byte range to send next, given the
//! receiver's acknowledgements and the time. [`Receiver`]: what to write and acknowledge for each
//! chunk, and the digest at the end (the manager's mover for uploads, an edge for downloads). No IO
//! and no clock: the services read and write the files, publish chunks and acks, and feed acks
//! and `now` back in.
//!
//! Protocol (see `tapfleet_schemas`): after the manager accepted an offer at `offset`, the edge
//! sends offset-addressed chunks while fewer than `window` bytes are unacknowledged. The manager
//! acknowledges the next offset it expects (`Ack::Chunk`). Only these acks count (a broker's
//! PUBACK does not). When no ack makes progress for `stall_timeout_ns`, the sender goes back to
//! the last acknowledged offset and sends again (go-back-N): a chunk lost anywhere between the
//! edge and the manager is re-sent, a duplicate is harmless (the manager re-acks it).

use sha2::Digest;
use tapfleet_schemas::Sha256;

/// A byte range of the file to publish as one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub offset: u64,
    pub len: u32,
}

/// The largest chunk the schema allows.
pub const MAX_CHUNK_BYTES: u32 = tapfleet_schemas::MAX_CHUNK_DATA as u32;
/// The chunk size under a bandwidth cap: small enough that the cap's burst stays short.
pub const CAPPED_CHUNK_BYTES: u32 = 256 * 1024;

/// Tuning of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderConfig {
    pub chunk_bytes: u32,
    /// Most bytes sent and not yet acknowledged by the manager.
    pub window_bytes: u64,
    pub stall_timeout_ns: i64,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            // The largest chunk the schema allows (with its envelope it stays well under both
            // sides' 2 MiB MQTT packet limit): fewer messages, acks and reads per byte.
            chunk_bytes: MAX_CHUNK_BYTES,
            window_bytes: 8 * 1024 * 1024,
            stall_timeout_ns: 10_000_000_000,
        }
    }
}

/// State of one file being sent.
#[derive(Debug, Clone)]
pub struct Sender {
    cfg: SenderConfig,
    size: u64,
    /// Everything before this offset is acknowledged.
    acked: u64,
    /// The next byte to send.
    next: u64,
    /// When `acked` last moved (or the transfer started, or we rewound).
    progress_ns: i64,
    rewinds: u64,
}

impl Sender {
    /// A transfer of a `size`-byte file, accepted by the manager at `offset`.
    pub fn new(cfg: SenderConfig, size: u64, offset: u64, now_ns: i64) -> Sender {
        let start = offset.min(size);
        Sender {
            cfg: SenderConfig {
                chunk_bytes: cfg.chunk_bytes.max(1),
                window_bytes: cfg.window_bytes.max(u64::from(cfg.chunk_bytes.max(1))),
                ..cfg
            },
            size,
            acked: start,
            next: start,
            progress_ns: now_ns,
            rewinds: 0,
        }
    }

    /// The next chunk to send now, if the window and the file allow one.
    pub fn poll_chunk(&mut self, now_ns: i64) -> Option<ChunkRange> {
        if self.is_done() {
            return None;
        }
        if now_ns.saturating_sub(self.progress_ns) >= self.cfg.stall_timeout_ns
            && self.next > self.acked
        {
            self.next = self.acked;
            self.progress_ns = now_ns;
            self.rewinds += 1;
        }
        if self.next >= self.size || self.next - self.acked >= self.cfg.window_bytes {
            return None;
        }
        let room = (self.cfg.window_bytes - (self.next - self.acked)).min(self.size - self.next);
        let len = room.min(u64::from(self.cfg.chunk_bytes));
        let chunk = ChunkRange {
            offset: self.next,
            len: u32::try_from(len).unwrap_or(self.cfg.chunk_bytes),
        };
        self.next += u64::from(chunk.len);
        Some(chunk)
    }

    /// The manager expects `next_offset` next. Acks never move backwards; an ack beyond what
    /// was sent (a confused peer) is clamped to what was sent.
    pub fn on_ack(&mut self, next_offset: u64, now_ns: i64) {
        let upto = next_offset.min(self.next.max(self.acked));
        if upto > self.acked {
            self.acked = upto;
            self.progress_ns = now_ns;
        }
    }

    /// When the stall timer fires next (the service sleeps until then at most).
    pub fn deadline_ns(&self) -> i64 {
        self.progress_ns.saturating_add(self.cfg.stall_timeout_ns)
    }

    pub fn is_done(&self) -> bool {
        self.acked >= self.size
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// How often the sender went back to the last acknowledged offset.
    pub fn rewinds(&self) -> u64 {
        self.rewinds
    }
}

/// A token bucket for the upload bandwidth cap, pure: `now` is passed in.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    bytes_per_sec: u64,
    /// Bytes that may be sent at once after an idle period.
    burst: u64,
    tokens: f64,
    last_ns: i64,
}

impl RateLimiter {
    /// A limiter of `bytes_per_sec` (at least 1) with a burst of one chunk or a tenth of a
    /// second, whichever is larger.
    pub fn new(bytes_per_sec: u64, chunk_bytes: u32, now_ns: i64) -> RateLimiter {
        let bytes_per_sec = bytes_per_sec.max(1);
        let burst = (bytes_per_sec / 10).max(u64::from(chunk_bytes));
        RateLimiter {
            bytes_per_sec,
            burst,
            tokens: burst as f64,
            last_ns: now_ns,
        }
    }

    /// How long to wait before `bytes` may be sent; takes them from the bucket. Sending after
    /// that wait keeps the average at most `bytes_per_sec`.
    pub fn take(&mut self, bytes: u64, now_ns: i64) -> i64 {
        let elapsed = now_ns.saturating_sub(self.last_ns).max(0) as f64 / 1e9;
        self.last_ns = now_ns.max(self.last_ns);
        self.tokens = (self.tokens + elapsed * self.bytes_per_sec as f64).min(self.burst as f64);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            0
        } else {
            (-self.tokens / self.bytes_per_sec as f64 * 1e9).ceil() as i64
        }
    }
}

// ---- The receiving side (the manager for uploads, an edge for downloads) ----
//
// Chunk rules (offsets are byte positions in the file, `next` the first byte not yet received):
// `offset == next`: append, hash, advance, ack the new `next` (every chunk is acked); an overlap
// (`offset < next < offset + len`): append only the new tail; a duplicate (`offset + len <=
// next`) or a gap (`offset > next`): write nothing, re-ack `next` so the sender rewinds; bytes
// beyond the offered size: the transfer fails.

/// The digest of a finished transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub sha256: Sha256,
    pub matches: bool,
}

/// What to do with one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkDecision {
    /// Append `data[skip..]`, then ack `next_offset`; with `done`, the file is complete: keep it
    /// only if `done.matches`.
    Write {
        skip: usize,
        next_offset: u64,
        done: Option<Completion>,
    },
    /// Write nothing; ack `next_offset` again (a duplicate, or a gap to rewind over).
    ReAck { next_offset: u64, gap: bool },
    /// The chunk runs past the offered size: fail the transfer.
    Overrun { reason: String },
}

/// One file being received.
#[derive(Clone)]
pub struct Receiver {
    size: u64,
    expected: Sha256,
    next: u64,
    hasher: sha2::Sha256,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("size", &self.size)
            .field("next", &self.next)
            .finish()
    }
}

impl Receiver {
    /// A transfer of `size` bytes that must hash to `expected`, from byte 0.
    pub fn new(size: u64, expected: Sha256) -> Receiver {
        Receiver {
            size,
            expected,
            next: 0,
            hasher: sha2::Sha256::new(),
        }
    }

    /// A transfer resumed over `prefix`, the bytes an interrupted transfer left on disk (at most
    /// `size`; longer is cut).
    pub fn resume(size: u64, expected: Sha256, prefix: &[u8]) -> Receiver {
        let mut r = Receiver::new(size, expected);
        let keep = usize::try_from(size).map_or(prefix.len(), |s| s.min(prefix.len()));
        let prefix = prefix.get(..keep).unwrap_or(&[]);
        r.hasher.update(prefix);
        r.next = prefix.len() as u64;
        r
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digest the sender announced.
    pub fn expected(&self) -> Sha256 {
        self.expected
    }

    /// The first byte not yet received.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    pub fn is_complete(&self) -> bool {
        self.next >= self.size
    }

    /// The digest of what was received so far (the file's, once complete).
    pub fn completion(&self) -> Completion {
        let sha256 = Sha256(self.hasher.clone().finalize().into());
        Completion {
            sha256,
            matches: sha256 == self.expected,
        }
    }

    /// Takes one chunk.
    pub fn on_chunk(&mut self, offset: u64, data: &[u8]) -> ChunkDecision {
        let Some(end) = offset.checked_add(data.len() as u64) else {
            return ChunkDecision::Overrun {
                reason: "chunk offset overflows".into(),
            };
        };
        if offset > self.next {
            return ChunkDecision::ReAck {
                next_offset: self.next,
                gap: true,
            };
        }
        if end <= self.next {
            return ChunkDecision::ReAck {
                next_offset: self.next,
                gap: false,
            };
        }
        if end > self.size {
            return ChunkDecision::Overrun {
                reason: format!(
                    "chunk ends at byte {end}, past the file's size {}",
                    self.size
                ),
            };
        }
        let skip = usize::try_from(self.next - offset).unwrap_or(usize::MAX);
        let Some(fresh) = data.get(skip..) else {
            return ChunkDecision::Overrun {
                reason: "chunk offset out of range".into(),
            };
        };
        self.hasher.update(fresh);
        self.next = end;
        ChunkDecision::Write {
            skip,
            next_offset: self.next,
            done: self.is_complete().then(|| self.completion()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(chunk: u32, window: u64) -> SenderConfig {
        SenderConfig {
            chunk_bytes: chunk,
            window_bytes: window,
            stall_timeout_ns: 100,
        }
    }

    #[test]
    fn window_limits_bytes_in_flight() {
        let mut s = Sender::new(cfg(10, 30), 100, 0, 0);
        let sent: Vec<_> = std::iter::from_fn(|| s.poll_chunk(0)).collect();
        assert_eq!(sent.len(), 3);
        s.on_ack(10, 1);
        assert_eq!(
            s.poll_chunk(1),
            Some(ChunkRange {
                offset: 30,
                len: 10
            })
        );
        assert_eq!(s.poll_chunk(1), None);
    }

    #[test]
    fn stall_rewinds_to_the_last_ack() {
        let mut s = Sender::new(cfg(10, 30), 100, 0, 0);
        while s.poll_chunk(0).is_some() {}
        s.on_ack(10, 5);
        // The ack opened the window by one chunk.
        assert_eq!(
            s.poll_chunk(5),
            Some(ChunkRange {
                offset: 30,
                len: 10
            })
        );
        assert_eq!(s.poll_chunk(104), None);
        assert_eq!(
            s.poll_chunk(105),
            Some(ChunkRange {
                offset: 10,
                len: 10
            })
        );
        assert_eq!(s.rewinds(), 1);
    }

    #[test]
    fn resume_offset_and_short_last_chunk() {
        let mut s = Sender::new(cfg(10, 100), 25, 20, 0);
        assert_eq!(s.poll_chunk(0), Some(ChunkRange { offset: 20, len: 5 }));
        assert_eq!(s.poll_chunk(0), None);
        s.on_ack(25, 0);
        assert!(s.is_done());
        let empty = Sender::new(cfg(10, 100), 0, 0, 0);
        assert!(empty.is_done());
    }

    #[test]
    fn rate_limiter_keeps_the_average() {
        let mut r = RateLimiter::new(1000, 100, 0);
        // The burst goes at once, then 100 bytes per 100 ms.
        assert_eq!(r.take(100, 0), 0);
        assert_eq!(r.take(100, 0), 100_000_000);
        let mut now = 100_000_000;
        let mut sent = 200u64;
        for _ in 0..100 {
            let wait = r.take(100, now);
            now += wait;
            sent += 100;
        }
        let secs = now as f64 / 1e9;
        assert!(
            (sent as f64 / secs) <= 1000.0 * 1.02,
            "{sent} B in {secs} s"
        );
    }

    proptest! {
        /// Against a manager that receives each chunk with probability 1 - loss (losing it or
        /// its ack otherwise) and acks the bytes it has contiguously, the sender always
        /// completes, never exceeds the window or the file, and the manager gets every byte.
        #[test]
        fn completes_over_a_lossy_link(
            size in 0u64..5_000,
            chunk in 1u32..700,
            window_chunks in 1u64..8,
            loss_percent in 0u64..60,
            seed in any::<u64>(),
        ) {
            let c = cfg(chunk, u64::from(chunk) * window_chunks);
            let mut s = Sender::new(c, size, 0, 0);
            let mut expected = 0u64; // the manager's next expected offset
            let mut rng = seed | 1;
            let mut lost = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % 100 < loss_percent
            };
            let mut now = 0i64;
            let mut steps = 0u64;
            while !s.is_done() {
                steps += 1;
                prop_assert!(steps < 10_000_000, "no progress");
                match s.poll_chunk(now) {
                    Some(r) => {
                        prop_assert!(r.offset + u64::from(r.len) - s.acked() <= c.window_bytes);
                        prop_assert!(r.offset + u64::from(r.len) <= size);
                        if !lost() {
                            if r.offset == expected {
                                expected += u64::from(r.len);
                            }
                            s.on_ack(expected, now);
                        }
                    }
                    None => now += 50,
                }
            }
            prop_assert_eq!(expected, size);
        }
    }
}
