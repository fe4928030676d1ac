//! Fuzz target: arbitrary bytes as a series of RTP packets (sequence step, timestamp step,
//! marker, payload) through the H.264 and VP8 depacketizers, plus content detection and the
//! `sprop-parameter-sets` parser. Nothing may panic; frames stay within the size bound; every
//! frame that was started is accounted exactly once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapfleet_edge::rtp::frame::Frame;
use tapfleet_edge::rtp::h264::{self, H264Depacketizer};
use tapfleet_edge::rtp::vp8::{self, Vp8Depacketizer};

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        for ps in h264::parse_sprop(s) {
            assert!(!ps.is_empty());
        }
    }
    let mut h = H264Depacketizer::with_max_frame(h264::parse_sprop(""), MAX);
    let mut v = Vp8Depacketizer::with_max_frame(MAX);
    let (mut seq, mut ts) = (65_530u16, u32::MAX - 9000);
    let mut out: Vec<Frame> = Vec::new();
    let mut rest = data;
    // Each packet: [sequence step, timestamp step / 1000 | marker bit 0x80, length, payload...].
    while let [ds, dt, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(n);
        rest = next;
        seq = seq.wrapping_add(u16::from(*ds) % 4);
        ts = ts.wrapping_add(u32::from(dt & 0x7f) * 1000);
        let marker = dt & 0x80 != 0;
        let _ = h264::sniff(payload);
        let _ = vp8::sniff(payload);
        let _ = vp8::parse_descriptor(payload);
        h.push(seq, ts, marker, payload, &mut out);
        v.push(seq, ts, marker, payload, &mut out);
    }
    h.flush();
    v.flush();
    for f in &out {
        assert!(f.data.len() <= MAX + 64, "a frame beyond the bound");
    }
    let total = h.stats().frames + v.stats().frames;
    assert_eq!(total, out.len() as u64);
    for s in [h.stats(), v.stats()] {
        assert!(s.keyframes <= s.frames);
    }
});
