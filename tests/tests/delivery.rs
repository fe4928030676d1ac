//! End to end, real processes on loopback: the fleet manager (embedded broker, fs `cloud` target)
//! and an edge that enrolls with the manager's token and replays a generated capture. Every call
//! must arrive in the target as a recording whose files' SHA-256 equal the edge's, the catalog
//! must list each with its location, and the edge's cache must mark each as stored.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tapfleet_callgen::{CodecChoice, GenOptions, generate_to_file};
use tapfleet_tests::{
    Proc, bin, empty_pcap, free_port, get_json, mosquitto, require_tool, run_ok, sha256_file,
    wait_for,
};

struct Fleet {
    dir: tempfile::TempDir,
    http: String,
    mqtt_port: u16,
    manager: Proc,
}

fn start_manager() -> Fleet {
    let dir = tempfile::tempdir().expect("tempdir");
    let mqtt_port = free_port();
    start_manager_in(
        dir,
        mqtt_port,
        &["--mqtt-listen", &format!("127.0.0.1:{mqtt_port}")],
    )
}

fn start_manager_in(dir: tempfile::TempDir, mqtt_port: u16, broker_args: &[&str]) -> Fleet {
    let http_port = free_port();
    let mut cmd = tapfleet_tests::manager_serve(&dir.path().join("manager"), http_port);
    cmd.args(broker_args).env("RUST_LOG", "info");
    let manager = Proc::start("manager", cmd, dir.path());
    let http = format!("http://127.0.0.1:{http_port}");
    wait_for("manager /healthz", Duration::from_secs(30), || {
        ureq::get(&format!("{http}/healthz")).call().ok()
    });
    Fleet {
        dir,
        http,
        mqtt_port,
        manager,
    }
}

fn start_edge(fleet: &Fleet, replay: &Path) -> Proc {
    start_edge_with(fleet, replay, &[])
}

fn start_edge_with(fleet: &Fleet, replay: &Path, extra: &[&str]) -> Proc {
    let token_file = fleet.dir.path().join("manager/enroll.token");
    assert!(token_file.exists(), "the manager wrote no enroll.token");
    let mut cmd = Command::new(bin("tapfleet-edge"));
    cmd.args(["run", "--data"])
        .arg(fleet.dir.path().join("edge"))
        .args(["--broker", &format!("mqtt://127.0.0.1:{}", fleet.mqtt_port)])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--replay")
        .arg(replay)
        .args(extra)
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--log", "info"]);
    Proc::start("edge", cmd, fleet.dir.path())
}

/// The address the edge's metrics server said it listens on.
fn edge_metrics_addr(edge: &Proc) -> String {
    wait_for(
        "edge metrics listener in the log",
        Duration::from_secs(10),
        || {
            let log = edge.output();
            let line = log.lines().find(|l| l.contains("metrics on /metrics"))?;
            let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
            Some(addr.to_owned())
        },
    )
}

/// Every stored recording's files (call.pcap, audio.wav, then manifest.json) are in the `cloud`
/// target, in a folder named by the recording id, with the SHA-256 the catalog states and the
/// bytes of the edge's copy.
fn assert_stored_as_on_edge(fleet: &Fleet, stored: &BTreeMap<String, serde_json::Value>) {
    let target_root = fleet.dir.path().join("manager/targets/cloud");
    let edge_recordings = fleet.dir.path().join("edge/cache/recordings");
    for (id, rec) in stored {
        let files = rec["files"].as_array().expect("files");
        let names: Vec<&str> = files.iter().filter_map(|f| f["name"].as_str()).collect();
        for expected in ["call.pcap", "audio.wav"] {
            assert!(
                names.contains(&expected),
                "{id}: {expected} in catalog ({names:?})"
            );
        }
        let manifest = (&rec["manifest_locations"][0], "manifest.json", None);
        let media = files.iter().map(|f| {
            (
                &f["locations"][0],
                f["name"].as_str().expect("name"),
                Some(&f["sha256"]),
            )
        });
        for (loc, name, catalog_sha) in media.chain([manifest]) {
            assert_eq!(loc["target"], "cloud", "{id}/{name} location");
            let path = target_root.join(loc["path"].as_str().expect("path"));
            assert!(
                path.ends_with(format!("{id}/{name}")),
                "{} is in a folder named by the recording id",
                path.display()
            );
            let target_sha = sha256_file(&path);
            let edge_sha = sha256_file(&edge_recordings.join(id).join(name));
            assert_eq!(target_sha, edge_sha, "{id}/{name}: target == edge");
            if let Some(sha) = catalog_sha {
                assert_eq!(
                    sha.as_str(),
                    Some(target_sha.as_str()),
                    "{id}/{name}: catalog"
                );
            }
        }
    }
}

/// The catalog's recordings, by id, once `n` of them are stored.
fn wait_stored(fleet: &Fleet, n: usize) -> BTreeMap<String, serde_json::Value> {
    wait_for(
        &format!("{n} recordings stored in the catalog"),
        Duration::from_secs(120),
        || {
            let v = get_json(&format!("{}/api/v1/recordings", fleet.http))?;
            let recs = v.get("recordings")?.as_array()?.clone();
            let stored: BTreeMap<String, serde_json::Value> = recs
                .into_iter()
                .filter(|r| r["state"] == "stored")
                .filter_map(|r| Some((r["recording_id"].as_str()?.to_owned(), r)))
                .collect();
            (stored.len() >= n).then_some(stored)
        },
    )
}

#[test]
fn every_call_reaches_the_cloud_target_with_matching_sha256() {
    let fleet = start_manager();
    let pcap = fleet.dir.path().join("calls.pcap");
    let opts = GenOptions {
        calls: 6,
        concurrency: 3,
        duration_s: 3.0,
        codec: CodecChoice::Mixed,
        seed: 42,
        ..GenOptions::default()
    };
    let truth = generate_to_file(&opts, &pcap, None).expect("generate calls");
    assert_eq!(truth.calls.len(), 6);

    let mut edge = start_edge(&fleet, &pcap);
    let stored = wait_stored(&fleet, truth.calls.len());
    assert_eq!(
        stored.len(),
        truth.calls.len(),
        "one recording per call, no duplicates"
    );

    // Every call of the ground truth is in the catalog, once.
    let mut by_call: BTreeMap<String, usize> = BTreeMap::new();
    for r in stored.values() {
        *by_call
            .entry(r["call_id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    for call in &truth.calls {
        assert_eq!(
            by_call.get(&call.call_id),
            Some(&1),
            "call {} in catalog",
            call.call_id
        );
    }

    for rec in stored.values() {
        let call = truth
            .calls
            .iter()
            .find(|c| rec["call_id"] == c.call_id.as_str())
            .expect("a call of the truth");
        assert_eq!(rec["caller"]["number"], call.caller.number.as_str());
        assert_eq!(rec["callee"]["number"], call.callee.number.as_str());
    }
    assert_stored_as_on_edge(&fleet, &stored);

    // The edge's metrics say the same.
    let metrics_addr = edge_metrics_addr(&edge);
    let metrics = wait_for("edge metrics: all stored", Duration::from_secs(10), || {
        let body = ureq::get(&format!("http://{metrics_addr}/metrics"))
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        body.contains(&format!(
            "tapfleet_edge_recordings{{state=\"stored\"}} {}",
            truth.calls.len()
        ))
        .then_some(body)
    });
    assert!(metrics.contains("tapfleet_edge_connected 1"), "{metrics}");
    assert!(
        metrics.contains("tapfleet_edge_backlog_bytes 0"),
        "{metrics}"
    );

    // The edge's cache marks every recording as stored (inspected after a clean stop).
    assert!(
        edge.terminate(Duration::from_secs(20)),
        "edge stops on SIGTERM"
    );
    let mut list = Command::new(bin("tapfleet-edge"));
    list.args(["cache", "list", "--json", "--data"])
        .arg(fleet.dir.path().join("edge"));
    let out: serde_json::Value = serde_json::from_str(&run_ok(list)).expect("cache list JSON");
    let rows = out["recordings"].as_array().expect("recordings");
    assert_eq!(rows.len(), truth.calls.len());
    for r in rows {
        assert_eq!(r["state"], "stored", "edge cache entry {r}");
        assert!(stored.contains_key(r["recording_id"].as_str().unwrap_or_default()));
    }
    drop(fleet.manager);
}

#[test]
fn an_edge_killed_mid_delivery_finishes_after_restart_without_duplicates() {
    let fleet = start_manager();
    let pcap = fleet.dir.path().join("calls.pcap");
    let opts = GenOptions {
        calls: 8,
        concurrency: 8,
        duration_s: 2.0,
        seed: 7,
        ..GenOptions::default()
    };
    let truth = generate_to_file(&opts, &pcap, None).expect("generate");
    let mut edge = start_edge(&fleet, &pcap);
    wait_stored(&fleet, 1);
    edge.kill(); // kill -9 while the rest is being announced or uploaded

    // Restart on an empty capture: whatever is still in the cache must be delivered.
    let _edge = start_edge(&fleet, &empty_pcap(fleet.dir.path()));
    let stored = wait_stored(&fleet, truth.calls.len());
    let v = get_json(&format!("{}/api/v1/recordings", fleet.http)).expect("catalog");
    let all = v["recordings"].as_array().expect("recordings");
    assert_eq!(
        all.len(),
        truth.calls.len(),
        "no duplicates after a kill -9: {v}"
    );
    assert_stored_as_on_edge(&fleet, &stored);
}

#[test]
fn delivery_works_through_an_external_mosquitto() {
    require_tool("mosquitto");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _mosquitto = mosquitto(dir.path(), port, "mosquitto");
    let fleet = start_manager_in(
        dir,
        port,
        &["--broker", &format!("mqtt://127.0.0.1:{port}")],
    );
    let pcap = fleet.dir.path().join("calls.pcap");
    let opts = GenOptions {
        calls: 4,
        concurrency: 2,
        duration_s: 2.0,
        seed: 3,
        ..GenOptions::default()
    };
    let truth = generate_to_file(&opts, &pcap, None).expect("generate");
    let _edge = start_edge(&fleet, &pcap);
    let stored = wait_stored(&fleet, truth.calls.len());
    assert_eq!(stored.len(), truth.calls.len());
    assert_stored_as_on_edge(&fleet, &stored);
}

#[test]
fn an_edge_killed_while_recording_delivers_the_calls_marked_incomplete() {
    let fleet = start_manager();
    let pcap = fleet.dir.path().join("calls.pcap");
    let opts = GenOptions {
        calls: 3,
        concurrency: 3,
        duration_s: 20.0,
        seed: 11,
        ..GenOptions::default()
    };
    let truth = generate_to_file(&opts, &pcap, None).expect("generate");
    // Real-time replay: the calls are in progress when the edge dies.
    let mut edge = start_edge_with(&fleet, &pcap, &["--replay-speed", "1"]);
    let recordings = fleet.dir.path().join("edge/cache/recordings");
    wait_for("3 calls being recorded", Duration::from_secs(30), || {
        let n = std::fs::read_dir(&recordings).ok()?.count();
        (n >= 3).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    edge.kill();

    let _edge = start_edge(&fleet, &empty_pcap(fleet.dir.path()));
    let stored = wait_stored(&fleet, truth.calls.len());
    assert_eq!(stored.len(), truth.calls.len());
    let target_root = fleet.dir.path().join("manager/targets/cloud");
    for (id, rec) in &stored {
        let manifest_path =
            target_root.join(rec["manifest_locations"][0]["path"].as_str().expect("path"));
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest"))
                .expect("json");
        assert_eq!(m["complete"], false, "{id} is marked incomplete: {m}");
        let reasons = m["incomplete"].to_string();
        assert!(
            reasons.contains("stopped while recording"),
            "{id}: {reasons}"
        );
        assert!(
            m["packets"].as_u64().unwrap_or(0) > 10,
            "{id} kept its packets"
        );
    }
    assert_stored_as_on_edge(&fleet, &stored);
}
