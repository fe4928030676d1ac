//! What the video depacketizers ([`super::h264`], [`super::vp8`]) share: the frame they emit, their
//! counters, the per-frame size bound and sequence-number loss detection. Pure.

/// Largest frame a depacketizer assembles (4 MiB); a bigger one is dropped and counted, so memory
/// per stream stays bounded.
pub const MAX_FRAME_BYTES: usize = 4 << 20;

/// One complete video frame (an H.264 access unit in Annex B form, or a VP8 frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// RTP timestamp of the frame's packets.
    pub timestamp: u32,
    /// An H.264 IDR access unit or a VP8 key frame.
    pub keyframe: bool,
    /// Width and height, when the frame says them (VP8 key frames).
    pub size: Option<(u16, u16)>,
    pub data: Vec<u8>,
}

/// What a depacketizer did with the frames of its stream. Every frame whose packets arrived
/// (even partly) ends in exactly one of `frames`, `dropped_loss`, `dropped_oversize`,
/// `dropped_malformed`, `skipped`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames emitted.
    pub frames: u64,
    /// Emitted frames that are key frames (H.264 IDR, VP8 key frame).
    pub keyframes: u64,
    /// Frames dropped because a packet of theirs is missing (a sequence gap, a fragment without
    /// its start or end, or no end seen when the stream ended).
    pub dropped_loss: u64,
    /// Frames dropped because they exceed the size bound.
    pub dropped_oversize: u64,
    /// Frames dropped because a packet was malformed or used an unsupported packetization.
    pub dropped_malformed: u64,
    /// Complete frames not emitted because a decoder could not use them: before the first key
    /// frame (H.264: before the first IDR or SPS) and, for VP8, after a loss until the next key
    /// frame.
    pub skipped: u64,
    /// Packets ignored because they arrived after a later one (duplicates, reordering).
    pub late_packets: u64,
    /// Packets ignored because their content is reserved (H.264 NAL unit types 0, 30, 31).
    pub ignored_packets: u64,
    /// Sequence number gaps seen.
    pub gaps: u64,
}

impl FrameStats {
    /// Frames not emitted, whatever the reason.
    pub fn not_emitted(&self) -> u64 {
        self.dropped_loss + self.dropped_oversize + self.dropped_malformed + self.skipped
    }
}

/// Why a frame being assembled will not be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damage {
    Loss,
    Oversize,
    Malformed,
}

impl FrameStats {
    pub(crate) fn count(&mut self, d: Damage) {
        match d {
            Damage::Loss => self.dropped_loss += 1,
            Damage::Oversize => self.dropped_oversize += 1,
            Damage::Malformed => self.dropped_malformed += 1,
        }
    }
}

/// How a packet's sequence number follows the previous accepted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqStep {
    /// The first packet, or the next in order.
    InOrder,
    /// Packets are missing before this one (or the sender jumped: treated the same).
    Gap,
    /// A duplicate or a packet older than the last accepted one: ignored. Reordering is not
    /// undone: the gap it left was already counted against its frame.
    Late,
}

/// Follows sequence numbers; a packet up to [`LATE_WINDOW`] behind the newest is late, further
/// back is taken as the sender restarting (a gap).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SeqTracker {
    last: Option<u16>,
}

const LATE_WINDOW: i16 = 256;

impl SeqTracker {
    pub(crate) fn step(&mut self, seq: u16) -> SeqStep {
        let Some(last) = self.last else {
            self.last = Some(seq);
            return SeqStep::InOrder;
        };
        let d = seq.wrapping_sub(last) as i16;
        if (-LATE_WINDOW..=0).contains(&d) {
            return SeqStep::Late;
        }
        self.last = Some(seq);
        if d == 1 {
            SeqStep::InOrder
        } else {
            SeqStep::Gap
        }
    }

    /// [`step`](Self::step) with late packets and gaps counted in `stats`: `None` for a late
    /// packet (to be ignored), else whether packets are missing before this one.
    pub(crate) fn accept(&mut self, seq: u16, stats: &mut FrameStats) -> Option<bool> {
        match self.step(seq) {
            SeqStep::Late => {
                stats.late_packets += 1;
                None
            }
            SeqStep::Gap => {
                stats.gaps += 1;
                Some(true)
            }
            SeqStep::InOrder => Some(false),
        }
    }
}

/// Appends `parts` to `buf` unless that makes it exceed `max`; returns false (and frees `buf`)
/// when it would.
pub(crate) fn append_bounded(buf: &mut Vec<u8>, max: usize, parts: &[&[u8]]) -> bool {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    if buf.len().saturating_add(n) > max {
        *buf = Vec::new();
        return false;
    }
    for p in parts {
        buf.extend_from_slice(p);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_steps() {
        let mut t = SeqTracker::default();
        assert_eq!(t.step(65534), SeqStep::InOrder);
        assert_eq!(t.step(65535), SeqStep::InOrder);
        assert_eq!(t.step(0), SeqStep::InOrder, "wraps");
        assert_eq!(t.step(0), SeqStep::Late, "duplicate");
        assert_eq!(t.step(3), SeqStep::Gap);
        assert_eq!(t.step(2), SeqStep::Late, "reordered");
        assert_eq!(t.step(4), SeqStep::InOrder);
        assert_eq!(t.step(30_000), SeqStep::Gap, "restart far ahead");
        assert_eq!(t.step(100), SeqStep::Gap, "restart far behind");
    }

    #[test]
    fn bounded_append_frees_on_overflow() {
        let mut b = vec![1, 2];
        assert!(append_bounded(&mut b, 4, &[&[3], &[4]]));
        assert_eq!(b, [1, 2, 3, 4]);
        assert!(!append_bounded(&mut b, 4, &[&[5]]));
        assert!(b.is_empty() && b.capacity() == 0);
    }
}
