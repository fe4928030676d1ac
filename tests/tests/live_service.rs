//! End to end, real processes on loopback: the edge service (`tapfleet-edge run --interface lo`)
//! captures live with the capture settings the manager sends (interfaces, BPF filter), while SIPp
//! places calls with two-way RTP; every call reaches the manager's catalog, complete, and the
//! edge reports no drops in its telemetry and the interface's kernel counters in `/metrics`;
//! the site's networks (`capture.local_networks`) make each call `internal`.
//! Needs root (live capture, SIPp pcap play) and sipp (deploy/install-deps.sh test).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tapfleet_tests::sipp::SippCalls;
use tapfleet_tests::{Proc, bearer, bin, free_port, get_json, require_tool, wait_for};

const CALLS: usize = 3;

fn put(url: &str, body: &str) -> (u16, Value) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut resp = agent
        .put(url)
        .header("Authorization", bearer())
        .send(body)
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn metrics(url: &str) -> String {
    ureq::get(url)
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default()
}

#[test]
fn the_service_records_sipp_calls_live_with_the_managers_capture_settings() {
    require_tool("sipp");
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let (http_port, mqtt_port) = (free_port(), free_port());
    let data = root.join("manager");
    let mut cmd = tapfleet_tests::manager_serve(&data, http_port);
    cmd.args(["--mqtt-listen", &format!("127.0.0.1:{mqtt_port}")]);
    let _manager = Proc::start("manager", cmd, root);
    let http = format!("http://127.0.0.1:{http_port}");
    wait_for("manager /healthz", Duration::from_secs(30), || {
        ureq::get(&format!("{http}/healthz")).call().ok()
    });

    // Ports of our own; the manager's capture settings keep everything else out.
    let sipp = SippCalls::for_process(40_000);
    let filter = sipp.bpf_filter();
    let defaults = serde_json::json!({
        "capture": {"interfaces": ["lo"], "bpf_filter": filter, "buffer_bytes": 32 << 20,
                    "local_networks": ["127.0.0.0/8"]},
        "telemetry_interval_secs": 2,
    });
    let (status, v) = put(
        &format!("{http}/api/v1/config/defaults"),
        &defaults.to_string(),
    );
    assert_eq!(status, 200, "{v}");

    let metrics_url = format!("http://127.0.0.1:{}/metrics", free_port());
    let mut cmd = Command::new(bin("tapfleet-edge"));
    cmd.args(["run", "--data"])
        .arg(root.join("edge"))
        .args(["--broker", &format!("mqtt://127.0.0.1:{mqtt_port}")])
        .arg("--token-file")
        .arg(data.join("enroll.token"))
        .args(["--interface", "lo"])
        .args([
            "--metrics-listen",
            metrics_url
                .trim_start_matches("http://")
                .trim_end_matches("/metrics"),
        ]);
    let edge = Proc::start("edge", cmd, root);
    let edge_id = wait_for("an enrolled edge", Duration::from_secs(30), || {
        let v = get_json(&format!("{http}/api/v1/edges"))?;
        Some(
            v["edges"].as_array()?.first()?["edge_id"]
                .as_str()?
                .to_owned(),
        )
    });
    // The config with the filter applied (the capture restarted with it).
    wait_for("the edge on config v1", Duration::from_secs(20), || {
        let e = get_json(&format!("{http}/api/v1/edges/{edge_id}/config/effective"))?;
        (e["reported_version"].as_u64() == Some(1) && e["in_sync"] == true).then_some(())
    });
    wait_for(
        "per-interface metrics for lo",
        Duration::from_secs(10),
        || {
            metrics(&metrics_url)
                .contains("tapfleet_edge_interface_kernel_drops_total{interface=\"lo\"}")
                .then_some(())
        },
    );

    sipp.run(&root.join("sipp"), CALLS);

    // Every call in the catalog, stored, its manifest complete, ended by BYE.
    let list = wait_for("every call stored", Duration::from_secs(30), || {
        let v = get_json(&format!("{http}/api/v1/recordings?edge={edge_id}"))?;
        let recs = v["recordings"].as_array()?.clone();
        (recs.len() == CALLS && recs.iter().all(|r| r["state"] == "stored")).then_some(recs)
    });
    for r in &list {
        let id = r["recording_id"].as_str().expect("id");
        let m = get_json(&format!("{http}/api/v1/recordings/{id}")).expect("recording");
        assert_eq!(m["complete"], true, "{m}");
        // The manifest the edge wrote, as stored in the cloud target.
        let at = m["manifest_locations"][0]["path"]
            .as_str()
            .expect("stored manifest");
        let bytes = std::fs::read(data.join("targets/cloud").join(at)).expect("manifest.json");
        let manifest: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(manifest["end_reason"], "bye", "{m}");
        assert_eq!(manifest["complete"], true, "{m}");
        assert_eq!(manifest["caller"]["number"], "sipp");
        assert_eq!(manifest["callee"]["number"], "1000");
        // SIPp calls itself on 127.0.0.1, inside the site's networks.
        assert_eq!(manifest["direction"], "internal", "{m}");
        assert_eq!(r["direction"], "internal", "the list says it too: {r}");
        assert_eq!(manifest["streams"].as_array().map(Vec::len), Some(3), "{m}");
    }

    // Nothing dropped: the edge's telemetry (as the manager keeps it) and its per-interface
    // counters in /metrics.
    let sample = wait_for("telemetry with packets", Duration::from_secs(10), || {
        let v = get_json(&format!("{http}/api/v1/edges/{edge_id}/telemetry?since=0"))?;
        let last = v["samples"].as_array()?.last()?.clone();
        (last["packets"].as_u64()? > 0).then_some(last)
    });
    assert_eq!(sample["kernel_drops"], 0, "{sample}");
    assert_eq!(sample["interface_drops"], 0, "{sample}");
    let text = metrics(&metrics_url);
    assert!(
        text.contains("tapfleet_edge_interface_kernel_drops_total{interface=\"lo\"} 0"),
        "{text}"
    );
    drop(edge);
}
