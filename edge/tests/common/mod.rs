//! Shared by the edge's integration tests: where the shared captures are, running
//! `tapfleet-edge record` and reading its manifests, and running tshark / ffmpeg (required: a
//! test that needs one fails loudly when it is missing).

#![allow(dead_code)] // each test file is its own crate and uses a part of this

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tapfleet_schemas::Manifest;

/// `../shared/captures` beside the repository.
pub const CAPTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/captures");

/// Path of a shared capture; panics if it is missing.
pub fn capture(rel: &str) -> PathBuf {
    let p = Path::new(CAPTURES).join(rel);
    assert!(p.is_file(), "test capture {} is missing", p.display());
    p
}

/// Runs `tapfleet-edge record FILES --out OUT`; panics if it cannot run or panicked.
pub fn record(files: &[&Path], out: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_tapfleet-edge"))
        .arg("record")
        .args(files)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tapfleet-edge: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "tapfleet-edge panicked: {stderr}"
    );
    out
}

/// [`record`], which must succeed; returns the recordings written, by start time.
pub fn record_ok(files: &[&Path], out: &Path) -> Vec<(PathBuf, Manifest)> {
    let o = record(files, out);
    assert!(
        o.status.success(),
        "record failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    manifests(out)
}

/// The recording folders under `out` (those holding a `manifest.json`) and their manifests,
/// by start time.
pub fn manifests(out: &Path) -> Vec<(PathBuf, Manifest)> {
    let mut v: Vec<(PathBuf, Manifest)> = std::fs::read_dir(out)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("manifest.json").is_file())
                .map(|p| {
                    let bytes = std::fs::read(p.join("manifest.json")).expect("read manifest");
                    let m: Manifest = serde_json::from_slice(&bytes).expect("manifest parses");
                    (p, m)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|(_, m)| m.start_ns);
    v
}

/// Path of a tool in /usr/bin (ffmpeg, ffprobe, ...); panics if it is missing.
pub fn tool(name: &str) -> PathBuf {
    let p = Path::new("/usr/bin").join(name);
    assert!(
        p.exists(),
        "{name} is required for these tests: deploy/install-deps.sh test (apt-get install ffmpeg)"
    );
    p
}

/// Runs tshark and returns its stdout; panics if tshark is missing or fails.
pub fn tshark(args: &[&str]) -> String {
    assert!(
        Path::new("/usr/bin/tshark").exists(),
        "tshark is required for these tests: apt-get install tshark"
    );
    let out = Command::new("/usr/bin/tshark")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tshark: {e}"));
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One RTP stream as `tshark -q -z rtp,streams` lists it: (src, dst, ssrc) -> (packets, lost).
/// Addresses are `ip:port`, IPv6 in brackets, as in our manifests.
pub type TsharkStreams = BTreeMap<(String, String, u32), (u64, i64)>;

/// The RTP streams tshark finds in `file` (`heuristic`: also RTP no SDP announced).
pub fn tshark_rtp_streams(file: &Path, heuristic: bool) -> TsharkStreams {
    let f = file.to_string_lossy();
    let mut args = vec!["-r", &f, "-q", "-z", "rtp,streams"];
    if heuristic {
        args.extend(["-o", "rtp.heuristic_rtp:TRUE"]);
    }
    let out = tshark(&args);
    let addr = |ip: &str, port: &str| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        let Some(ssrc) = t
            .get(6)
            .and_then(|s| s.strip_prefix("0x"))
            .and_then(|s| u32::from_str_radix(s, 16).ok())
        else {
            continue;
        };
        let Some(pct) = t
            .iter()
            .position(|x| x.starts_with('(') && x.ends_with("%)"))
        else {
            continue;
        };
        let (Some(packets), Some(lost)) = (
            pct.checked_sub(2)
                .and_then(|i| t.get(i))
                .and_then(|x| x.parse().ok()),
            pct.checked_sub(1)
                .and_then(|i| t.get(i))
                .and_then(|x| x.parse().ok()),
        ) else {
            continue;
        };
        m.insert((addr(t[2], t[3]), addr(t[4], t[5]), ssrc), (packets, lost));
    }
    m
}
