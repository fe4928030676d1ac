//! Fuzz target: arbitrary bytes as an RTP packet (header, CSRCs, extension, padding), an RTCP
//! check and a compound RTCP packet (SR/RR/XR walked into a summary), a telephone-event payload
//! and G.711 audio; then the bytes read as a series of
//! (sequence, timestamp, arrival, size) updates to RFC 3550 stream statistics, whose results
//! must stay finite and consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapfleet_edge::rtp::{self, StreamStats, g711::Law};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = rtp::parse(data) {
        assert!(p.payload.len() <= data.len().saturating_sub(12));
        if let Some(ev) = rtp::parse_telephone_event(p.payload) {
            let _ = rtp::dtmf_digit(ev.event);
        }
        for law in [Law::Ulaw, Law::Alaw] {
            let _: Vec<i16> = p.payload.iter().map(|&b| law.decode(b)).collect();
        }
    }
    let _ = rtp::is_rtcp(data);
    let mut summary = rtp::rtcp::RtcpSummary::default();
    if let Some(n) = rtp::rtcp::walk(data, |item| summary.apply(0x2222_2222, &item)) {
        assert!(
            n * 4 <= data.len(),
            "{n} RTCP packets in {} bytes",
            data.len()
        );
    }

    let Some((&rate, rest)) = data.split_first() else {
        return;
    };
    let clock = [0u32, 8000, 16000, 48000, 90000, u32::MAX][usize::from(rate) % 6];
    let mut s = StreamStats::new(clock);
    let mut arrival = 0i64;
    for c in rest.chunks_exact(10) {
        let seq = u16::from_be_bytes([c[0], c[1]]);
        let ts = u32::from_be_bytes([c[2], c[3], c[4], c[5]]);
        // Arrival steps may go backwards (reordered capture) and be huge.
        let step = i32::from_be_bytes([c[6], c[7], c[8], c[9]]);
        arrival = arrival.saturating_add(i64::from(step) * 1000);
        s.update(seq, ts, arrival, usize::from(c[9]));
    }
    if s.packets > 0 {
        assert!(s.expected() >= 1);
        assert!(s.jitter_ms().is_finite() && s.jitter_ms() >= 0.0);
        assert!(s.max_jitter_ms().is_finite());
        assert!(s.duplicates + s.reordered < s.packets);
    }
});
