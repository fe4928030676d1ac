//! Fault tests, end to end with real processes: each ends with every recording stored exactly
//! once in the target with matching SHA-256 (no duplicate, no partial object).
//! - the manager killed (-9) during uploads and restarted on the same data folder;
//! - an external broker (mosquitto) restarted: its retained configs are gone, the manager
//!   republishes them, the edge resumes;
//! - the target unavailable for a while (its folder replaced by a file): uploads fail, are
//!   offered again, and finish once it is back;
//! - one target down while another is healthy: the healthy target's edge delivers at its own
//!   pace (the mover's workers are per target), the other's once its target is back;
//! - the edge's cache full (small capacity, uploads held back by a closed window): an alert and
//!   an `Event` (`alert_raised`, rule `cache_full`) go out, nothing unstored is deleted, delivery completes when the window opens and
//!   retention then evicts stored recordings down to the high-water mark.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use tapfleet_callgen::{GenOptions, generate_to_file};
use tapfleet_schemas::{Event, EventBody};
use tapfleet_tests::{Proc, free_port, require_tool, wait_for};

fn calls(dir: &Path, n: u32, seed: u64) -> (std::path::PathBuf, usize) {
    long_calls(dir, n, seed, 2.0)
}

fn long_calls(dir: &Path, n: u32, seed: u64, secs: f64) -> (std::path::PathBuf, usize) {
    let pcap = dir.join("calls.pcap");
    let opts = GenOptions {
        calls: n,
        concurrency: n,
        duration_s: secs,
        seed,
        ..GenOptions::default()
    };
    let truth = generate_to_file(&opts, &pcap, None).expect("generate");
    (pcap, truth.calls.len())
}

/// Slow uploads (so a fault lands mid-transfer) and frequent telemetry.
fn slow_config() -> serde_json::Value {
    serde_json::json!({
        "cache": {"bandwidth_limit_bps": 150000},
        "telemetry_interval_secs": 1
    })
}

/// mosquitto on loopback, the `n`th start of it in this test.
fn mosquitto(dir: &Path, port: u16, n: u32) -> Proc {
    tapfleet_tests::mosquitto(dir, port, &format!("mosquitto-{n}"))
}

/// Events published on the broker so far, from a `mosquitto_sub -F %x` log.
fn events(sub: &Proc) -> Vec<Event> {
    sub.output()
        .lines()
        .filter_map(|l| hex::decode(l.trim()).ok())
        .filter_map(|b| tapfleet_schemas::decode::<Event>(&b).ok())
        .collect()
}

#[test]
fn manager_killed_during_upload_restarts_without_duplicates_or_partial_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = Manager::start(dir.path(), None, None);
    // 20 s calls (files of 0.4-0.7 MB, several 256 KiB chunks each) sent at 400 kB/s: a file
    // takes over a second, so the kill lands inside one.
    enroll_with_config(
        &m,
        serde_json::json!({"cache": {"bandwidth_limit_bps": 400000}, "telemetry_interval_secs": 1}),
    );
    let (pcap, n) = long_calls(dir.path(), 3, 31, 20.0);
    let _edge = start_edge(&m, "edge", &pcap, &[]);
    wait_stored(&m, 1, Duration::from_secs(30));
    wait_for("a transfer in progress", Duration::from_secs(10), || {
        let log = m.proc.output();
        let accepted = log.matches("transfer accepted").count();
        let stored = log.matches("file stored").count();
        (accepted > stored).then_some(())
    });
    std::thread::sleep(Duration::from_millis(400));
    let log = m.proc.output();
    assert!(
        log.matches("transfer accepted").count() > log.matches("file stored").count(),
        "the kill lands inside a transfer"
    );
    m.proc.kill();
    m.restart();
    let recs = wait_stored(&m, n, Duration::from_secs(60));
    assert_eq!(catalog(&m).len(), n, "one catalog entry per call");
    assert_target_exact(&m, "cloud", &recs, n);
}

#[test]
fn broker_restart_loses_retained_configs_and_delivery_resumes() {
    require_tool("mosquitto_sub");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut broker = mosquitto(dir.path(), port, 1);
    let url = format!("mqtt://127.0.0.1:{port}");
    let m = Manager::start(dir.path(), None, Some((&url, port)));
    enroll_with_config(&m, slow_config());
    let (pcap, n) = calls(dir.path(), 4, 32);
    let _edge = start_edge(&m, "edge", &pcap, &[]);
    wait_stored(&m, 1, Duration::from_secs(30));
    broker.kill();
    std::thread::sleep(Duration::from_secs(1));
    let _broker = mosquitto(dir.path(), port, 2);
    // The new broker knew nothing: the retained config is there again because the manager
    // republished it.
    wait_for(
        "retained config republished",
        Duration::from_secs(20),
        || {
            let out = Command::new("mosquitto_sub")
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args([
                    "-t",
                    "tapfleet/v1/tenants/+/edges/+/config",
                    "--retained-only",
                ])
                .args(["-C", "1", "-W", "2", "-F", "%t"])
                .output()
                .ok()?;
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            s.contains("/config").then_some(())
        },
    );
    let recs = wait_stored(&m, n, Duration::from_secs(60));
    assert_eq!(catalog(&m).len(), n);
    assert_target_exact(&m, "cloud", &recs, n);
}

#[test]
fn uploads_retry_while_the_target_is_unavailable_and_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One retry inside the manager: the edge's offers are the retry loop here (with the default
    // retries each failing write into this one target takes 8-20 s: per-target workers do not
    // shorten that, they keep other targets moving; see the next test).
    let m = Manager::start(dir.path(), Some("[storage]\nretries = 1\n"), None);
    let cloud = m.target_dir("cloud");
    std::fs::create_dir_all(&cloud).expect("cloud dir");
    let away = cloud.with_file_name("cloud.away");
    std::fs::rename(&cloud, &away).expect("move the target away");
    std::fs::write(&cloud, b"not a directory").expect("block the target");
    let (pcap, n) = calls(dir.path(), 3, 33);
    let _edge = start_edge(&m, "edge", &pcap, &[]);
    wait_for("transfers failing", Duration::from_secs(30), || {
        (m.proc.output().matches("transfer failed").count() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        catalog(&m).values().all(|r| r["state"] == "announced"),
        "nothing is stored while the target is down"
    );
    std::fs::remove_file(&cloud).expect("unblock");
    std::fs::rename(&away, &cloud).expect("target back");
    let recs = wait_stored(&m, n, Duration::from_secs(60));
    assert_eq!(catalog(&m).len(), n);
    assert_target_exact(&m, "cloud", &recs, n);
}

#[test]
fn a_down_target_does_not_delay_delivery_to_a_healthy_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let branch = root.join("manager/targets/branch");
    // Default retries: a failing write into `branch` takes many seconds each time.
    let cfg = format!(
        "[targets.branch]\ntype = \"fs\"\nroot = \"{}\"\n",
        branch.display()
    );
    let m = Manager::start(root, Some(&cfg), None);
    let _ = std::fs::remove_dir_all(&branch);
    std::fs::write(&branch, b"not a directory").expect("block branch");
    let down_data = root.join("edge-down");
    enroll_at_with_config(
        &m,
        &down_data,
        Some("edge-down"),
        serde_json::json!({"storage": {"target": "branch"}, "telemetry_interval_secs": 1}),
    );
    enroll_with_config(&m, serde_json::json!({"telemetry_interval_secs": 1}));
    let (down_dir, ok_dir) = (root.join("pcap-down"), root.join("pcap-ok"));
    std::fs::create_dir_all(&down_dir).expect("dir");
    std::fs::create_dir_all(&ok_dir).expect("dir");
    let (down_pcap, n_down) = calls(&down_dir, 3, 35);
    let (ok_pcap, n_ok) = calls(&ok_dir, 3, 36);
    let _down = start_edge_at(
        &m,
        "edge-down",
        &down_data,
        Some("edge-down"),
        &down_pcap,
        &[],
    );
    // The down edge's recordings are cataloged and its first offer is stuck in branch's retries.
    wait_for(
        "the down edge's recordings cataloged",
        Duration::from_secs(30),
        || (catalog(&m).len() >= n_down).then_some(()),
    );
    let t0 = std::time::Instant::now();
    let _ok = start_edge(&m, "edge-ok", &ok_pcap, &[]);
    let recs = wait_stored(&m, n_ok, Duration::from_secs(20));
    let took = t0.elapsed();
    assert_eq!(
        recs.len(),
        n_ok,
        "only the healthy target's recordings are stored"
    );
    assert_target_exact(&m, "cloud", &recs, n_ok);
    // Branch really was failing meanwhile, and its edge keeps everything.
    wait_for("branch transfers failing", Duration::from_secs(40), || {
        m.proc.output().contains("transfer failed").then_some(())
    });
    eprintln!("healthy edge delivered {n_ok} recordings in {took:?} while branch was down");
    std::fs::remove_file(&branch).expect("unblock branch");
    let recs = wait_stored(&m, n_ok + n_down, Duration::from_secs(90));
    assert_target_exact(&m, "cloud", &recs, n_ok);
    assert_target_exact(&m, "branch", &recs, n_down);
}

#[test]
fn a_full_cache_alerts_keeps_unstored_recordings_and_delivers_later() {
    require_tool("mosquitto_sub");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = mosquitto(dir.path(), port, 1);
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "tapfleet/v1/tenants/+/events", "-F", "%x"]);
    let sub = Proc::start("events", cmd, dir.path());
    let url = format!("mqtt://127.0.0.1:{port}");
    let m = Manager::start(dir.path(), None, Some((&url, port)));
    // An upload window two hours from now: nothing leaves the cache yet.
    let now_min = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        / 60
        % 1440;
    let closed = serde_json::json!([{"start_minute": (now_min + 120) % 1440, "end_minute": (now_min + 180) % 1440}]);
    let mut cfg = serde_json::json!({
        "cache": {"capacity_bytes": 1048576, "high_water_percent": 50, "upload_windows": closed},
        "telemetry_interval_secs": 1
    });
    let edge = enroll_with_config(&m, cfg.clone());
    // About 1.1 MB of recordings: over the alert threshold (80 %) of a 1 MiB cache.
    let (pcap, n) = calls(dir.path(), 8, 34);
    let _e = start_edge(&m, "edge", &pcap, &[]);
    wait_for("cache_full alert event", Duration::from_secs(30), || {
        events(&sub).into_iter().find(|e| {
            e.edge_id == edge
                && matches!(&e.body, EventBody::AlertRaised { rule, .. } if rule == "cache_full")
        })
    });
    // Every recording is still on the edge, none stored yet, none deleted.
    let recs = wait_for("all cataloged", Duration::from_secs(20), || {
        let c = catalog(&m);
        (c.len() == n).then_some(c)
    });
    for (id, r) in &recs {
        assert_eq!(r["state"], "announced", "{id}");
        assert!(
            m.root
                .join("edge/cache/recordings")
                .join(id)
                .join("call.pcap")
                .exists(),
            "{id} kept on the full edge"
        );
    }
    // Open the window: everything is delivered, then retention frees the space.
    cfg["cache"]["upload_windows"] = serde_json::json!([]);
    let (status, v) = api_send(&m, "PUT", &format!("/api/v1/edges/{edge}/config"), &cfg);
    assert_eq!(status, 200, "{v}");
    let recs = wait_stored(&m, n, Duration::from_secs(60));
    assert_target_exact(&m, "cloud", &recs, n);
    wait_for("cache_full cleared event", Duration::from_secs(30), || {
        events(&sub).into_iter().find(|e| {
            e.edge_id == edge
                && matches!(&e.body, EventBody::AlertCleared { rule, .. } if rule == "cache_full")
        })
    });
    let stored_events = events(&sub)
        .into_iter()
        .filter(|e| matches!(e.body, EventBody::RecordingStored { .. }))
        .count();
    assert_eq!(stored_events, n, "one recording_stored event per recording");
}
