//! Audio codecs in `audio.wav`: `tapfleet-edge record` on real G.722, G.729A and Opus captures
//! (three SIP calls, one direction each, and an orphan Opus stream with no SDP) must mark the
//! stream decoded, write a WAV of the call's length at the right rate with the audio in the
//! sender's channel and silence in the other, and that audio must match an independent decode:
//! tshark extracts each RTP payload, ffmpeg's own decoders (not libopus, not bcg729) decode them.

mod common;
use common::{capture, record_ok, tool, tshark};

use std::path::{Path, PathBuf};
use std::process::Command;

use tapfleet_schemas::{Manifest, StreamDirection};

struct Case {
    capture: &'static str,
    codec: &'static str,
    /// Extra tshark options (RTP with no SDP needs the heuristic dissector).
    tshark_opts: &'static [&'static str],
    wav_rate: u32,
    /// Lowest normalised correlation with ffmpeg's decode accepted.
    min_correlation: f64,
    /// Whether every sample must equal ffmpeg's (both follow the recommendation bit for bit).
    bit_exact: bool,
}

const G722: Case = Case {
    capture: "rtp-pcap/examples/sip-rtp-g722.pcap",
    codec: "G722",
    tshark_opts: &[],
    wav_rate: 16_000,
    min_correlation: 0.99,
    bit_exact: true,
};
const G729: Case = Case {
    capture: "rtp-pcap/examples/sip-rtp-g729a.pcap",
    codec: "G729",
    tshark_opts: &[],
    wav_rate: 8000,
    min_correlation: 0.9,
    bit_exact: false,
};
const OPUS: Case = Case {
    capture: "rtp-pcap/examples/sip-rtp-opus.pcap",
    codec: "opus",
    tshark_opts: &[],
    wav_rate: 16_000,
    min_correlation: 0.9,
    bit_exact: false,
};
const OPUS_ORPHAN: Case = Case {
    capture: "asterisk-testsuite/tests/codecs/opus/fec/16_bit_48khz_60_fec_rtp.pcapng",
    codec: "opus",
    tshark_opts: &["-o", "rtp.heuristic_rtp:TRUE"],
    wav_rate: 16_000,
    min_correlation: 0.9,
    bit_exact: false,
};

#[test]
fn g722_call_is_decoded_at_16_khz() {
    check(&G722);
}

#[test]
fn g729a_call_is_decoded_at_8_khz() {
    check(&G729);
}

#[test]
fn opus_call_is_decoded_at_16_khz() {
    check(&OPUS);
}

#[test]
fn orphan_opus_stream_is_recognised_and_decoded() {
    check(&OPUS_ORPHAN);
}

/// A codec we cannot decode (BV32, both directions) stays in `call.pcap` only: its streams say
/// not decoded and why, and no `audio.wav` is written for them.
#[test]
fn unsupported_codec_is_kept_in_pcap_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = capture("snort3_demo/tests/inspectors/sip/SIP_Eyebeam2Eyebeam_Video_Audio.pcap");
    let (rec, m) = record_one(&file, &dir.path().join("out"));
    let audio: Vec<_> = m.streams.iter().filter(|s| s.media == "audio").collect();
    assert_eq!(audio.len(), 2, "{:?}", m.streams);
    for s in audio {
        assert_eq!(s.codec, "BV32");
        assert!(!s.decoded);
        assert_eq!(
            s.not_decoded.as_deref(),
            Some("codec BV32 is not supported")
        );
        assert!(s.packets > 1000);
    }
    assert!(m.file("audio.wav").is_none() && !rec.join("audio.wav").exists());
    assert!(m.file("call.pcap").is_some_and(|f| f.size > 0));
}

fn check(case: &Case) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = capture(case.capture);
    let out = dir.path().join("out");
    let (rec, m) = record_one(&file, &out);
    let name = case.capture;

    // The manifest: one stream of the codec, decoded.
    assert_eq!(m.streams.len(), 1, "{name}: {:?}", m.streams);
    let s = &m.streams[0];
    assert!(s.codec.eq_ignore_ascii_case(case.codec), "{name}: {s:?}");
    assert!(s.decoded, "{name}: not decoded: {:?}", s.not_decoded);
    assert_eq!(s.not_decoded, None);
    assert!(m.file("audio.wav").is_some(), "{name}: no audio.wav entry");

    // The WAV: the call's length at the expected rate, stereo 16-bit.
    let (rate, left, right) = read_wav(&rec.join("audio.wav"));
    assert_eq!(rate, case.wav_rate, "{name}: WAV rate");
    let want_frames = ((m.end_ns - m.start_ns) as i128 * i128::from(rate) / 1_000_000_000) as usize;
    assert_eq!(left.len(), want_frames, "{name}: WAV length");
    let (ours, other) = match s.direction {
        StreamDirection::CalleeToCaller => (&right, &left),
        _ => (&left, &right),
    };
    assert!(
        other.iter().all(|&x| x == 0),
        "{name}: other channel not silent"
    );
    let rms = energy(ours).sqrt();
    assert!(
        rms > 100.0,
        "{name}: decoded channel is near silence (rms {rms:.1})"
    );

    // The reference: tshark's payloads decoded by ffmpeg at the WAV's rate.
    let payloads = rtp_payloads(&file, case.tshark_opts);
    assert_eq!(
        payloads.len() as u64,
        s.packets,
        "{name}: tshark's RTP packets"
    );
    let reference = ffmpeg_decode(case, &payloads, rate, dir.path());
    let offset = ((s.first_ns - m.start_ns) as i128 * i128::from(rate) / 1_000_000_000) as i64;
    let (corr, lag) = best_correlation(ours, &reference, offset, rate);
    eprintln!(
        "{name}: rms {rms:.0}, correlation {corr:.4} at lag {lag} (ours {} samples, reference {})",
        ours.len(),
        reference.len()
    );
    assert!(
        corr >= case.min_correlation,
        "{name}: correlation with ffmpeg's decode {corr:.4} < {}",
        case.min_correlation
    );
    if case.bit_exact {
        let at = (offset + lag) as usize;
        let ours = &ours[at..(at + reference.len()).min(ours.len())];
        let differ = ours.iter().zip(&reference).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{name}: samples differing from ffmpeg's decode");
        assert!(
            ours.len() + rate as usize / 10 >= reference.len(),
            "{name}: audio cut short"
        );
    }
}

/// Records a capture and returns the one recording's folder and manifest.
fn record_one(file: &Path, out: &Path) -> (PathBuf, Manifest) {
    let recs = record_ok(&[file], out);
    assert_eq!(recs.len(), 1, "{}: recordings {recs:?}", file.display());
    recs.into_iter().next().expect("one recording")
}

/// (rate, left, right) of a 16-bit stereo PCM WAV with the 44-byte header the recorder writes.
fn read_wav(path: &Path) -> (u32, Vec<i16>, Vec<i16>) {
    let b = std::fs::read(path).expect("read wav");
    assert!(
        b.len() >= 44 && &b[0..4] == b"RIFF" && &b[8..12] == b"WAVE",
        "not a WAV"
    );
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    assert_eq!(u16_at(20), 1, "PCM");
    assert_eq!(u16_at(22), 2, "stereo");
    assert_eq!(u16_at(34), 16, "16-bit");
    assert_eq!(u32_at(40) as usize, b.len() - 44, "data size");
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for f in b[44..].chunks_exact(4) {
        l.push(i16::from_le_bytes([f[0], f[1]]));
        r.push(i16::from_le_bytes([f[2], f[3]]));
    }
    (u32_at(24), l, r)
}

/// Every RTP payload of the capture, in order, as tshark dissects it (version 2 only, not
/// those quoted in ICMP).
fn rtp_payloads(file: &Path, opts: &[&str]) -> Vec<Vec<u8>> {
    let f = file.to_string_lossy();
    let mut args = vec!["-r", &f];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[
        "-Y",
        "rtp.version == 2 && !icmp",
        "-T",
        "fields",
        "-e",
        "rtp.payload",
    ]);
    tshark(&args)
        .lines()
        .map(|l| {
            let hex: String = l.chars().filter(char::is_ascii_hexdigit).collect();
            hex::decode(hex).expect("tshark payload hex")
        })
        .collect()
}

/// Decodes the payloads with ffmpeg into mono samples at `rate`.
fn ffmpeg_decode(case: &Case, payloads: &[Vec<u8>], rate: u32, dir: &Path) -> Vec<i16> {
    let ffmpeg = tool("ffmpeg");
    let (input, format): (PathBuf, Option<&str>) = match case.codec {
        "G722" => (raw(dir, "in.g722", payloads), Some("g722")),
        "G729" => (raw(dir, "in.g729", payloads), Some("g729")),
        _ => {
            let p = dir.join("in.opus");
            std::fs::write(&p, ogg_opus(payloads)).expect("write ogg");
            (p, None)
        }
    };
    let out = dir.join("ref.raw");
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    cmd.arg("-i")
        .arg(&input)
        .args(["-f", "s16le", "-ac", "1", "-ar", &rate.to_string()])
        .arg(&out);
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}"));
    assert!(
        o.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(&out)
        .expect("ffmpeg output")
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn raw(dir: &Path, name: &str, payloads: &[Vec<u8>]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, payloads.concat()).expect("write raw");
    p
}

/// An Ogg Opus file (RFC 7845) holding the packets, one per page, mono, no pre-skip.
fn ogg_opus(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(1); // channels
    head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // gain
    head.push(0); // mapping family
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&4u32.to_le_bytes());
    tags.extend_from_slice(b"test");
    tags.extend_from_slice(&0u32.to_le_bytes());
    let mut out = Vec::new();
    ogg_page(&mut out, 0x02, 0, 0, &head);
    ogg_page(&mut out, 0, 0, 1, &tags);
    let mut granule = 0u64;
    for (i, p) in packets.iter().enumerate() {
        granule += u64::from(tapfleet_edge::rtp::codec::opus_samples(p).expect("Opus TOC"));
        let flags = if i + 1 == packets.len() { 0x04 } else { 0 };
        ogg_page(&mut out, flags, granule, i as u32 + 2, p);
    }
    out
}

fn ogg_page(out: &mut Vec<u8>, flags: u8, granule: u64, seq: u32, packet: &[u8]) {
    let start = out.len();
    out.extend_from_slice(b"OggS");
    out.push(0);
    out.push(flags);
    out.extend_from_slice(&granule.to_le_bytes());
    out.extend_from_slice(&0x7466_u32.to_le_bytes()); // serial
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled below
    let lacing = packet.len() / 255 + 1;
    assert!(lacing <= 255, "packet too long for one page");
    out.push(lacing as u8);
    out.extend(std::iter::repeat_n(255u8, packet.len() / 255));
    out.push((packet.len() % 255) as u8);
    out.extend_from_slice(packet);
    // Ogg's CRC-32: polynomial 0x04c11db7, not reflected, zero start, no final xor.
    let mut crc = 0u32;
    for &b in &out[start..] {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
}

fn energy(x: &[i16]) -> f64 {
    x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64
}

/// The best normalised correlation of `reference[k]` with `ours[offset + lag + k]` over lags
/// within 0.1 s, on the loudest second of the reference; returns it and its lag.
fn best_correlation(ours: &[i16], reference: &[i16], offset: i64, rate: u32) -> (f64, i64) {
    let win = rate as usize;
    assert!(reference.len() > 2 * win, "reference too short");
    // The loudest one-second window of the reference (steps of 0.1 s).
    let start = (0..reference.len() - win)
        .step_by(win / 10)
        .max_by(|&a, &b| energy(&reference[a..a + win]).total_cmp(&energy(&reference[b..b + win])))
        .unwrap_or(0);
    let r = &reference[start..start + win];
    let rr: f64 = r.iter().map(|&v| f64::from(v).powi(2)).sum();
    let reach = i64::from(rate / 10);
    let mut best = (f64::MIN, 0);
    for lag in -reach..=reach {
        let o = offset + lag + start as i64;
        if o < 0 || o as usize + win > ours.len() {
            continue;
        }
        let x = &ours[o as usize..o as usize + win];
        let (mut xr, mut xx) = (0.0, 0.0);
        for (&a, &b) in x.iter().zip(r) {
            xr += f64::from(a) * f64::from(b);
            xx += f64::from(a) * f64::from(a);
        }
        let c = xr / (xx * rr).sqrt().max(1.0);
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}
