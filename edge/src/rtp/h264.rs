//! H.264 RTP depacketization (RFC 6184) into Annex B access units, pure.
//!
//! Handles single NAL unit packets, STAP-A and FU-A: everything packetization modes 0 and 1
//! send. Interleaved mode (STAP-B, MTAP, FU-B) is not supported: its packets make their access
//! unit dropped as malformed. An access unit is the packets of one RTP timestamp; it ends at the
//! marker bit (or when the timestamp changes, for senders that do not set it). Every NAL unit is
//! written with a 4-byte start code.
//!
//! Loss: a sequence gap inside an access unit, an FU-A without its start or end, or an access unit
//! whose start may be missing (a gap before it and its first slice does not begin the picture)
//! drops that access unit, counted. Later frames are still written (a decoder conceals the missing
//! reference); frames before the first IDR (or SPS) are skipped. Late packets (duplicates,
//! reordering) are ignored. Parameter sets from SDP (`sprop-parameter-sets`) are inserted before
//! the first IDR when the stream did not send its SPS and PPS in band before it.

use super::frame::{Damage, Frame, FrameStats, MAX_FRAME_BYTES, SeqTracker, append_bounded};

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const STAP_A: u8 = 24;
const FU_A: u8 = 28;
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
/// Parameter sets taken from SDP, and the size of each.
const MAX_SPROP_SETS: usize = 8;
const MAX_SPROP_LEN: usize = 1024;

#[derive(Debug, Default)]
struct AccessUnit {
    timestamp: u32,
    data: Vec<u8>,
    damage: Option<Damage>,
    idr: bool,
    sps: bool,
    pps: bool,
    /// An FU-A is open (its end not seen yet).
    fu_open: bool,
    nals: usize,
    /// Packets of reserved NAL unit types.
    ignored: u64,
}

/// Reassembles one H.264 RTP stream (one SSRC) into access units.
#[derive(Debug)]
pub struct H264Depacketizer {
    seq: SeqTracker,
    max_frame: usize,
    cur: Option<AccessUnit>,
    /// An access unit that can start decoding was emitted.
    started: bool,
    /// SPS / PPS seen in band in an emitted access unit.
    sps_seen: bool,
    pps_seen: bool,
    /// Parameter sets from SDP, not yet inserted.
    sprop: Vec<Vec<u8>>,
    stats: FrameStats,
}

impl Default for H264Depacketizer {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl H264Depacketizer {
    /// A depacketizer; `sprop` are parameter set NAL units from SDP ([`parse_sprop`]).
    pub fn new(sprop: Vec<Vec<u8>>) -> Self {
        Self::with_max_frame(sprop, MAX_FRAME_BYTES)
    }

    /// Same, with another bound on an access unit's size.
    pub fn with_max_frame(sprop: Vec<Vec<u8>>, max_frame: usize) -> Self {
        H264Depacketizer {
            seq: SeqTracker::default(),
            max_frame,
            cur: None,
            started: false,
            sps_seen: false,
            pps_seen: false,
            sprop,
            stats: FrameStats::default(),
        }
    }

    pub fn stats(&self) -> &FrameStats {
        &self.stats
    }

    /// Accounts one RTP packet's fields; complete access units are appended to `out`.
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
        if let Some(cur) = self.cur.as_mut() {
            if gap {
                // Packets of this access unit (its end at least, no marker was seen) are missing.
                cur.damage.get_or_insert(Damage::Loss);
            }
            if cur.timestamp != timestamp {
                self.finish(out);
            }
        }
        let cur = self.cur.get_or_insert_with(|| AccessUnit {
            timestamp,
            // Lost packets may have been this access unit's start.
            damage: (gap && !begins_picture(payload)).then_some(Damage::Loss),
            ..AccessUnit::default()
        });
        add_payload(cur, payload, self.max_frame);
        if marker {
            self.finish(out);
        }
    }

    /// The end of the stream: an access unit still open (no marker seen) is dropped as lost.
    pub fn flush(&mut self) {
        if let Some(cur) = self.cur.take() {
            self.stats.ignored_packets += cur.ignored;
            if cur.nals > 0 || cur.damage.is_some() {
                self.stats.count(cur.damage.unwrap_or(Damage::Loss));
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Frame>) {
        let Some(mut au) = self.cur.take() else {
            return;
        };
        self.stats.ignored_packets += au.ignored;
        if au.fu_open {
            au.damage.get_or_insert(Damage::Loss);
        }
        if au.nals == 0 && au.damage.is_none() {
            // Only ignored packets: not a frame.
            return;
        }
        if let Some(d) = au.damage {
            self.stats.count(d);
            return;
        }
        if !self.started {
            if !(au.idr || au.sps) {
                self.stats.skipped += 1;
                return;
            }
            self.started = true;
        }
        let mut data = au.data;
        if au.idr && !self.sprop.is_empty() {
            if !(self.sps_seen || au.sps) || !(self.pps_seen || au.pps) {
                let mut with: Vec<u8> = Vec::with_capacity(data.len() + 64);
                for ps in &self.sprop {
                    with.extend_from_slice(&START_CODE);
                    with.extend_from_slice(ps);
                }
                with.extend_from_slice(&data);
                data = with;
            }
            self.sprop.clear();
        }
        self.sps_seen |= au.sps;
        self.pps_seen |= au.pps;
        self.stats.frames += 1;
        if au.idr {
            self.stats.keyframes += 1;
        }
        out.push(Frame {
            timestamp: au.timestamp,
            keyframe: au.idr,
            size: None,
            data,
        });
    }
}

/// Adds one RTP payload's NAL units to the access unit.
fn add_payload(au: &mut AccessUnit, payload: &[u8], max: usize) {
    let Some(&hdr) = payload.first() else {
        au.damage.get_or_insert(Damage::Malformed);
        return;
    };
    if hdr & 0x80 != 0 {
        // forbidden_zero_bit: the sender says this NAL unit has errors.
        au.damage.get_or_insert(Damage::Malformed);
        return;
    }
    match hdr & 0x1f {
        t @ 1..=23 => {
            if au.fu_open {
                au.fu_open = false;
                au.damage.get_or_insert(Damage::Loss);
            }
            add_nal(au, t, &[payload], max);
        }
        STAP_A => {
            if au.fu_open {
                au.fu_open = false;
                au.damage.get_or_insert(Damage::Loss);
            }
            let mut rest = payload.get(1..).unwrap_or_default();
            while !rest.is_empty() {
                let Some((len, tail)) = rest.split_first_chunk::<2>() else {
                    au.damage.get_or_insert(Damage::Malformed);
                    return;
                };
                let n = usize::from(u16::from_be_bytes(*len));
                let Some(nal) = tail.get(..n).filter(|n| !n.is_empty()) else {
                    au.damage.get_or_insert(Damage::Malformed);
                    return;
                };
                let t = nal.first().map_or(0, |h| h & 0x1f);
                if !(1..=23).contains(&t) {
                    au.damage.get_or_insert(Damage::Malformed);
                    return;
                }
                add_nal(au, t, &[nal], max);
                rest = tail.get(n..).unwrap_or_default();
            }
        }
        FU_A => {
            let Some(&fu) = payload.get(1) else {
                au.damage.get_or_insert(Damage::Malformed);
                return;
            };
            let (start, end, t) = (fu & 0x80 != 0, fu & 0x40 != 0, fu & 0x1f);
            let body = payload.get(2..).unwrap_or_default();
            if start {
                if au.fu_open {
                    au.damage.get_or_insert(Damage::Loss);
                }
                if !(1..=23).contains(&t) {
                    au.damage.get_or_insert(Damage::Malformed);
                    return;
                }
                add_nal(au, t, &[&[(hdr & 0xe0) | t], body], max);
                au.fu_open = !end;
            } else if !au.fu_open {
                // The fragment's start is missing.
                au.damage.get_or_insert(Damage::Loss);
            } else {
                if au.damage.is_none() && !append_bounded(&mut au.data, max, &[body]) {
                    au.damage = Some(Damage::Oversize);
                }
                if end {
                    au.fu_open = false;
                }
            }
        }
        // Reserved types: RFC 6184 section 5.2 says to ignore them (some clients send them as
        // keep-alives).
        0 | 30 | 31 => au.ignored += 1,
        _ => {
            au.damage.get_or_insert(Damage::Malformed);
        }
    }
}

fn add_nal(au: &mut AccessUnit, t: u8, parts: &[&[u8]], max: usize) {
    au.nals += 1;
    match t {
        NAL_IDR => au.idr = true,
        NAL_SPS => au.sps = true,
        NAL_PPS => au.pps = true,
        _ => {}
    }
    if au.damage.is_some() {
        return;
    }
    let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
    all.push(&START_CODE);
    all.extend_from_slice(parts);
    if !append_bounded(&mut au.data, max, &all) {
        au.damage = Some(Damage::Oversize);
    }
}

/// Whether a payload's first NAL unit can begin an access unit: a non-VCL NAL unit that precedes
/// the slices (SEI, SPS, PPS, access unit delimiter), or a slice with `first_mb_in_slice` 0.
fn begins_picture(payload: &[u8]) -> bool {
    let (t, after) = match payload.first().map(|h| h & 0x1f) {
        Some(t @ 1..=23) => (t, payload.get(1)),
        Some(STAP_A) => (payload.get(3).map_or(0, |h| h & 0x1f), payload.get(4)),
        Some(FU_A) => match payload.get(1) {
            Some(fu) if fu & 0x80 != 0 => (fu & 0x1f, payload.get(2)),
            _ => return false,
        },
        _ => return false,
    };
    match t {
        // A slice: first_mb_in_slice is ue(v); 0 is the single bit 1.
        1 | 5 => after.is_some_and(|b| b & 0x80 != 0),
        6..=9 => true,
        _ => false,
    }
}

/// The parameter sets of an H.264 `a=fmtp` line's `sprop-parameter-sets` (base64 NAL units,
/// comma-separated), bounded; invalid ones are left out.
pub fn parse_sprop(fmtp: &str) -> Vec<Vec<u8>> {
    let Some(v) = fmtp.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("sprop-parameter-sets")
            .then_some(v.trim())
    }) else {
        return Vec::new();
    };
    v.split(',')
        .take(MAX_SPROP_SETS)
        .filter(|s| s.len() <= MAX_SPROP_LEN * 4 / 3 + 4)
        .filter_map(base64_decode)
        .filter(|n| {
            n.first()
                .is_some_and(|h| h & 0x80 == 0 && matches!(h & 0x1f, 1..=23))
        })
        .collect()
}

/// Standard base64 with optional padding; None on anything else.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether an RTP payload carries an H.264 sequence parameter set that looks valid (a single NAL
/// unit, the first unit of a STAP-A, or the start of an FU-A): cheap content detection for streams
/// no SDP describes. Random bytes pass with a probability around 1e-6.
pub fn sniff(payload: &[u8]) -> bool {
    let sps = match payload.first() {
        Some(&h) if h & 0x80 != 0 => return false,
        Some(&h) if h & 0x1f == NAL_SPS => payload.get(1..),
        Some(&h) if h & 0x1f == STAP_A => payload
            .get(3..)
            .filter(|n| n.first().is_some_and(|h| (h & 0x9f) == NAL_SPS))
            .and_then(|n| n.get(1..)),
        Some(&h) if h & 0x1f == FU_A => payload
            .get(1)
            .filter(|fu| (*fu & 0x9f) == (0x80 | NAL_SPS))
            .and_then(|_| payload.get(2..)),
        _ => None,
    };
    sps.is_some_and(plausible_sps)
}

/// Checks an SPS body (after the NAL header): known profile, reserved bits zero, known level,
/// `seq_parameter_set_id` at most 31.
fn plausible_sps(b: &[u8]) -> bool {
    let [profile, constraints, level, ..] = b else {
        return false;
    };
    const PROFILES: [u8; 16] = [
        66, 77, 88, 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135,
    ];
    const LEVELS: [u8; 20] = [
        9, 10, 11, 12, 13, 20, 21, 22, 30, 31, 32, 40, 41, 42, 50, 51, 52, 60, 61, 62,
    ];
    if !PROFILES.contains(profile) || constraints & 0x03 != 0 || !LEVELS.contains(level) {
        return false;
    }
    let mut r = BitReader {
        data: b.get(3..).unwrap_or_default(),
        pos: 0,
    };
    r.ue().is_some_and(|id| id <= 31)
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }

    /// Exp-Golomb unsigned, up to 31 leading zeros.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let mut v: u64 = 0;
        for _ in 0..zeros {
            v = (v << 1) | u64::from(self.bit()?);
        }
        u32::try_from((1u64 << zeros) - 1 + v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x16, 0xb6, 0x80];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn run(d: &mut H264Depacketizer, pkts: &[(u16, u32, bool, Vec<u8>)]) -> Vec<Frame> {
        let mut out = Vec::new();
        for (seq, ts, m, p) in pkts {
            d.push(*seq, *ts, *m, p, &mut out);
        }
        out
    }

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&START_CODE[..], n].concat())
            .collect()
    }

    fn fu(start: bool, end: bool, t: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![
            0x60 | FU_A,
            (u8::from(start) << 7) | (u8::from(end) << 6) | t,
        ];
        v.extend_from_slice(body);
        v
    }

    fn stap(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![0x78];
        for n in nals {
            v.extend_from_slice(&(n.len() as u16).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn stap_a_is_split_and_fu_a_reassembled() {
        let mut d = H264Depacketizer::default();
        let out = run(
            &mut d,
            &[
                (10, 900, false, stap(&[SPS, PPS])),
                (11, 900, false, fu(true, false, 5, &[0x88, 1, 2])),
                (12, 900, false, fu(false, false, 5, &[3, 4])),
                (13, 900, true, fu(false, true, 5, &[5])),
                (14, 4500, true, vec![0x41, 0x9a, 7, 7]),
            ],
        );
        assert_eq!(out.len(), 2);
        assert!(out[0].keyframe && !out[1].keyframe);
        assert_eq!(
            out[0].data,
            annexb(&[SPS, PPS, &[0x65, 0x88, 1, 2, 3, 4, 5]])
        );
        assert_eq!(out[1].data, annexb(&[&[0x41, 0x9a, 7, 7]]));
        assert_eq!((out[0].timestamp, out[1].timestamp), (900, 4500));
        assert_eq!(d.stats().frames, 2);
        assert_eq!(d.stats().keyframes, 1);
    }

    #[test]
    fn lost_fragment_drops_only_its_access_unit() {
        let mut d = H264Depacketizer::default();
        let out = run(
            &mut d,
            &[
                (1, 0, true, Vec::new()),
                (2, 0, false, SPS.to_vec()),
                (3, 0, false, PPS.to_vec()),
                (4, 0, true, vec![0x65, 0x88, 9]),
                (5, 3000, false, fu(true, false, 1, &[0x9a, 1])),
                // 6 lost
                (7, 3000, true, fu(false, true, 1, &[3])),
                // a whole frame (8) lost: the next starts a picture, so it is kept
                (9, 9000, true, vec![0x41, 0x9a, 4]),
                // 10 lost; 11 continues a slice in the middle of a picture (first_mb != 0)
                (11, 12000, true, vec![0x41, 0x40, 4]),
                (12, 15000, true, vec![0x41, 0x9a, 5]),
            ],
        );
        let ts: Vec<u32> = out.iter().map(|f| f.timestamp).collect();
        assert_eq!(ts, [0, 9000, 15000]);
        let s = d.stats();
        assert_eq!(s.dropped_loss, 2);
        assert_eq!(s.dropped_malformed, 1, "the empty payload");
        assert_eq!(s.gaps, 3);
    }

    #[test]
    fn waits_for_idr_inserts_sprop_ignores_late_and_bounds_size() {
        let sprop = parse_sprop(
            "profile-level-id=42e01f; sprop-parameter-sets=Z0LAFraA,aM48gA==; packetization-mode=1",
        );
        assert_eq!(sprop, vec![SPS.to_vec(), PPS.to_vec()]);
        let mut d = H264Depacketizer::with_max_frame(sprop, 64);
        let out = run(
            &mut d,
            &[
                (1, 0, true, vec![0x41, 0x9a, 1]),
                (2, 3000, true, vec![0x65, 0x88, 2]),
                (2, 3000, true, vec![0x65, 0x88, 2]),
                (3, 6000, false, vec![0x41, 0x9a, 3]),
                (4, 6000, true, vec![0x41, 0x40, 4]),
                (5, 9000, true, [vec![0x41, 0x9a], vec![0; 100]].concat()),
                (6, 12000, false, vec![0x41, 0x9a, 6]),
            ],
        );
        d.flush();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data, annexb(&[SPS, PPS, &[0x65, 0x88, 2]]));
        assert_eq!(out[1].data, annexb(&[&[0x41, 0x9a, 3], &[0x41, 0x40, 4]]));
        let s = d.stats();
        assert_eq!(
            (
                s.skipped,
                s.late_packets,
                s.dropped_oversize,
                s.dropped_loss
            ),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn unsupported_and_malformed_packets_drop_their_frame() {
        let mut d = H264Depacketizer::default();
        let out = run(
            &mut d,
            &[
                (1, 0, true, SPS.to_vec()),
                (2, 1, true, vec![0x7a, 0, 0]),        // MTAP16
                (3, 2, true, vec![0x78, 0, 9, 0x41]),  // STAP-A overrunning
                (4, 3, true, vec![0xc1, 0x9a]),        // forbidden bit
                (5, 4, true, fu(true, true, 0, &[1])), // FU-A of type 0
                (6, 5, true, vec![0, 0, 0, 0]),        // reserved type 0: ignored
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(d.stats().dropped_malformed, 4);
        assert_eq!(d.stats().ignored_packets, 1);
    }

    #[test]
    fn sniffs_valid_sps_only() {
        assert!(sniff(SPS));
        assert!(sniff(&stap(&[SPS, PPS])));
        assert!(sniff(&fu(true, false, 7, &SPS[1..])));
        assert!(!sniff(PPS));
        assert!(
            !sniff(&[0x67, 0x42, 0xc0, 0x17, 0x80]),
            "level 23 does not exist"
        );
        assert!(
            !sniff(&[0x67, 0x43, 0xc0, 0x16, 0x80]),
            "profile 67 does not exist"
        );
        assert!(!sniff(&[
            0x67, 0x42, 0xc0, 0x16, 0x00, 0x00, 0x00, 0x00, 0x00
        ]));
        assert!(!sniff(&[]));
    }
}
