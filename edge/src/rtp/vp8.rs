//! VP8 RTP depacketization (RFC 7741) into VP8 frames, pure.
//!
//! The payload descriptor (X, N, S, PID; extension I/L/T/K with 7- or 15-bit PictureID,
//! TL0PICIDX, TID/KEYIDX) is removed; a frame starts at S=1 with PID 0 and ends at the marker
//! bit (or when the RTP timestamp changes). Key frames are recognised by the frame tag's P bit
//! and checked by their start code (0x9d 0x01 0x2a), which also gives the frame size.
//!
//! Loss: a frame missing a packet (a sequence gap inside it, a frame without its start, or no end
//! when the stream ended) is dropped, and since later frames may reference it, frames are then
//! skipped until the next key frame; frames before the first key frame are skipped too. All
//! counted. Late packets (duplicates, reordering) are ignored.

use super::frame::{Damage, Frame, FrameStats, MAX_FRAME_BYTES, SeqTracker, append_bounded};

/// The key frame start code after the 3-byte frame tag.
const START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];

/// A parsed payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// S=1 and partition index 0: the first packet of a frame.
    pub frame_start: bool,
    /// Descriptor length: the VP8 payload follows.
    pub len: usize,
}

/// Parses an RFC 7741 payload descriptor; None when it overruns the payload.
pub fn parse_descriptor(p: &[u8]) -> Option<Descriptor> {
    let b0 = *p.first()?;
    let mut len = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(len)?;
        len += 1;
        if x & 0x80 != 0 {
            // PictureID: M bit set means 15 bits.
            let m = *p.get(len)?;
            len += if m & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            len += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            len += 1; // TID/Y/KEYIDX
        }
    }
    if p.len() < len {
        return None;
    }
    Some(Descriptor {
        frame_start: b0 & 0x10 != 0 && b0 & 0x07 == 0,
        len,
    })
}

/// Whether a frame's first bytes are a key frame (P bit 0), and its size if the key frame header
/// is whole and valid. `Some(None)`: a key frame whose header is broken.
fn keyframe(frame: &[u8]) -> Option<Option<(u16, u16)>> {
    let tag = *frame.first()?;
    if tag & 0x01 != 0 {
        return None;
    }
    let size = match frame.get(3..10) {
        Some([a, b, c, w0, w1, h0, h1]) if [*a, *b, *c] == START_CODE => {
            let w = u16::from_le_bytes([*w0, *w1]) & 0x3fff;
            let h = u16::from_le_bytes([*h0, *h1]) & 0x3fff;
            (w > 0 && h > 0).then_some((w, h))
        }
        _ => None,
    };
    Some(size)
}

/// Whether an RTP payload is the first packet of a VP8 key frame with a valid header: cheap
/// content detection for streams no SDP describes.
pub fn sniff(payload: &[u8]) -> bool {
    parse_descriptor(payload).is_some_and(|d| {
        d.frame_start && matches!(payload.get(d.len..).and_then(keyframe), Some(Some(_)))
    })
}

#[derive(Debug)]
struct Partial {
    timestamp: u32,
    data: Vec<u8>,
    damage: Option<Damage>,
    key: bool,
    size: Option<(u16, u16)>,
}

/// Reassembles one VP8 RTP stream (one SSRC) into frames.
#[derive(Debug)]
pub struct Vp8Depacketizer {
    seq: SeqTracker,
    max_frame: usize,
    cur: Option<Partial>,
    /// Frames are skipped until a key frame (at the start and after a loss).
    need_key: bool,
    stats: FrameStats,
}

impl Default for Vp8Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Vp8Depacketizer {
    pub fn new() -> Self {
        Self::with_max_frame(MAX_FRAME_BYTES)
    }

    /// Same, with another bound on a frame's size.
    pub fn with_max_frame(max_frame: usize) -> Self {
        Vp8Depacketizer {
            seq: SeqTracker::default(),
            max_frame,
            cur: None,
            need_key: true,
            stats: FrameStats::default(),
        }
    }

    pub fn stats(&self) -> &FrameStats {
        &self.stats
    }

    /// Accounts one RTP packet's fields; complete frames are appended to `out`.
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        out: &mut Vec<Frame>,
    ) {
        let Some(gap) = self.seq.accept(seq, &mut self.stats) else {
            return;
        };
        if gap {
            // Whole frames may be gone: a reference is missing until the next key frame.
            self.need_key = true;
            if let Some(cur) = self.cur.as_mut() {
                cur.damage.get_or_insert(Damage::Loss);
            }
        }
        let desc = parse_descriptor(payload);
        let start = desc.is_some_and(|d| d.frame_start);
        if self
            .cur
            .as_ref()
            .is_some_and(|c| c.timestamp != timestamp || start)
        {
            self.finish(out);
        }
        let cur = self.cur.get_or_insert_with(|| Partial {
            timestamp,
            data: Vec::new(),
            damage: match desc {
                None => Some(Damage::Malformed),
                // A frame's first packet that is not its start: the start is missing.
                Some(d) if !d.frame_start => Some(Damage::Loss),
                Some(_) => None,
            },
            key: false,
            size: None,
        });
        match desc.and_then(|d| payload.get(d.len..)) {
            Some(body) if !body.is_empty() || !start => {
                if start {
                    match keyframe(body) {
                        Some(Some(size)) => (cur.key, cur.size) = (true, Some(size)),
                        Some(None) => {
                            cur.damage.get_or_insert(Damage::Malformed);
                        }
                        None => {}
                    }
                }
                if cur.damage.is_none() && !append_bounded(&mut cur.data, self.max_frame, &[body]) {
                    cur.damage = Some(Damage::Oversize);
                }
            }
            _ => {
                cur.damage.get_or_insert(Damage::Malformed);
            }
        }
        if marker {
            self.finish(out);
        }
    }

    /// The end of the stream: a frame still open (no marker seen) is dropped as lost.
    pub fn flush(&mut self) {
        if let Some(cur) = self.cur.take() {
            self.stats.count(cur.damage.unwrap_or(Damage::Loss));
        }
    }

    fn finish(&mut self, out: &mut Vec<Frame>) {
        let Some(f) = self.cur.take() else {
            return;
        };
        if let Some(d) = f.damage {
            self.stats.count(d);
            self.need_key = true;
            return;
        }
        if self.need_key && !f.key {
            self.stats.skipped += 1;
            return;
        }
        self.need_key = false;
        self.stats.frames += 1;
        if f.key {
            self.stats.keyframes += 1;
        }
        out.push(Frame {
            timestamp: f.timestamp,
            keyframe: f.key,
            size: f.size,
            data: f.data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key frame's first bytes: frame tag, start code, 1080x720.
    fn key_header() -> Vec<u8> {
        let mut v = vec![0x50, 0x2a, 0x00];
        v.extend_from_slice(&START_CODE);
        v.extend_from_slice(&1080u16.to_le_bytes());
        v.extend_from_slice(&720u16.to_le_bytes());
        v
    }

    fn pkt(start: bool, body: &[u8]) -> Vec<u8> {
        // X=1, I=1 with a 15-bit PictureID, as browsers send.
        let mut v = vec![0x80 | if start { 0x10 } else { 0 }, 0x80, 0x81, 0x23];
        v.extend_from_slice(body);
        v
    }

    fn run(d: &mut Vp8Depacketizer, pkts: &[(u16, u32, bool, Vec<u8>)]) -> Vec<Frame> {
        let mut out = Vec::new();
        for (seq, ts, m, p) in pkts {
            d.push(*seq, *ts, *m, p, &mut out);
        }
        out
    }

    #[test]
    fn descriptor_forms() {
        assert_eq!(
            parse_descriptor(&[0x10, 9]),
            Some(Descriptor {
                frame_start: true,
                len: 1
            })
        );
        // X with I (7-bit), L, T: 1 + 1 + 1 + 1 + 1.
        assert_eq!(
            parse_descriptor(&[0x90, 0xe0, 0x05, 7, 0x20, 9]).map(|d| d.len),
            Some(5)
        );
        // PID 1 is not a frame start.
        assert_eq!(
            parse_descriptor(&[0x11, 0]).map(|d| d.frame_start),
            Some(false)
        );
        assert_eq!(parse_descriptor(&[0x80, 0x80, 0x81]), None);
        assert_eq!(parse_descriptor(&[]), None);
    }

    #[test]
    fn frames_are_joined_and_key_frames_sized() {
        let mut d = Vp8Depacketizer::default();
        let k = key_header();
        let out = run(
            &mut d,
            &[
                (1, 0, false, pkt(true, &k)),
                (2, 0, false, pkt(false, &[1, 2])),
                (3, 0, true, pkt(false, &[3])),
                (4, 3000, true, pkt(true, &[0x31, 0, 0, 4])),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data, [k.clone(), vec![1, 2, 3]].concat());
        assert!(out[0].keyframe && !out[1].keyframe);
        assert_eq!(out[0].size, Some((1080, 720)));
        assert_eq!(out[1].data, [0x31, 0, 0, 4]);
        assert!(sniff(&pkt(true, &k)));
        assert!(!sniff(&pkt(false, &k)));
        assert!(!sniff(&pkt(true, &[0x31, 0, 0, 4])));
    }

    #[test]
    fn loss_drops_the_frame_and_waits_for_a_key_frame() {
        let mut d = Vp8Depacketizer::default();
        let k = key_header();
        let out = run(
            &mut d,
            &[
                // Starts in the middle of a frame: dropped; then an interframe: skipped.
                (1, 0, true, pkt(false, &[9])),
                (2, 3000, true, pkt(true, &[0x31, 0, 0])),
                (3, 6000, true, pkt(true, &k)),
                (4, 9000, false, pkt(true, &[0x31, 0, 0])),
                // 5 lost
                (6, 9000, true, pkt(false, &[1])),
                (7, 12000, true, pkt(true, &[0x31, 0, 1])),
                (8, 15000, true, pkt(true, &k)),
                (8, 15000, true, pkt(true, &k)),
                (9, 18000, false, pkt(true, &[0x31, 0, 2])),
            ],
        );
        d.flush();
        let ts: Vec<u32> = out.iter().map(|f| f.timestamp).collect();
        assert_eq!(ts, [6000, 15000]);
        let s = d.stats();
        assert_eq!((s.dropped_loss, s.skipped, s.late_packets), (3, 2, 1));
        assert_eq!(s.not_emitted() + s.frames, 7);
    }

    #[test]
    fn oversize_and_broken_key_frames_are_dropped() {
        let mut d = Vp8Depacketizer::with_max_frame(16);
        let mut broken = key_header();
        broken[4] = 0;
        let out = run(
            &mut d,
            &[
                (1, 0, true, pkt(true, &broken)),
                (2, 1, true, pkt(true, &[key_header(), vec![0; 16]].concat())),
                (3, 2, true, pkt(true, &key_header())),
                (4, 3, true, vec![0x90]),
            ],
        );
        assert_eq!(out.len(), 1);
        let s = d.stats();
        assert_eq!(
            (s.dropped_malformed, s.dropped_oversize, s.frames),
            (2, 1, 1)
        );
    }
}
