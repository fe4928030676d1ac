//! Behaviour of the library and the binary without tshark: byte-for-byte determinism, the truth
//! file, time-sorted streaming output at 1,000 concurrent calls, and the CLI.

use std::process::Command;
use std::time::Instant;

use tapfleet_callgen::{
    CodecChoice, GenError, GenOptions, Truth, default_truth_path, generate, generate_to_file,
};

/// (timestamp ns, captured length) of every record of a little-endian classic pcap.
fn records(pcap: &[u8]) -> Vec<(u64, usize)> {
    let u32_at = |i: usize| -> u32 {
        let b = pcap
            .get(i..i + 4)
            .unwrap_or_else(|| panic!("truncated at {i}"));
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    };
    let nanos = match u32_at(0) {
        0xA1B2_C3D4 => false,
        0xA1B2_3C4D => true,
        m => panic!("bad magic {m:#x}"),
    };
    assert_eq!(u32_at(20), 1, "link type Ethernet");
    let mut out = Vec::new();
    let mut i = 24;
    while i < pcap.len() {
        let frac = u64::from(u32_at(i + 4));
        let ts = u64::from(u32_at(i)) * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        let len = u32_at(i + 8) as usize;
        assert_eq!(u32_at(i + 12) as usize, len);
        out.push((ts, len));
        i += 16 + len;
    }
    assert_eq!(i, pcap.len());
    out
}

fn run(opts: &GenOptions) -> (Vec<u8>, Truth) {
    let mut out = Vec::new();
    let truth = generate(opts, &mut out).unwrap_or_else(|e| panic!("generate: {e}"));
    (out, truth)
}

#[test]
fn same_seed_gives_same_bytes_and_other_seed_differs() {
    let opts = GenOptions {
        calls: 8,
        concurrency: 3,
        duration_s: 1.0,
        duration_jitter: 0.5,
        codec: CodecChoice::Mixed,
        loss: 0.05,
        jitter_ms: 40.0,
        seed: 99,
        ring_ms: 300,
        ..Default::default()
    };
    let (a, ta) = run(&opts);
    let (b, tb) = run(&opts);
    assert_eq!(a, b, "same options, same bytes");
    assert_eq!(ta, tb);
    let (c, _) = run(&GenOptions { seed: 100, ..opts });
    assert_ne!(a, c);
    assert_eq!(a.len() as u64, ta.totals.file_bytes);
}

#[test]
fn truth_file_is_written_beside_the_capture_and_loads_back() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pcap = dir.path().join("calls.pcap");
    let opts = GenOptions {
        calls: 3,
        duration_s: 0.5,
        loss: 0.1,
        ..Default::default()
    };
    let truth = generate_to_file(&opts, &pcap, None).unwrap_or_else(|e| panic!("{e}"));
    let path = default_truth_path(&pcap);
    assert_eq!(path, dir.path().join("calls.truth.json"));
    let loaded = Truth::from_json(&std::fs::read(&path).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded, truth);
    assert_eq!(loaded.options, opts);
    let bytes = std::fs::read(&pcap).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(records(&bytes).len() as u64, truth.totals.packets);
    for c in &truth.calls {
        assert!(c.caller.number.starts_with("+4930") && c.caller.number.len() == 12);
        assert!(c.callee.number.starts_with("+4940"));
        assert_ne!(c.caller.ip, c.callee.ip);
        assert_eq!(c.sip_packets, 7);
        assert!(c.start_ns < c.answer_ns && c.answer_ns < c.end_ns);
        for s in [&c.caller_to_callee, &c.callee_to_caller] {
            assert_eq!(
                s.packets_in_file + s.dropped_seqs.len() as u64,
                s.packets_sent
            );
        }
    }
}

#[test]
fn a_thousand_concurrent_calls_stream_sorted_and_fast() {
    let opts = GenOptions {
        calls: 1000,
        concurrency: 1000,
        duration_s: 1.0,
        ring_ms: 200,
        jitter_ms: 10.0,
        loss: 0.01,
        codec: CodecChoice::Mixed,
        ..Default::default()
    };
    let started = Instant::now();
    let (bytes, truth) = run(&opts);
    let took = started.elapsed();
    let recs = records(&bytes);
    assert_eq!(recs.len() as u64, truth.totals.packets);
    assert!(recs.windows(2).all(|w| w[0].0 <= w[1].0), "sorted by time");
    assert_eq!(truth.calls.len(), 1000);
    assert_eq!(truth.totals.sip_packets, 7000);
    let calls = truth.calls.iter();
    let mut ids: Vec<&str> = calls.map(|c| c.call_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "distinct Call-IDs");
    let mut ips: Vec<_> = truth.calls.iter().map(|c| c.caller.ip).collect();
    ips.sort_unstable();
    ips.dedup();
    assert_eq!(ips.len(), 1000, "distinct caller addresses");

    // Peak overlap of calls (INVITE..BYE) is about the requested concurrency.
    let mut edges: Vec<(u64, i32)> = truth
        .calls
        .iter()
        .flat_map(|c| [(c.start_ns, 1), (c.end_ns, -1)])
        .collect();
    edges.sort_unstable();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    assert!((700..=1000).contains(&peak), "peak concurrency {peak}");
    eprintln!(
        "1000 calls: {} packets, {} bytes in {:?} (peak {peak} concurrent)",
        truth.totals.packets, truth.totals.file_bytes, took
    );
    assert!(took.as_secs() < 20, "took {took:?}");
}

#[test]
fn invalid_options_are_refused_before_writing() {
    let mut out = Vec::new();
    let err = generate(
        &GenOptions {
            loss: 1.5,
            ..Default::default()
        },
        &mut out,
    );
    assert!(matches!(err, Err(GenError::InvalidOption(_))), "{err:?}");
    assert!(out.is_empty());
}

#[test]
fn cli_writes_capture_truth_and_summary() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pcap = dir.path().join("cli.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_tapfleet-callgen"))
        .args(["--out"])
        .arg(&pcap)
        .args([
            "--calls",
            "5",
            "--concurrency",
            "2",
            "--duration",
            "1",
            "--codec",
            "pcma",
            "--loss",
            "0.01",
            "--jitter-ms",
            "5",
            "--seed",
            "1",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let truth = Truth::from_json(
        &std::fs::read(dir.path().join("cli.truth.json")).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(stdout.contains("calls:   5\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("packets: {} ", truth.totals.packets)),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("bytes:   {} ", truth.totals.file_bytes)));
    assert!(truth.calls.iter().all(|c| c.payload_type == 8));

    let bad = Command::new(env!("CARGO_BIN_EXE_tapfleet-callgen"))
        .args(["--out", "x.pcap", "--codec", "opus"])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("opus"));
}
