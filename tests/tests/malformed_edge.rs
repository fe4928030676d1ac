//! Malformed and oversized CBOR on every topic a real edge takes (its config, acks and jobs),
//! published with Debian's `mosquitto_pub` into an external mosquitto while the edge records
//! calls in real time: each message is dropped, logged and counted in the edge's `/metrics`
//! (`tapfleet_edge_bad_messages_total`), a bad config is reported as the edge's config error,
//! and nothing else is affected: the edge keeps running and every call reaches the cloud target.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Manager, wait_stored};
use tapfleet_callgen::{GenOptions, generate_to_file};
use tapfleet_tests::{Proc, bin, free_port, require_tool, run_ok, wait_for};

fn edge_metric(port: u16, name: &str) -> Option<u64> {
    let body = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("tapfleet_edge_{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn malformed_messages_to_an_edge_are_counted_and_recording_goes_on() {
    let t0 = Instant::now();
    require_tool("mosquitto");
    require_tool("mosquitto_pub");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _mosquitto = tapfleet_tests::mosquitto(dir.path(), port, "mosquitto");
    let url = format!("mqtt://127.0.0.1:{port}");
    let m = Manager::start(dir.path(), None, Some((&url, port)));

    // Three calls replayed in real time (about 8 s), so the edge records while it is fed junk.
    let pcap = dir.path().join("calls.pcap");
    let opts = GenOptions {
        calls: 3,
        concurrency: 1,
        duration_s: 2.0,
        seed: 5,
        ..GenOptions::default()
    };
    let truth = generate_to_file(&opts, &pcap, None).expect("generate");
    let metrics = free_port();
    let mut cmd = Command::new(bin("tapfleet-edge"));
    cmd.args(["run", "--data"])
        .arg(dir.path().join("edge"))
        .args(["--broker", &url, "--token-file"])
        .arg(m.data.join("enroll.token"))
        .arg("--replay")
        .arg(&pcap)
        .args(["--replay-speed", "1"])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .args(["--log", "info"]);
    let mut edge = Proc::start("edge", cmd, dir.path());
    let edge_id = common::edge_id(&m);
    wait_for("the edge's metrics", Duration::from_secs(30), || {
        edge_metric(metrics, "connected").filter(|c| *c == 1)
    });
    let before = edge_metric(metrics, "bad_messages_total").expect("counter");

    let oversized = dir.path().join("oversized.bin");
    let mut big = vec![0x5a, 0x00, 0x18, 0x00, 0x00];
    big.resize(5 + 0x18_0000, 0x61);
    std::fs::write(&oversized, big).expect("write");
    let deep = dir.path().join("deep.bin");
    std::fs::write(&deep, vec![0x81u8; 10_000]).expect("write");
    let mut sent = 0;
    for ch in ["config", "acks", "jobs"] {
        let topic = format!("tapfleet/v1/tenants/default/edges/{edge_id}/{ch}");
        for payload in [
            vec!["-m", "\u{ff}not cbor"],
            vec!["-f", oversized.to_str().expect("utf-8")],
            vec!["-f", deep.to_str().expect("utf-8")],
        ] {
            let mut pubc = Command::new("mosquitto_pub");
            pubc.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
                .args(["-t", &topic])
                .args(&payload);
            run_ok(pubc);
            sent += 1;
        }
    }
    wait_for(
        &format!("{sent} bad messages counted"),
        Duration::from_secs(15),
        || (edge_metric(metrics, "bad_messages_total")? >= before + sent).then_some(()),
    );

    // Recording and delivery went on.
    let stored = wait_stored(&m, truth.calls.len(), Duration::from_secs(60));
    assert_eq!(stored.len(), truth.calls.len());
    assert!(edge.running(), "edge exited:\n{}", edge.output());
    assert_eq!(
        edge_metric(metrics, "bad_messages_total"),
        Some(before + sent),
        "each bad message counted once"
    );
    let log = edge.output();
    assert_eq!(
        log.matches("undecodable message dropped").count() as u64,
        sent,
        "each bad message logged once"
    );
    // The bad config is the edge's reported config error; the applied config stays.
    let edges = common::api_get(&m, "/api/v1/edges").expect("edges");
    let e = &edges["edges"][0];
    assert_eq!(e["config_version_reported"], 1, "{e}");
    assert!(
        e["config_error"]
            .as_str()
            .is_some_and(|r| r.contains("DesiredConfig")),
        "{e}"
    );
    println!(
        "{sent} bad messages counted, {} calls delivered, in {:?}",
        stored.len(),
        t0.elapsed()
    );
}
