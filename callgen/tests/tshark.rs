//! Checks generated captures with an independent reader, tshark: it must see every SIP dialog and
//! RTP stream of the truth, with the same packet and loss counts, valid checksums, nothing
//! malformed, and the tone of the truth in each stream's decoded audio.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use tapfleet_callgen::{Codec, CodecChoice, GenOptions, Truth, g711, generate_to_file};

const TSHARK: &str = "/usr/bin/tshark";

/// Runs tshark on `file` with `args`, failing loudly when it is missing or fails.
fn tshark(file: &Path, args: &[&str]) -> String {
    assert!(
        Path::new(TSHARK).exists(),
        "{TSHARK} is missing: install it (apt-get install -y tshark); these tests never skip"
    );
    let out = Command::new(TSHARK)
        .arg("-n")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {TSHARK}: {e}"));
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn generate_into(dir: &Path, name: &str, opts: &GenOptions) -> (std::path::PathBuf, Truth) {
    let pcap = dir.join(name);
    let truth = generate_to_file(opts, &pcap, None).unwrap_or_else(|e| panic!("generate: {e}"));
    (pcap, truth)
}

/// One row of `-z rtp,streams`: ssrc -> (src, dst, payload, packets, lost).
#[derive(Debug, PartialEq, Eq)]
struct RtpRow {
    src: String,
    dst: String,
    payload: String,
    packets: u64,
    lost: i64,
}

fn rtp_streams(file: &Path) -> BTreeMap<u32, RtpRow> {
    let text = tshark(file, &["-q", "-z", "rtp,streams"]);
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // start end src sport dst dport ssrc payload pkts lost (pct) ...
        let Some(ssrc) = f.get(6).and_then(|s| s.strip_prefix("0x")) else {
            continue;
        };
        let ssrc = u32::from_str_radix(ssrc, 16).unwrap_or_else(|e| panic!("{line}: {e}"));
        let num = |i: usize| -> i64 {
            f.get(i)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("field {i} of {line}"))
        };
        let row = RtpRow {
            src: format!("{}:{}", f[2], f[3]),
            dst: format!("{}:{}", f[4], f[5]),
            payload: f[7].to_string(),
            packets: num(8) as u64,
            lost: num(9),
        };
        assert!(rows.insert(ssrc, row).is_none(), "duplicate SSRC {ssrc:#x}");
    }
    rows
}

#[test]
fn tshark_sees_every_dialog_and_stream_of_the_truth() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let opts = GenOptions {
        calls: 20,
        concurrency: 6,
        duration_s: 2.0,
        duration_jitter: 0.3,
        codec: CodecChoice::Mixed,
        loss: 0.03,
        jitter_ms: 25.0,
        seed: 7,
        ring_ms: 400,
        ..Default::default()
    };
    let (pcap, truth) = generate_into(dir.path(), "calls.pcap", &opts);
    assert_eq!(truth.calls.len(), 20);
    assert!(truth.totals.rtp_dropped > 0, "3% loss must drop something");
    let codecs: BTreeSet<Codec> = truth.calls.iter().map(|c| c.codec).collect();
    assert_eq!(codecs.len(), 2, "mixed uses both codecs");

    // Every frame, its length, checksums and well-formedness.
    let lens = tshark(&pcap, &["-T", "fields", "-e", "frame.len"]);
    let lens: Vec<u64> = lens.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(lens.len() as u64, truth.totals.packets);
    assert_eq!(lens.iter().sum::<u64>(), truth.totals.frame_bytes);
    assert_eq!(
        std::fs::metadata(&pcap).map(|m| m.len()).ok(),
        Some(truth.totals.file_bytes)
    );
    let bad = tshark(
        &pcap,
        &[
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-Y",
            "ip.checksum.status != 1 || udp.checksum.status != 1 || _ws.malformed \
             || _ws.expert.severity >= error",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    );
    assert_eq!(bad.trim(), "", "frames with bad checksums or malformed");

    // SIP: one INVITE per Call-ID of the truth, every message accounted for, no retransmissions.
    let invites = tshark(
        &pcap,
        &[
            "-Y",
            "sip.Method == \"INVITE\"",
            "-T",
            "fields",
            "-e",
            "sip.Call-ID",
        ],
    );
    let seen: Vec<&str> = invites.lines().collect();
    let want: BTreeSet<&str> = truth.calls.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(seen.len(), want.len());
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), want);
    let stat = tshark(&pcap, &["-q", "-z", "sip,stat"]);
    let sip_total: u64 = truth.calls.iter().map(|c| c.sip_packets).sum();
    assert!(
        stat.contains(&format!("Number of SIP messages: {sip_total}\n")),
        "{stat}"
    );
    assert!(
        stat.contains("Number of resent SIP messages: 0\n"),
        "{stat}"
    );
    assert!(
        stat.contains("SIP 180 Ringing         :    20 Packets"),
        "{stat}"
    );
    assert!(stat.contains("BYE             :    20 Packets"), "{stat}");
    assert_eq!(sip_total, truth.totals.sip_packets);

    // RTP: tshark finds the streams from the SDP (no heuristics), with the truth's counts.
    assert_streams_match(&pcap, &truth);
}

/// tshark's `rtp,streams` lists exactly the truth's streams with the same addresses, payload,
/// packet and loss counts.
fn assert_streams_match(pcap: &Path, truth: &Truth) {
    let rows = rtp_streams(pcap);
    assert_eq!(rows.len(), 2 * truth.calls.len(), "{rows:?}");
    for call in &truth.calls {
        for s in [&call.caller_to_callee, &call.callee_to_caller] {
            let row = rows
                .get(&s.ssrc)
                .unwrap_or_else(|| panic!("stream {:#x} of {} not found", s.ssrc, call.call_id));
            let want = RtpRow {
                src: format!("{}:{}", s.src_ip, s.src_port),
                dst: format!("{}:{}", s.dst_ip, s.dst_port),
                payload: match call.codec {
                    Codec::Pcmu => "g711U".into(),
                    Codec::Pcma => "g711A".into(),
                },
                packets: s.packets_in_file,
                lost: s.dropped_seqs.len() as i64,
            };
            assert_eq!(row, &want, "call {}", call.index);
            assert_eq!(
                s.packets_sent,
                s.packets_in_file + s.dropped_seqs.len() as u64
            );
        }
    }
}

#[test]
fn tshark_follows_a_thousand_concurrent_calls() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let opts = GenOptions {
        calls: 1000,
        concurrency: 1000,
        duration_s: 0.4,
        ring_ms: 200,
        loss: 0.02,
        jitter_ms: 30.0,
        codec: CodecChoice::Mixed,
        seed: 11,
        ..Default::default()
    };
    let (pcap, truth) = generate_into(dir.path(), "many.pcap", &opts);
    let invites = tshark(
        &pcap,
        &[
            "-Y",
            "sip.Method == \"INVITE\"",
            "-T",
            "fields",
            "-e",
            "sip.Call-ID",
        ],
    );
    let seen: BTreeSet<&str> = invites.lines().collect();
    assert_eq!(seen.len(), 1000);
    assert_streams_match(&pcap, &truth);
}

/// Power of `samples` at `hz` (Goertzel), normalised by length.
fn goertzel(samples: &[f64], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s0 = x + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (samples.len() as f64).powi(2)
}

#[test]
fn each_stream_carries_its_truth_tone() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let opts = GenOptions {
        calls: 4,
        concurrency: 4,
        duration_s: 0.5,
        codec: CodecChoice::Mixed,
        seed: 3,
        ring_ms: 200,
        ..Default::default()
    };
    let (pcap, truth) = generate_into(dir.path(), "tones.pcap", &opts);
    let text = tshark(
        &pcap,
        &[
            "-Y",
            "rtp",
            "-T",
            "fields",
            "-e",
            "rtp.ssrc",
            "-e",
            "rtp.payload",
        ],
    );
    let mut audio: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for line in text.lines() {
        let Some((ssrc, hex)) = line.split_once('\t') else {
            continue;
        };
        let ssrc = u32::from_str_radix(ssrc.trim_start_matches("0x"), 16)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let bytes = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(bytes.len(), 160, "20 ms of G.711");
        audio.entry(ssrc).or_default().extend(bytes);
    }
    for call in &truth.calls {
        let up = &call.caller_to_callee;
        let down = &call.callee_to_caller;
        assert_ne!(up.tone_hz, down.tone_hz);
        for (s, other) in [(up, down), (down, up)] {
            let bytes = audio
                .get(&s.ssrc)
                .unwrap_or_else(|| panic!("{:#x}", s.ssrc));
            let pcm: Vec<f64> = bytes
                .iter()
                .map(|&b| {
                    f64::from(match call.codec {
                        Codec::Pcmu => g711::ulaw_to_linear(b),
                        Codec::Pcma => g711::alaw_to_linear(b),
                    })
                })
                .collect();
            let on = goertzel(&pcm, f64::from(s.tone_hz));
            let off = goertzel(&pcm, f64::from(other.tone_hz));
            assert!(on > 1e6, "tone {} Hz power {on}", s.tone_hz);
            assert!(
                on > 1000.0 * off,
                "{} Hz: {on} vs {} Hz: {off}",
                s.tone_hz,
                other.tone_hz
            );
        }
    }
}

#[test]
fn nanosecond_capture_keeps_exact_timestamps() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let opts = GenOptions {
        calls: 2,
        duration_s: 0.2,
        jitter_ms: 3.0,
        nanosecond_timestamps: true,
        ..Default::default()
    };
    let (pcap, truth) = generate_into(dir.path(), "ns.pcap", &opts);
    let text = tshark(&pcap, &["-T", "fields", "-e", "frame.time_epoch"]);
    let times: Vec<&str> = text.lines().collect();
    assert_eq!(times.len() as u64, truth.totals.packets);
    let ns = |s: &str| -> u64 {
        let (sec, frac) = s.split_once('.').unwrap_or_else(|| panic!("{s}"));
        let sec: u64 = sec.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
        let frac: u64 = format!("{frac:0<9}")[..9]
            .parse()
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        sec * 1_000_000_000 + frac
    };
    assert_eq!(ns(times[0]), truth.totals.first_ns);
    assert_eq!(truth.totals.first_ns, truth.calls[0].start_ns);
    assert_eq!(truth.calls[0].start_ns, opts.start_unix_s * 1_000_000_000);
    assert_eq!(ns(times[times.len() - 1]), truth.totals.last_ns);
    let all: Vec<u64> = times.iter().map(|t| ns(t)).collect();
    assert!(
        all.windows(2).all(|w| w[0] <= w[1]),
        "capture sorted by time"
    );
}
