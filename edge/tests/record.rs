//! `tapfleet-edge record` against real captures, checked with tshark: which frames each call.pcap
//! holds (byte for byte), RTP statistics, WAV channels by SIP role, every link type, and clear
//! errors (never panics) on missing, truncated or garbage input.

mod common;
use common::{capture, manifests, record, record_ok, tshark};

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use tapfleet_edge::capture::PcapReader;
use tapfleet_edge::rtp::g711::Law;
use tapfleet_schemas::{RecordingKind, StreamDirection};

/// (frame number, captured length) of the frames matching a display filter.
fn frames(file: &Path, filter: &str) -> Vec<(u64, u64)> {
    let f = file.to_string_lossy();
    tshark(&[
        "-r",
        &f,
        "-Y",
        filter,
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "frame.cap_len",
    ])
    .lines()
    .filter_map(|l| {
        let mut it = l.split('\t');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    })
    .collect()
}

/// The frames tshark attributes to a call: its SIP messages (by Call-ID) and the UDP packets to
/// or from the media endpoints (RTP, and RTP+1 for RTCP) its SDP announced, from its first SIP
/// frame on and, when it has a BYE, until 2 s (the recorder's closing grace) after its last.
fn tshark_call_frames(file: &Path, call_id: &str) -> BTreeSet<u64> {
    let f = file.to_string_lossy();
    let sip_filter = format!("sip.Call-ID == \"{call_id}\"");
    let sip: Vec<u64> = frames(file, &sip_filter).into_iter().map(|x| x.0).collect();
    assert!(!sip.is_empty(), "tshark finds no SIP for {call_id}");
    let first = sip[0];
    let bye_times = tshark(&[
        "-r",
        &f,
        "-Y",
        &format!("{sip_filter} && sip.CSeq.method == \"BYE\""),
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
    ]);
    let until = match bye_times
        .lines()
        .filter_map(|l| l.parse::<f64>().ok())
        .reduce(f64::max)
    {
        Some(t) => format!(" && frame.time_epoch <= {:.6}", t + 2.0),
        None => String::new(),
    };
    let sdp = tshark(&[
        "-r",
        &f,
        "-Y",
        &format!("{sip_filter} && sdp"),
        "-T",
        "fields",
        "-e",
        "sdp.connection_info.address",
        "-e",
        "sdp.media.port",
    ]);
    let mut ends = Vec::new();
    for line in sdp.lines() {
        let mut it = line.split('\t');
        let (Some(addr), Some(ports)) = (it.next(), it.next()) else {
            continue;
        };
        let addr = addr.split(',').next().unwrap_or(addr);
        for port in ports.split(',').filter_map(|p| p.parse::<u32>().ok()) {
            if port == 0 {
                continue;
            }
            let ipf = if addr.contains(':') { "ipv6" } else { "ip" };
            for p in [port, port + 1] {
                ends.push(format!(
                    "({ipf}.dst == {addr} && udp.dstport == {p}) || ({ipf}.src == {addr} && udp.srcport == {p})"
                ));
            }
        }
    }
    let mut set: BTreeSet<u64> = sip.into_iter().collect();
    if !ends.is_empty() {
        let media = format!(
            "udp && !sip && frame.number >= {first}{until} && ({})",
            ends.join(" || ")
        );
        set.extend(frames(file, &media).into_iter().map(|x| x.0));
    }
    set
}

/// The bytes a call.pcap must hold when recorded from a classic pcap: its global header and the
/// records of `wanted` frames, byte for byte.
fn expected_call_pcap(input: &Path, wanted: &BTreeSet<u64>) -> Vec<u8> {
    let bytes = std::fs::read(input).expect("read input");
    let mut out = bytes[..24].to_vec();
    let mut r = PcapReader::new(&bytes[..]).expect("input parses");
    let mut n = 0u64;
    while let Some(p) = r.next_raw().expect("input reads") {
        n += 1;
        if wanted.contains(&n) {
            let c = p.classic.expect("classic input");
            out.extend_from_slice(c.record_header);
            out.extend_from_slice(p.data);
        }
    }
    out
}

fn call_ids(file: &Path) -> BTreeSet<String> {
    let f = file.to_string_lossy();
    tshark(&[
        "-r",
        &f,
        "-Y",
        "sip.Method == \"INVITE\"",
        "-T",
        "fields",
        "-e",
        "sip.Call-ID",
    ])
    .lines()
    .map(str::to_string)
    .filter(|l| !l.is_empty())
    .collect()
}

#[test]
fn sipp_calls_each_hold_exactly_the_frames_tshark_attributes() {
    let input = capture("sipp/sipp_calls.pcap");
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = record_ok(&[&input], dir.path());
    assert_eq!(recs.len(), 5, "sipp_calls.pcap holds 5 calls");
    let ids: BTreeSet<String> = recs.iter().map(|(_, m)| m.call_id.clone()).collect();
    assert_eq!(ids, call_ids(&input));
    for (path, m) in &recs {
        let want = tshark_call_frames(&input, &m.call_id);
        let call_pcap = path.join("call.pcap");
        let got = frames(&call_pcap, "frame");
        assert_eq!(got.len(), want.len(), "{}: frame count", m.call_id);
        assert_eq!(m.packets as usize, want.len());
        let all: HashMap<u64, u64> = frames(&input, "frame").into_iter().collect();
        let want_bytes: u64 = want.iter().map(|n| all[n]).sum();
        let got_bytes: u64 = got.iter().map(|x| x.1).sum();
        assert_eq!(got_bytes, want_bytes, "{}: captured bytes", m.call_id);
        // Byte-identical records, in capture order.
        let disk = std::fs::read(&call_pcap).expect("read call.pcap");
        assert!(
            disk == expected_call_pcap(&input, &want),
            "{}: call.pcap bytes",
            m.call_id
        );
        // The manifest's file entry matches the file.
        let fe = m.file("call.pcap").expect("call.pcap listed");
        assert_eq!(fe.size, disk.len() as u64);
        assert_eq!(fe.sha256.to_hex(), sha256_hex(&disk));
        assert_eq!(m.end_reason, tapfleet_schemas::EndReason::Bye);
        assert_eq!(m.sip_status, Some(200));
        assert_eq!(m.caller.number, "sipp");
        assert_eq!(m.callee.number, "1000");
        assert!(m.complete, "{:?}", m.incomplete);
        assert!(tapfleet_schemas::is_recording_id(&m.recording_id));
    }
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// (src, dst, ssrc) -> (packets, lost) from `tshark -q -z rtp,streams`.
fn tshark_rtp_streams(file: &Path) -> HashMap<(String, String, u32), (u64, i64)> {
    let m = common::tshark_rtp_streams(file, false);
    assert!(
        !m.is_empty(),
        "tshark found no RTP streams in {}",
        file.display()
    );
    m.into_iter().collect()
}

fn assert_rtp_stats_match(rel: &str) {
    let input = capture(rel);
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = record_ok(&[&input], dir.path());
    // Streams to or from an endpoint that SIP signalled (tshark also follows SDP carried by
    // other protocols, e.g. MGCP, which the recorder does not).
    let f = input.to_string_lossy();
    let sdp = tshark(&[
        "-r",
        &f,
        "-Y",
        "sip && sdp",
        "-T",
        "fields",
        "-e",
        "sdp.connection_info.address",
        "-e",
        "sdp.media.port",
    ]);
    let mut signalled = BTreeSet::new();
    for line in sdp.lines() {
        let mut it = line.split('\t');
        let (Some(addr), Some(ports)) = (it.next(), it.next()) else {
            continue;
        };
        let addr = addr.split(',').next().unwrap_or(addr);
        for port in ports.split(',') {
            signalled.insert(if addr.contains(':') {
                format!("[{addr}]:{port}")
            } else {
                format!("{addr}:{port}")
            });
        }
    }
    let want: HashMap<_, _> = tshark_rtp_streams(&input)
        .into_iter()
        .filter(|((src, dst, _), _)| signalled.contains(src) || signalled.contains(dst))
        .collect();
    let mut got = HashMap::new();
    for (_, m) in recs.iter().filter(|(_, m)| m.kind == RecordingKind::Call) {
        for s in &m.streams {
            let prev = got.insert((s.src.clone(), s.dst.clone(), s.ssrc), (s.packets, s.lost));
            assert!(
                prev.is_none(),
                "stream {} -> {} {:#x} in two calls",
                s.src,
                s.dst,
                s.ssrc
            );
        }
    }
    assert_eq!(got, want, "{rel}: per-stream packets and lost");
}

#[test]
fn rtp_stats_agree_with_tshark_on_sipp_calls() {
    assert_rtp_stats_match("sipp/sipp_calls.pcap");
}

#[test]
fn rtp_stats_agree_with_tshark_on_nb6_telephone() {
    assert_rtp_stats_match("rtp-pcap/examples/nb6-telephone.pcap");
}

fn wav_channels(path: &Path) -> (Vec<i16>, Vec<i16>) {
    let b = std::fs::read(path).expect("read wav");
    assert_eq!(&b[0..4], b"RIFF");
    assert_eq!(&b[8..12], b"WAVE");
    assert_eq!(u16::from_le_bytes([b[22], b[23]]), 2, "stereo");
    assert_eq!(u32::from_le_bytes([b[24], b[25], b[26], b[27]]), 8000);
    assert_eq!(u16::from_le_bytes([b[34], b[35]]), 16);
    let data_len = u32::from_le_bytes([b[40], b[41], b[42], b[43]]) as usize;
    assert_eq!(data_len + 44, b.len());
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for f in b[44..].chunks_exact(4) {
        l.push(i16::from_le_bytes([f[0], f[1]]));
        r.push(i16::from_le_bytes([f[2], f[3]]));
    }
    (l, r)
}

fn energy(s: &[i16]) -> f64 {
    s.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / s.len().max(1) as f64
}

#[test]
fn wav_has_caller_left_and_callee_right() {
    let input = capture("sipp/sipp_calls.pcap");
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = record_ok(&[&input], dir.path());
    let f = input.to_string_lossy();
    for (path, m) in &recs {
        let (l, r) = wav_channels(&path.join("audio.wav"));
        let call_frames = ((m.end_ns - m.start_ns) as i128 * 8000 / 1_000_000_000) as usize;
        assert_eq!(
            l.len(),
            call_frames,
            "{}: WAV length = call length",
            m.call_id
        );
        let (el, er) = (energy(&l), energy(&r));
        assert!(
            el > 1000.0 && er > 1000.0,
            "{}: both channels carry audio ({el}, {er})",
            m.call_id
        );
        assert!(l != r, "channels differ");
        // The caller's first audible packet, decoded, sits in the LEFT channel at its arrival;
        // the callee's in the RIGHT.
        for (dir_want, chan, other) in [
            (StreamDirection::CallerToCallee, &l, &r),
            (StreamDirection::CalleeToCaller, &r, &l),
        ] {
            let s = m
                .streams
                .iter()
                .find(|s| s.direction == dir_want && s.decoded)
                .expect("a decoded stream each way");
            let law = Law::from_encoding(&s.codec).expect("G.711");
            let (ip, port) = s.dst.rsplit_once(':').expect("addr");
            let sport = s.src.rsplit_once(':').expect("addr").1;
            let filter = format!(
                "rtp.ssrc == {:#x} && ip.dst == {ip} && udp.dstport == {port} && udp.srcport == {sport}",
                s.ssrc
            );
            let out = tshark(&[
                "-r",
                &f,
                "-d",
                &format!("udp.port=={port},rtp"),
                "-Y",
                &filter,
                "-T",
                "fields",
                "-e",
                "frame.time_epoch",
                "-e",
                "rtp.payload",
            ]);
            // The first packet that is not silence; placed by RTP timestamp from the stream's
            // first packet, so within a packet time (30 ms = 240 frames) of its arrival.
            let (t, pcm) = out
                .lines()
                .filter_map(|line| {
                    let (t, payload) = line.split_once('\t')?;
                    let payload = hex::decode(payload.replace(':', "")).ok()?;
                    let pcm: Vec<i16> = payload.iter().map(|&b| law.decode(b)).collect();
                    (energy(&pcm) > 10_000.0).then(|| (t.to_string(), pcm))
                })
                .next()
                .expect("an audible packet");
            let t_ns = (t.parse::<f64>().expect("time") * 1e9) as i64;
            let pos = ((t_ns - m.start_ns) as i128 * 8000 / 1_000_000_000) as usize;
            let found = (pos.saturating_sub(240)..pos + 240)
                .any(|p| chan.get(p..p + pcm.len()) == Some(&pcm[..]));
            assert!(
                found,
                "{}: {:?} audio at frame {pos} in its channel",
                m.call_id, dir_want
            );
            let in_other = (pos.saturating_sub(240)..pos + 240)
                .any(|p| other.get(p..p + pcm.len()) == Some(&pcm[..]));
            assert!(
                !in_other,
                "{}: {:?} audio not in the other channel",
                m.call_id, dir_want
            );
        }
    }
}

#[test]
fn pcapng_input_records_the_same_calls_and_packets() {
    let input = capture("sipp/sipp_calls.pcap");
    let tmp = tempfile::tempdir().expect("tempdir");
    let ng = tmp.path().join("sipp_calls.pcapng");
    let st = Command::new("/usr/bin/editcap")
        .args(["-F", "pcapng"])
        .arg(&input)
        .arg(&ng)
        .status()
        .expect("editcap (from the tshark package) must be installed");
    assert!(st.success(), "editcap failed");
    let a = record_ok(&[&input], &tmp.path().join("a"));
    let b = record_ok(&[&ng], &tmp.path().join("b"));
    assert_eq!(a.len(), 5);
    assert_eq!(b.len(), 5);
    for ((pa, ma), (pb, mb)) in a.iter().zip(&b) {
        assert_eq!(
            ma.recording_id, mb.recording_id,
            "ids are stable across formats"
        );
        assert_eq!(ma.packets, mb.packets);
        assert_eq!(ma.streams, mb.streams);
        // Same frames and timestamps (microseconds kept exactly).
        let fields = |p: &Path| {
            tshark(&[
                "-r",
                &p.join("call.pcap").to_string_lossy(),
                "-T",
                "fields",
                "-e",
                "frame.time_epoch",
                "-e",
                "frame.len",
                "-e",
                "frame.cap_len",
            ])
        };
        assert_eq!(fields(pa), fields(pb));
        // An equivalent pcap: same records after the global header.
        let (xa, xb) = (
            std::fs::read(pa.join("call.pcap")).expect("read"),
            std::fs::read(pb.join("call.pcap")).expect("read"),
        );
        assert_eq!(xa[24..], xb[24..]);
        assert_eq!(xa.get(20..24), xb.get(20..24), "link type");
    }
}

/// RTP without any SIP (VLAN-tagged PT 111, H.263, a 5-tuple carrying two SSRCs and events, and
/// its reverse) is recorded as orphan-stream recordings: every stream tshark's heuristic RTP
/// dissector finds is in one, with the same packet and loss counts, and both directions of a
/// 5-tuple share a recording.
#[test]
fn rtp_without_sip_is_recorded_as_orphan_streams() {
    let input = capture("nDPI/tests/cfgs/default/pcap/rtp.pcapng");
    let f = input.to_string_lossy().into_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = record_ok(&[&input], dir.path());
    assert!(
        recs.iter()
            .all(|(_, m)| m.kind == RecordingKind::OrphanStream)
    );
    assert_eq!(recs.len(), 3, "3 address pairs carry RTP");
    let want: HashMap<_, _> = common::tshark_rtp_streams(Path::new(&f), true)
        .into_iter()
        .collect();
    assert_eq!(want.len(), 5, "INDEX.tsv: 5 heuristic RTP streams");
    let mut got = HashMap::new();
    for (path, m) in &recs {
        let n: u64 = m.streams.iter().map(|s| s.packets).sum();
        assert_eq!(m.packets, n, "call.pcap holds exactly the stream's packets");
        assert_eq!(frames(&path.join("call.pcap"), "frame").len() as u64, n);
        for s in &m.streams {
            got.insert((s.src.clone(), s.dst.clone(), s.ssrc), (s.packets, s.lost));
        }
    }
    assert_eq!(got, want);
}

#[test]
fn linux_sll_capture_with_sip_over_tcp() {
    let input = capture("sip-capture/extract/testdata/sip-tcp.pcap");
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = record_ok(&[&input], dir.path());
    assert_eq!(recs.len(), 5);
    for (path, m) in &recs {
        let want = tshark_call_frames(&input, &m.call_id);
        let got = frames(&path.join("call.pcap"), "frame");
        assert_eq!(got.len(), want.len(), "{}", m.call_id);
        let disk = std::fs::read(path.join("call.pcap")).expect("read");
        assert_eq!(
            u32::from_le_bytes([disk[20], disk[21], disk[22], disk[23]]),
            113
        );
        assert!(disk == expected_call_pcap(&input, &want));
        assert!(!path.join("audio.wav").exists(), "no media, no WAV");
    }
}

#[test]
fn null_loopback_capture_with_video() {
    let input = capture("rtp-pcap/examples/h263-over-rtp.pcap");
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = record_ok(&[&input], dir.path());
    assert_eq!(recs.len(), 1);
    let (path, m) = &recs[0];
    let want = tshark_call_frames(&input, &m.call_id);
    assert_eq!(want.len(), 49);
    assert_eq!(m.packets, 49);
    assert!(
        std::fs::read(path.join("call.pcap")).expect("read") == expected_call_pcap(&input, &want)
    );
    assert_eq!(m.streams.len(), 1);
    let s = &m.streams[0];
    assert_eq!((s.packets, s.lost), (45, 0));
    assert_eq!(s.media, "video");
    assert_eq!(s.codec, "H263");
    assert_eq!(s.clock_rate, 90000);
    assert!(!path.join("audio.wav").exists(), "video only: no WAV");
    assert!(m.file("audio.wav").is_none());
    assert_eq!(m.end_reason, tapfleet_schemas::EndReason::CaptureEnd);
    assert!(!m.complete);
}

#[test]
fn vlan_tagged_capture_records_like_the_untagged_one() {
    let plain = capture("rtp-pcap/examples/nb6-telephone.pcap");
    let vlan = capture("derived/nb6-telephone_vlan100.pcap");
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = record_ok(&[&plain], &tmp.path().join("a"));
    let b = record_ok(&[&vlan], &tmp.path().join("b"));
    assert_eq!(a.len(), 1);
    assert_eq!(b.len(), 1);
    assert_eq!(a[0].1.packets, b[0].1.packets);
    assert_eq!(a[0].1.streams, b[0].1.streams);
    let want = tshark_call_frames(&vlan, &b[0].1.call_id);
    assert_eq!(b[0].1.packets as usize, want.len());
}

#[test]
fn bad_input_fails_clearly_without_panicking() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    // Missing file.
    let o = record(&[&tmp.path().join("nope.pcap")], &out);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.pcap"));
    // Not a capture.
    let junk = tmp.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file at all").expect("write");
    let o = record(&[&junk], &out);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a pcap or pcapng"));
    // Truncated in the middle of a record: the calls before the cut are still recorded.
    let input = std::fs::read(capture("sipp/sipp_calls.pcap")).expect("read");
    for cut in [10, 30, input.len() / 2 + 7, input.len() - 1] {
        let t = tmp.path().join(format!("cut{cut}.pcap"));
        std::fs::write(&t, &input[..cut]).expect("write");
        let dir = tmp.path().join(format!("out{cut}"));
        let o = record(&[&t], &dir);
        assert!(!o.status.success(), "cut at {cut} must fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("truncated"), "cut at {cut}: {err}");
    }
    let recs = manifests(&tmp.path().join(format!("out{}", input.len() / 2 + 7)));
    assert!(recs.len() >= 2, "calls before the cut are finished");
    // Garbage after a valid header: a huge record length.
    let mut g = input[..24].to_vec();
    g.extend_from_slice(&[0xff; 16]);
    let gp = tmp.path().join("garbage.pcap");
    std::fs::write(&gp, &g).expect("write");
    let o = record(&[&gp], &out);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("exceeds"));
}

#[test]
fn rtp_stats_agree_with_tshark_on_late_offer_with_duplicated_frames() {
    assert_rtp_stats_match("rtp-pcap/examples/SIP_DTMF2.pcap");
}

#[test]
fn rtp_stats_agree_with_tshark_on_g711_call_with_rtcp() {
    assert_rtp_stats_match("jnetpcap-legacy/tests/test-sip-rtp-g711.pcap");
}

/// `frames` plus the IP fragments tshark (two passes) reassembles into them.
fn with_fragments(file: &Path, frames: &BTreeSet<u64>) -> BTreeSet<u64> {
    let f = file.to_string_lossy();
    let mut out = frames.clone();
    for line in tshark(&[
        "-2",
        "-r",
        &f,
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "ip.reassembled_in",
        "-e",
        "ipv6.reassembled.in",
    ])
    .lines()
    {
        let mut it = line.split('\t');
        let Some(n) = it.next().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        if it
            .filter_map(|x| x.parse::<u64>().ok())
            .any(|r| frames.contains(&r))
        {
            out.insert(n);
        }
    }
    out
}

/// SIP INVITEs split into IP fragments (IPv6 on Linux SLL, IPv4 on Ethernet) are reassembled:
/// the calls tshark sees are recorded, and each call.pcap holds, byte for byte, the frames tshark
/// attributes to the call plus every original fragment of its reassembled datagrams.
#[test]
fn fragmented_invites_are_reassembled_and_their_fragments_recorded() {
    for (rel, calls) in [
        ("sngrep/tests/ipv6frag.pcap", 1),
        ("sip-capture/collect/testdata/sip-i.pcap", 1),
    ] {
        let input = capture(rel);
        let dir = tempfile::tempdir().expect("tempdir");
        // ipv6frag.pcap has no RTP and its BYE comes 160 s after the ACK: a longer RTP timeout
        // keeps the BYE in the call, as tshark counts it.
        let recs = record_long_rtp_timeout(&input, dir.path());
        assert_eq!(recs.len(), calls, "{rel}");
        let ids: BTreeSet<String> = recs.iter().map(|(_, m)| m.call_id.clone()).collect();
        assert_eq!(ids, call_ids(&input), "{rel}");
        for (path, m) in &recs {
            let sip = tshark_call_frames(&input, &m.call_id);
            let want = with_fragments(&input, &sip);
            assert!(want.len() > sip.len(), "{rel}: tshark shows fragments");
            let disk = std::fs::read(path.join("call.pcap")).expect("read");
            let got: Vec<u64> = frames(&path.join("call.pcap"), "frame")
                .into_iter()
                .map(|x| x.0)
                .collect();
            assert_eq!(got.len(), want.len(), "{rel}: {want:?}");
            assert!(
                disk == expected_call_pcap(&input, &want),
                "{rel}: call.pcap differs from frames {want:?}"
            );
        }
    }
    // A lone fragment never completes: no call, no error.
    let input = capture("sip-capture/extract/testdata/sip-frag.pcap");
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(record_ok(&[&input], dir.path()).is_empty());
}

/// SIP over TCP on port 6060 with messages split across segments (234 PDUs tshark reassembles)
/// and several per segment: every INVITE dialog tshark finds (told the port is SIP) is recorded,
/// and each call.pcap holds, byte for byte, the frames of its SIP messages plus every segment
/// tshark reassembles into them. The capture has no RTP and BYEs come up to 65 s after the
/// answer, so the RTP timeout is raised to keep them in their calls, as tshark does.
#[test]
fn sip_over_tcp_split_across_segments_yields_every_call() {
    let input = capture("heplify/example/pcap/sip_ipv4_tcp_fragmented.pcap");
    let f = input.to_string_lossy().into_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = record_long_rtp_timeout(&input, dir.path());
    // frame -> (Call-IDs, frames it is reassembled into), in two passes.
    let mut call_frames: HashMap<String, BTreeSet<u64>> = HashMap::new();
    let mut into: Vec<(u64, Vec<u64>)> = Vec::new();
    for line in tshark(&[
        "-2",
        "-r",
        &f,
        "-d",
        "tcp.port==6060,sip",
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "sip.Call-ID",
        "-e",
        "tcp.reassembled_in",
    ])
    .lines()
    {
        let mut it = line.split('\t');
        let Some(n) = it.next().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        for cid in it.next().unwrap_or("").split(',').filter(|c| !c.is_empty()) {
            call_frames.entry(cid.to_string()).or_default().insert(n);
        }
        let r: Vec<u64> = it
            .next()
            .unwrap_or("")
            .split(',')
            .filter_map(|x| x.parse().ok())
            .collect();
        if !r.is_empty() {
            into.push((n, r));
        }
    }
    let want: BTreeSet<String> = tshark(&[
        "-r",
        &f,
        "-d",
        "tcp.port==6060,sip",
        "-Y",
        "sip.Method == \"INVITE\"",
        "-T",
        "fields",
        "-e",
        "sip.Call-ID",
    ])
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_string)
    .collect();
    assert_eq!(want.len(), 37, "INDEX.tsv: 37 INVITE dialogs");
    let got: BTreeSet<String> = recs.iter().map(|(_, m)| m.call_id.clone()).collect();
    assert_eq!(got, want);
    assert_eq!(recs.len(), 37, "one recording per dialog");
    for (path, m) in &recs {
        let mut frames_of_call = call_frames.get(&m.call_id).cloned().unwrap_or_default();
        let segments: Vec<u64> = into
            .iter()
            .filter(|(_, r)| r.iter().any(|x| frames_of_call.contains(x)))
            .map(|(n, _)| *n)
            .collect();
        frames_of_call.extend(segments);
        let disk = std::fs::read(path.join("call.pcap")).expect("read");
        assert!(
            disk == expected_call_pcap(&input, &frames_of_call),
            "{}: call.pcap differs from frames {frames_of_call:?}",
            m.call_id
        );
    }
}

/// `record --rtp-timeout 300`: SIP-only captures whose BYE comes long after the last packet keep
/// it in the call, as tshark counts it.
fn record_long_rtp_timeout(
    input: &Path,
    out: &Path,
) -> Vec<(std::path::PathBuf, tapfleet_schemas::Manifest)> {
    let o = Command::new(env!("CARGO_BIN_EXE_tapfleet-edge"))
        .arg("record")
        .arg(input)
        .args(["--rtp-timeout", "300", "--out"])
        .arg(out)
        .output()
        .expect("run tapfleet-edge");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    manifests(out)
}
