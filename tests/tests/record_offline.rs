//! End to end: `tapfleet-edge record` on real captures, checked against tshark. On the sipp
//! capture (5 calls made by two real sipp instances) it must yield exactly 5 recordings, and each
//! `call.pcap` must hold exactly the frames tshark attributes to that call: its SIP messages (by
//! Call-ID) and the RTP/RTCP on the media endpoints its SDP negotiated, with the same timestamps
//! and bytes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use tapfleet_tests::{bin, captures, require_tool, run_ok};

/// (epoch time, frame length) of every frame of `file` matching `filter`, in file order.
fn frames(file: &Path, filter: &str) -> Vec<(String, String)> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args([
        "-Y",
        filter,
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
        "-e",
        "frame.len",
    ]);
    run_ok(cmd)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (t, len) = l.split_once('\t').unwrap_or((l, ""));
            (t.to_owned(), len.to_owned())
        })
        .collect()
}

/// Distinct values of a field over the frames matching `filter`.
fn field_values(file: &Path, filter: &str, field: &str) -> BTreeSet<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args([
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "separator=,",
        "-e",
        field,
    ]);
    run_ok(cmd)
        .lines()
        .flat_map(|l| {
            l.split(',')
                .map(str::trim)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .collect()
}

/// The packet records of a classic pcap file (header + data), to compare bytes exactly.
fn records(file: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(file).expect("read pcap");
    assert!(bytes.len() >= 24, "{} has no pcap header", file.display());
    let le = match &bytes[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        m => panic!("{} is not a classic pcap (magic {m:02x?})", file.display()),
    };
    let u32_at = |o: usize| {
        let b = [bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let caplen = u32_at(off + 8) as usize;
        let end = off + 16 + caplen;
        assert!(end <= bytes.len(), "truncated record in {}", file.display());
        out.push(bytes[off..end].to_vec());
        off = end;
    }
    out
}

#[test]
fn sipp_capture_yields_its_five_calls_with_exactly_their_frames() {
    require_tool("tshark");
    let input = captures().join("sipp/sipp_calls.pcap");
    let out = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(bin("tapfleet-edge"));
    cmd.arg("record").arg(&input).arg("--out").arg(out.path());
    let summary = run_ok(cmd);
    assert!(!summary.is_empty(), "record prints a summary");

    let mut dirs: Vec<_> = std::fs::read_dir(out.path())
        .expect("out dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 5, "one folder per call: {dirs:?}");

    let input_records: BTreeSet<Vec<u8>> = records(&input).into_iter().collect();
    let mut call_ids = BTreeSet::new();
    for dir in &dirs {
        for f in ["call.pcap", "audio.wav", "manifest.json"] {
            assert!(dir.join(f).is_file(), "{} has {f}", dir.display());
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
                .expect("manifest.json is JSON");
        let call_id = manifest["call_id"].as_str().expect("call_id").to_owned();
        assert_eq!(
            manifest["recording_id"].as_str(),
            dir.file_name().and_then(|n| n.to_str()),
            "folder named by recording id"
        );
        call_ids.insert(call_id.clone());

        // What tshark attributes to this call: its SIP frames, and RTP/RTCP on its SDP ports.
        let sip_filter = format!("sip.Call-ID == \"{call_id}\"");
        let ports = field_values(&input, &format!("{sip_filter} && sdp"), "sdp.media.port");
        assert!(!ports.is_empty(), "{call_id}: tshark sees SDP media ports");
        let mut media = Vec::new();
        for p in &ports {
            let p: u32 = p.parse().expect("port");
            media.push(format!("udp.port == {p} || udp.port == {}", p + 1));
        }
        let filter = format!("({sip_filter}) || (!sip && ({}))", media.join(" || "));
        let expected = frames(&input, &filter);
        let got = frames(&dir.join("call.pcap"), "frame");
        assert_eq!(
            got.len(),
            expected.len(),
            "{call_id}: call.pcap frames == tshark's frames of the call ({filter})"
        );
        assert_eq!(
            got, expected,
            "{call_id}: same frames, same times, same order"
        );
        // Byte-identical records (header with timestamps + data) of the input.
        for rec in records(&dir.join("call.pcap")) {
            assert!(
                input_records.contains(&rec),
                "{call_id}: a record not byte-identical to the input"
            );
        }
    }
    let tshark_calls = field_values(&input, "sip.Method == \"INVITE\"", "sip.Call-ID");
    assert_eq!(call_ids, tshark_calls, "the same Call-IDs as tshark");
}

#[test]
fn unreadable_input_is_a_clear_error_and_a_nonzero_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture file at all").expect("write");
    for input in [garbage, dir.path().join("missing.pcap")] {
        let out = Command::new(bin("tapfleet-edge"))
            .arg("record")
            .arg(&input)
            .arg("--out")
            .arg(dir.path().join("out"))
            .output()
            .expect("run");
        assert!(!out.status.success(), "{} must fail", input.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("error"),
            "clear error for {}: {err}",
            input.display()
        );
        assert!(!err.contains("panicked"), "no panic: {err}");
    }
}
