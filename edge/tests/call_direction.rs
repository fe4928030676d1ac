//! A call's direction (manifest `direction`) from `record --local-net` / `--trunk-net` and its
//! INVITE's addresses, on real captures whose addresses tshark shows:
//! - nb6-telephone.pcap: the INVITE goes from the nb6 box 10.251.23.139 to the operator's SBC
//!   172.22.75.71 (UDP), while the media flows to 109.3.79.137: signalling decides, not media;
//! - heplify sip_ipv4_tcp.pcap: INVITE over TCP from 10.33.6.100 to 10.33.6.101;
//! - heplify sip_ipv6_udp.pcap: INVITE from fe80::21a:a0ff:fe07:32e0 to fec0::216:d3ff:fe0d:22c.

mod common;
use common::{capture, manifests};

use std::path::Path;
use std::process::{Command, Output};

use tapfleet_schemas::{CallDirection, Manifest, RecordingKind};

const NB6: &str = "rtp-pcap/examples/nb6-telephone.pcap";

fn record_with(input: &Path, out: &Path, args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_tapfleet-edge"))
        .arg("record")
        .arg(input)
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run tapfleet-edge");
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The calls `record` writes from `rel` with `args`, and its stdout.
fn calls(rel: &str, args: &[&str]) -> (Vec<Manifest>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = record_with(&capture(rel), dir.path(), args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ms: Vec<Manifest> = manifests(dir.path())
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| m.kind == RecordingKind::Call)
        .collect();
    (ms, String::from_utf8_lossy(&o.stdout).into_owned())
}

fn directions(rel: &str, args: &[&str]) -> Vec<CallDirection> {
    calls(rel, args).0.iter().map(|m| m.direction).collect()
}

#[test]
fn nb6_call_direction_follows_the_local_networks() {
    let (plain, _) = calls(NB6, &[]);
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0].direction, CallDirection::Unknown, "no networks");
    let (box_side, stdout) = calls(NB6, &["--local-net", "10.251.23.0/24"]);
    assert_eq!(box_side[0].direction, CallDirection::Outbound);
    assert!(
        stdout.contains("+33360653674 -> 147 (outbound)"),
        "{stdout}"
    );
    // The media's far end (109.3.79.137) is remote in every case: it plays no part.
    for (args, want) in [
        (
            &["--local-net", "172.22.0.0/16"][..],
            CallDirection::Inbound,
        ),
        (
            &["--local-net", "10.0.0.0/8", "--local-net", "172.16.0.0/12"][..],
            CallDirection::Internal,
        ),
        (
            &[
                "--local-net",
                "10.0.0.0/8,172.16.0.0/12",
                "--trunk-net",
                "172.22.75.71",
            ][..],
            CallDirection::Outbound,
        ),
        (
            &["--trunk-net", "10.251.23.139"][..],
            CallDirection::Inbound,
        ),
        (
            &["--local-net", "192.168.0.0/16"][..],
            CallDirection::Unknown,
        ),
    ] {
        assert_eq!(directions(NB6, args), [want], "{args:?}");
    }
    // The manifest says so in JSON too.
    let dir = tempfile::tempdir().expect("tempdir");
    let o = record_with(&capture(NB6), dir.path(), &["--local-net", "10.251.23.139"]);
    assert!(o.status.success());
    let (folder, _) = manifests(dir.path()).into_iter().next().expect("a call");
    let json = std::fs::read_to_string(folder.join("manifest.json")).expect("manifest.json");
    assert!(json.contains("\"direction\": \"outbound\""), "{json}");
}

#[test]
fn sip_over_tcp_and_ipv6_invites_give_the_direction() {
    assert_eq!(
        directions(
            "heplify/example/pcap/sip_ipv4_tcp.pcap",
            &["--local-net", "10.33.6.101"]
        ),
        [CallDirection::Inbound]
    );
    assert_eq!(
        directions(
            "heplify/example/pcap/sip_ipv6_udp.pcap",
            &["--local-net", "fe80::/10"]
        ),
        [CallDirection::Outbound]
    );
}

#[test]
fn a_bad_network_is_refused_clearly_before_recording() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    for (arg, want) in [
        (
            "10.0.0.0/33",
            "\"10.0.0.0/33\": the prefix length must be 0..=32",
        ),
        ("pbx.local", "\"pbx.local\" is not an IP address or network"),
    ] {
        let o = record_with(&capture(NB6), &out, &["--local-net", arg]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{arg}");
        assert!(stderr.contains(&format!("--local-net: {want}")), "{stderr}");
        assert!(!out.exists(), "nothing written");
    }
}
