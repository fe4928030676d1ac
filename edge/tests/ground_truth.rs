//! End to end against the call generator's ground truth: `tapfleet-edge record` on a capture
//! made by `tapfleet-callgen` with packet loss and network jitter yields, for every generated
//! call, one recording whose manifest says what really happened (Call-ID, numbers, display
//! names, tags, start/answer times, BYE, 200, each stream's 5-tuple, SSRC, direction, payload
//! type, packets, loss), whose files match their size and SHA-256, and whose `audio.wav` has the
//! caller's tone on the left and the callee's on the right, each placed where the stream
//! started, with silence exactly where the truth dropped a packet.

mod common;

use std::path::Path;

use sha2::{Digest, Sha256};
use tapfleet_callgen::{CodecChoice, GenOptions, StreamTruth, Truth};
use tapfleet_schemas::{EndReason, Manifest, StreamDirection};

/// 20 ms of 8 kHz audio.
const FRAME: usize = 160;

fn wav(path: &Path) -> (Vec<i16>, Vec<i16>) {
    let b = std::fs::read(path).expect("read audio.wav");
    assert_eq!(b.get(..4), Some(&b"RIFF"[..]));
    assert_eq!(u16::from_le_bytes([b[22], b[23]]), 2, "stereo");
    assert_eq!(u32::from_le_bytes([b[24], b[25], b[26], b[27]]), 8000);
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for f in b[44..].chunks_exact(4) {
        l.push(i16::from_le_bytes([f[0], f[1]]));
        r.push(i16::from_le_bytes([f[2], f[3]]));
    }
    (l, r)
}

/// Power of `x` at `hz` (Goertzel), per sample.
fn power(x: &[i16], hz: u32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / 8000.0;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / (x.len().max(1) as f64).powi(2)
}

/// A truth time as the capture has it (microsecond timestamps).
fn us(ns: u64) -> i64 {
    (ns / 1000 * 1000) as i64
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Checks one stream of the manifest against its truth; returns the WAV frame where the
/// stream's first packet goes.
fn check_stream(m: &Manifest, t: &StreamTruth, dir: StreamDirection) -> usize {
    let src = format!("{}:{}", t.src_ip, t.src_port);
    let dst = format!("{}:{}", t.dst_ip, t.dst_port);
    let s = m
        .streams
        .iter()
        .find(|s| s.ssrc == t.ssrc)
        .unwrap_or_else(|| panic!("{}: stream {:#x} recorded", m.call_id, t.ssrc));
    assert_eq!(
        (s.src.as_str(), s.dst.as_str()),
        (src.as_str(), dst.as_str())
    );
    assert_eq!(s.direction, dir);
    assert_eq!(s.payload_type, t.payload_type);
    assert_eq!(s.packets, t.packets_in_file, "{} {:#x}", m.call_id, t.ssrc);
    assert_eq!(
        s.lost,
        t.dropped_seqs.len() as i64,
        "{} {:#x}",
        m.call_id,
        t.ssrc
    );
    assert!(s.decoded, "{:?}", s.not_decoded);
    assert!(s.mos.is_some_and(|v| v > 1.0 && v < 4.5), "{:?}", s.mos);
    assert_eq!(s.first_ns, us(t.first_send_ns), "first packet undelayed");
    ((t.first_send_ns as i64 - m.start_ns) * 8000 / 1_000_000_000) as usize
}

/// The tone of `t` fills its channel from `first` on; a dropped packet's 20 ms are silence,
/// the packet after one is not.
fn check_channel(x: &[i16], other: &[i16], t: &StreamTruth, other_hz: u32, first: usize) {
    // Nothing before the stream started (1 frame of slack for rounding).
    let before = first.saturating_sub(2);
    assert!(x[..before].iter().all(|&v| v == 0), "silence before");
    let span = &x[first + 1..first + 1 + 8000];
    assert!(
        power(span, t.tone_hz) > 50.0 * power(span, other_hz),
        "{} Hz dominates its channel",
        t.tone_hz
    );
    let o = &other[first + 1..first + 1 + 8000];
    assert!(
        power(o, t.tone_hz) * 50.0 < power(o, other_hz),
        "not in the other channel"
    );
    for &seq in &t.dropped_seqs {
        let i = usize::from(seq.wrapping_sub(t.first_seq));
        let at = first + i * FRAME;
        let gap = x.get(at + 2..at + FRAME - 2).expect("gap inside the file");
        assert!(gap.iter().all(|&v| v == 0), "seq {seq}: silence");
        if !t.dropped_seqs.contains(&seq.wrapping_add(1)) {
            let next = &x[at + FRAME + 2..at + 2 * FRAME - 2];
            assert!(next.iter().any(|&v| v != 0), "seq {seq}+1: audio");
        }
    }
}

#[test]
fn recordings_match_the_generators_ground_truth() {
    let opts = GenOptions {
        calls: 4,
        concurrency: 2,
        duration_s: 4.0,
        codec: CodecChoice::Mixed,
        loss: 0.03,
        jitter_ms: 12.0,
        seed: 42,
        ..GenOptions::default()
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let pcap = tmp.path().join("calls.pcap");
    let truth: Truth = tapfleet_callgen::generate_to_file(&opts, &pcap, None).expect("generate");
    assert!(truth.totals.rtp_dropped > 0, "the truth has losses");
    let out = tmp.path().join("out");
    let recs = common::record_ok(&[&pcap], &out);
    assert_eq!(recs.len(), truth.calls.len());

    for c in &truth.calls {
        let mut mine = recs.iter().filter(|(_, m)| m.call_id == c.call_id);
        let (dir, m) = mine.next().expect("call recorded");
        assert!(mine.next().is_none(), "one recording per call");
        assert_eq!(m.caller.number, c.caller.number);
        assert_eq!(m.callee.number, c.callee.number);
        assert_eq!(
            m.caller.display_name.as_deref(),
            Some(c.caller.display_name.as_str())
        );
        assert_eq!(
            m.callee.display_name.as_deref(),
            Some(c.callee.display_name.as_str())
        );
        assert_eq!(m.caller.tag.as_deref(), Some(c.caller.tag.as_str()));
        assert_eq!(m.callee.tag.as_deref(), Some(c.callee.tag.as_str()));
        assert_eq!(m.start_ns, us(c.start_ns));
        assert_eq!(m.answer_ns, Some(us(c.answer_ns)));
        assert!(m.end_ns >= us(c.end_ns));
        assert_eq!(m.end_reason, EndReason::Bye);
        assert_eq!(m.sip_status, Some(200));
        assert!(m.complete, "{:?}", m.incomplete);
        assert_eq!(m.streams.len(), 2);
        assert!(m.dtmf.is_empty());
        for f in &m.files {
            let b = std::fs::read(dir.join(&f.name)).expect("listed file exists");
            assert_eq!(b.len() as u64, f.size, "{}", f.name);
            assert_eq!(sha256_hex(&b), f.sha256.to_string(), "{}", f.name);
        }
        let up = check_stream(m, &c.caller_to_callee, StreamDirection::CallerToCallee);
        let down = check_stream(m, &c.callee_to_caller, StreamDirection::CalleeToCaller);
        let (left, right) = wav(&dir.join("audio.wav"));
        let (hz_up, hz_down) = (c.caller_to_callee.tone_hz, c.callee_to_caller.tone_hz);
        check_channel(&left, &right, &c.caller_to_callee, hz_down, up);
        check_channel(&right, &left, &c.callee_to_caller, hz_up, down);
    }
}
