//! Video recording against real captures: `tapfleet-edge record` writes each H.264 / VP8 stream
//! into a file that ffprobe opens with the right codec and size, whose frame count equals the
//! RTP frames (distinct timestamps, counted by tshark), that ffmpeg decodes without errors, and
//! that the manifest lists with its size and SHA-256. Needs ffmpeg (deploy/install-deps.sh test).

mod common;
use common::{capture, record_ok, tool, tshark};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use tapfleet_schemas::{Manifest, RecordingKind};

fn record(input: &Path, out: &Path) -> Vec<(PathBuf, Manifest)> {
    record_ok(&[input], out)
}

/// ffprobe's codec, width, height and decoded frame count of the file's video stream.
fn probe(file: &Path) -> (String, u32, u32, u64) {
    let o = Command::new(tool("ffprobe"))
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("run ffprobe");
    assert!(o.status.success(), "ffprobe failed on {}", file.display());
    let text = String::from_utf8_lossy(&o.stdout);
    let f: Vec<&str> = text.trim().split(',').collect();
    assert_eq!(f.len(), 4, "ffprobe said {text:?}");
    (
        f[0].to_string(),
        f[1].parse().expect("width"),
        f[2].parse().expect("height"),
        f[3].parse().expect("frames"),
    )
}

/// ffmpeg's error lines when decoding the whole file.
fn decode_errors(file: &Path) -> Vec<String> {
    let o = Command::new(tool("ffmpeg"))
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(o.status.success(), "ffmpeg failed on {}", file.display());
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Distinct RTP timestamps (= frames) of one SSRC and payload type, by tshark.
fn rtp_frames(input: &Path, decode_as: &[&str], ssrc: u32, pt: u8) -> usize {
    let f = input.to_string_lossy();
    let filter = format!("rtp.ssrc == {ssrc:#x} && rtp.p_type == {pt}");
    let mut args = vec!["-r", &f, "-o", "rtp.heuristic_rtp:TRUE"];
    args.extend_from_slice(decode_as);
    args.extend_from_slice(&["-Y", &filter, "-T", "fields", "-e", "rtp.timestamp"]);
    let out = tshark(&args);
    out.lines().collect::<BTreeSet<_>>().len()
}

/// The manifest's entry of a file matches the file on disk.
fn check_entry(dir: &Path, m: &Manifest, name: &str, content_type: &str) -> PathBuf {
    let e = m
        .file(name)
        .unwrap_or_else(|| panic!("{name} is listed in the manifest"));
    let path = dir.join(name);
    let bytes = std::fs::read(&path).expect("read video file");
    assert_eq!(e.size, bytes.len() as u64);
    assert_eq!(e.sha256.0, <[u8; 32]>::from(Sha256::digest(&bytes)));
    assert_eq!(e.content_type, content_type);
    path
}

/// Frame payloads of an IVF file, in order.
fn ivf_frames(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).expect("read ivf");
    let mut out = Vec::new();
    let mut o = 32;
    while let Some(h) = b.get(o..o + 12) {
        let n = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        out.push(b[o + 12..o + 12 + n].to_vec());
        o += 12 + n;
    }
    out
}

#[test]
fn vp8_orphan_stream_becomes_the_reference_ivf() {
    let input = capture("membrane_rtp_vp8_plugin/test/fixtures/input_vp8.pcap");
    let tmp = tempfile::tempdir().expect("tempdir");
    let recs = record(&input, tmp.path());
    assert_eq!(recs.len(), 1);
    let (dir, m) = &recs[0];
    assert_eq!(m.kind, RecordingKind::OrphanStream);
    let s = &m.streams[0];
    assert_eq!(
        (s.media.as_str(), s.codec.as_str(), s.clock_rate, s.decoded),
        ("video", "VP8", 90_000, true)
    );
    let path = check_entry(dir, m, "video-62f601ff.ivf", "video/x-ivf");
    let want = rtp_frames(&input, &[], 0x62f6_01ff, 96);
    assert_eq!(want, 300, "INDEX.tsv: 300 frames");
    assert_eq!(probe(&path), ("vp8".into(), 1080, 720, 300));
    assert_eq!(decode_errors(&path), Vec::<String>::new());
    let frames = ivf_frames(&path);
    assert_eq!(frames.len(), 300);
    // SHA-256 of the 300 frame payloads of the plugin's own depacketized reference,
    // github.com/membraneframework/membrane_rtp_vp8_plugin test/fixtures/input_vp8.ivf @fd4603d:
    // every frame is byte for byte the same.
    let mut h = Sha256::new();
    frames.iter().for_each(|f| h.update(f));
    assert_eq!(
        hex(&h.finalize()),
        "7bd2fdf2402840ee533e620dc10cdbdd1592ffff5d6c5a984c23927aefa785fd"
    );
    // Only the capture's end is missing: no frame was dropped.
    assert_eq!(m.incomplete, ["capture ended while the call was active"]);
}

#[test]
fn vp8_with_extended_descriptor() {
    let input = capture("str0m/tests/data/vp8.pcap");
    let tmp = tempfile::tempdir().expect("tempdir");
    let recs = record(&input, tmp.path());
    assert_eq!(recs.len(), 1);
    let (dir, m) = &recs[0];
    let path = check_entry(dir, m, "video-eedf3944.ivf", "video/x-ivf");
    let want = rtp_frames(&input, &[], 0xeedf_3944, 96) as u64;
    assert_eq!(probe(&path), ("vp8".into(), 240, 180, want));
    assert_eq!(decode_errors(&path), Vec::<String>::new());
}

#[test]
fn h264_orphan_stream_is_recognised_and_written_as_annex_b() {
    let input = capture("sipp-scenarios/h264.pcap");
    let tmp = tempfile::tempdir().expect("tempdir");
    let recs = record(&input, tmp.path());
    assert_eq!(recs.len(), 1);
    let (dir, m) = &recs[0];
    let s = &m.streams[0];
    assert_eq!(
        (s.media.as_str(), s.codec.as_str(), s.decoded),
        ("video", "H264", true)
    );
    let path = check_entry(dir, m, "video-693dc6cc.h264", "video/h264");
    let want = rtp_frames(&input, &[], 0x693d_c6cc, 96) as u64;
    assert_eq!(want, 2036);
    assert_eq!(probe(&path), ("h264".into(), 640, 480, want));
    assert_eq!(decode_errors(&path), Vec::<String>::new());
}

#[test]
fn sip_call_with_h264_both_ways() {
    let input = capture("snort3_demo/tests/inspectors/sip/SIP_Eyebeam2Eyebeam_Video_Audio.pcap");
    let tmp = tempfile::tempdir().expect("tempdir");
    let recs = record(&input, tmp.path());
    assert_eq!(recs.len(), 1);
    let (dir, m) = &recs[0];
    assert_eq!(m.kind, RecordingKind::Call);
    let video: Vec<_> = m.streams.iter().filter(|s| s.media == "video").collect();
    assert_eq!(video.len(), 2);
    for s in video {
        assert_eq!((s.codec.as_str(), s.decoded), ("H264", true));
        let name = format!("video-{:08x}.h264", s.ssrc);
        let path = check_entry(dir, m, &name, "video/h264");
        // PT 126 carries the video; PT 125 only 4-byte keep-alives (reserved NAL type 0).
        let want = rtp_frames(&input, &["-d", "udp.port==5064,rtp"], s.ssrc, 126) as u64;
        assert_eq!(probe(&path), ("h264".into(), 320, 240, want), "{name}");
        assert_eq!(decode_errors(&path), Vec::<String>::new(), "{name}");
    }
    assert!(m.complete, "nothing dropped: {:?}", m.incomplete);
}

#[test]
fn audio_orphan_streams_are_not_taken_for_video() {
    let input = capture("nDPI/tests/cfgs/default/pcap/rtp.pcapng");
    let tmp = tempfile::tempdir().expect("tempdir");
    let recs = record(&input, tmp.path());
    assert_eq!(recs.len(), 3);
    for (dir, m) in &recs {
        assert!(m.streams.iter().all(|s| s.media != "video"));
        assert!(m.files.iter().all(|f| !f.name.starts_with("video-")));
        assert!(!std::fs::read_dir(dir).expect("dir").any(|e| {
            e.expect("entry")
                .file_name()
                .to_string_lossy()
                .starts_with("video-")
        }));
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A copy of a classic little-endian pcap without record `skip` (0-based).
fn without_record(input: &Path, skip: usize, out: &Path) {
    let b = std::fs::read(input).expect("read capture");
    assert_eq!(
        &b[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian classic pcap"
    );
    let mut w = b[..24].to_vec();
    let (mut o, mut i) = (24, 0);
    while o + 16 <= b.len() {
        let n = u32::from_le_bytes([b[o + 8], b[o + 9], b[o + 10], b[o + 11]]) as usize;
        if i != skip {
            w.extend_from_slice(&b[o..o + 16 + n]);
        }
        o += 16 + n;
        i += 1;
    }
    std::fs::write(out, w).expect("write capture");
}

#[test]
fn lost_packets_drop_their_frame_and_the_file_still_decodes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // H.264: one packet lost in the middle of the stream costs exactly its frame.
    let input = capture("sipp-scenarios/h264.pcap");
    let lossy = tmp.path().join("h264-lossy.pcap");
    without_record(&input, 200, &lossy);
    let recs = record(&lossy, &tmp.path().join("h264"));
    let (dir, m) = &recs[0];
    let path = check_entry(dir, m, "video-693dc6cc.h264", "video/h264");
    let (_, _, _, frames) = probe(&path);
    assert_eq!(frames, 2035);
    assert!(
        m.incomplete
            .iter()
            .any(|l| l.contains("1 of 2036 frames not written (1 missing packets")),
        "{:?}",
        m.incomplete
    );
    let errors = decode_errors(&path);
    assert!(errors.len() <= 10, "{errors:?}");

    // VP8: the damaged frame is dropped and the stream waits for the next key frame, so the
    // decoder never sees a frame whose reference is missing.
    let input = capture("str0m/tests/data/vp8.pcap");
    let lossy = tmp.path().join("vp8-lossy.pcap");
    without_record(&input, 20, &lossy);
    let recs = record(&lossy, &tmp.path().join("vp8"));
    let (dir, m) = &recs[0];
    let path = check_entry(dir, m, "video-eedf3944.ivf", "video/x-ivf");
    let (_, _, _, frames) = probe(&path);
    // Record 20 is a whole frame: what follows waits for the next key frame (the capture has
    // none after its first 20 frames, so 20 remain).
    assert!((1..101).contains(&frames), "{frames} frames");
    assert!(
        m.incomplete
            .iter()
            .any(|l| l.contains(&format!("{} waiting for a key frame", 100 - frames))),
        "{:?}",
        m.incomplete
    );
    assert_eq!(decode_errors(&path), Vec::<String>::new());
}
