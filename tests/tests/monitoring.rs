//! End to end, real processes on loopback: layered config changes reach a running edge live
//! (capture restarts only for capture settings), the edge keeps its last good config with the
//! cloud unreachable, and a killed edge shows offline, with its `offline` alert in the API, in
//! `/metrics` and at a webhook, within 1.5x its MQTT keep-alive.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tapfleet_tests::{API_TOKEN, Proc, bearer, bin, free_port, get_json, wait_for};

/// The edge's MQTT keep-alive (edge/src/service/net.rs).
const EDGE_KEEP_ALIVE: Duration = Duration::from_secs(15);

struct Manager {
    http: String,
    mqtt_port: u16,
    data: PathBuf,
    proc: Proc,
}

fn start_manager(root: &Path, config: &str) -> Manager {
    start_manager_named(root, config, "manager")
}

/// Starts a manager on `root/manager` (a second start reuses its data), logging to `name`.log.
fn start_manager_named(root: &Path, config: &str, name: &str) -> Manager {
    let http_port = free_port();
    let mqtt_port = free_port();
    let cfg = root.join("manager.toml");
    std::fs::write(&cfg, config).expect("manager.toml");
    let data = root.join("manager");
    let mut cmd = tapfleet_tests::manager_serve(&data, http_port);
    cmd.args(["--mqtt-listen", &format!("127.0.0.1:{mqtt_port}")])
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info");
    let proc = Proc::start(name, cmd, root);
    let http = format!("http://127.0.0.1:{http_port}");
    wait_for("manager /healthz", Duration::from_secs(30), || {
        ureq::get(&format!("{http}/healthz")).call().ok()
    });
    Manager {
        http,
        mqtt_port,
        data,
        proc,
    }
}

/// An edge replaying an empty capture (so nothing but config and presence happens), its
/// metrics on a known port.
fn start_edge(root: &Path, m: &Manager, broker_port: u16, name: &str) -> (Proc, String) {
    let empty = tapfleet_tests::empty_pcap(root);
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(bin("tapfleet-edge"));
    cmd.args(["run", "--data"])
        .arg(root.join("edge"))
        .args(["--broker", &format!("mqtt://127.0.0.1:{broker_port}")])
        .arg("--token-file")
        .arg(m.data.join("enroll.token"))
        .arg("--replay")
        .arg(&empty)
        .args(["--metrics-listen", &metrics])
        .args(["--log", "info"]);
    (
        Proc::start(name, cmd, root),
        format!("http://{metrics}/metrics"),
    )
}

/// One sample of the edge's Prometheus text.
fn edge_metric(url: &str, name: &str) -> Option<u64> {
    let body = ureq::get(url)
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// A request with the test API token and a raw body; the status and the JSON answer.
fn send(method: &str, url: &str, body: &str) -> (u16, Value) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let resp = match method {
        "PUT" => agent.put(url).header("Authorization", bearer()).send(body),
        _ => agent.post(url).header("Authorization", bearer()).send(body),
    };
    let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn edge_id(m: &Manager) -> String {
    wait_for("an enrolled edge", Duration::from_secs(30), || {
        let v = get_json(&format!("{}/api/v1/edges", m.http))?;
        Some(
            v["edges"].as_array()?.first()?["edge_id"]
                .as_str()?
                .to_owned(),
        )
    })
}

fn effective(m: &Manager, id: &str) -> Value {
    get_json(&format!("{}/api/v1/edges/{id}/config/effective", m.http)).expect("effective")
}

/// Waits until the edge reports `version`; returns how long it took.
fn wait_reported(m: &Manager, id: &str, version: u64) -> Duration {
    let t0 = Instant::now();
    wait_for(
        &format!("edge reports config v{version}"),
        Duration::from_secs(10),
        || {
            let e = effective(m, id);
            (e["reported_version"].as_u64() == Some(version) && e["in_sync"] == true).then_some(())
        },
    );
    t0.elapsed()
}

#[test]
fn config_layers_reach_the_edge_live_and_capture_restarts_only_for_capture_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let m = start_manager(root, "");
    let (mut edge, metrics) = start_edge(root, &m, m.mqtt_port, "edge");
    let id = edge_id(&m);
    wait_reported(&m, &id, 1);
    let starts = || edge_metric(&metrics, "tapfleet_edge_capture_starts_total");
    wait_for("capture started once", Duration::from_secs(10), || {
        (starts() == Some(1)).then_some(())
    });

    // Fleet defaults (a cache setting): new version, applied live, capture not restarted.
    let (status, v) = send(
        "PUT",
        &format!("{}/api/v1/config/defaults", m.http),
        r#"{"cache": {"high_water_percent": 90}}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["changed"], json!([{"edge_id": id, "version": 2}]));
    let took = wait_reported(&m, &id, 2);
    eprintln!("config v2 reported after {took:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(starts(), Some(1), "a cache change does not restart capture");

    // The edge's own override (TOML), a capture setting: capture restarts.
    let (status, v) = send(
        "PUT",
        &format!("{}/api/v1/edges/{id}/config", m.http),
        "[capture]\nrtp_timeout_secs = 30\n",
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 3, "{v}");
    wait_reported(&m, &id, 3);
    wait_for("capture restarted", Duration::from_secs(10), || {
        (starts() == Some(2)).then_some(())
    });

    // A group the edge is in.
    let (status, v) = send(
        "PUT",
        &format!("{}/api/v1/config/groups/night", m.http),
        &json!({"members": [id], "config": {"telemetry_interval_secs": 2}}).to_string(),
    );
    assert_eq!(status, 200, "{v}");
    wait_reported(&m, &id, 4);

    // Invalid: refused with the field named, no new version.
    let (status, v) = send(
        "PUT",
        &format!("{}/api/v1/config/defaults", m.http),
        r#"{"cache": {"high_water_percent": 150}}"#,
    );
    assert_eq!(status, 400, "{v}");
    let err = v["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("cache.high_water_percent: must be between 1 and 100"),
        "{err}"
    );
    let (status, v) = send(
        "POST",
        &format!("{}/api/v1/config/validate", m.http),
        r#"{"capture": {"snaplen": 10, "promiscuous": "yes"}}"#,
    );
    assert_eq!(status, 400, "{v}");
    let paths: Vec<&str> = v["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(paths, ["capture.promiscuous"], "{v}");

    // Desired and reported side by side; the layers merged.
    let e = effective(&m, &id);
    assert_eq!(
        (
            e["desired_version"].as_u64(),
            e["reported_version"].as_u64()
        ),
        (Some(4), Some(4))
    );
    assert_eq!(e["groups"], json!(["night"]));
    assert_eq!(e["effective"]["cache"]["high_water_percent"], 90);
    assert_eq!(e["effective"]["capture"]["rtp_timeout_secs"], 30);
    assert_eq!(e["effective"]["telemetry_interval_secs"], 2);
    let h = get_json(&format!("{}/api/v1/edges/{id}/config/history", m.http)).expect("history");
    let h = h["history"].as_array().expect("history");
    let versions: Vec<u64> = h.iter().filter_map(|x| x["version"].as_u64()).collect();
    assert_eq!(versions, [4, 3, 2, 1]);
    let who: Vec<(&str, &str)> = h
        .iter()
        .map(|x| {
            (
                x["actor"].as_str().unwrap_or("?"),
                x["cause"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("admin", "group/night"),
            ("admin", &*format!("edge/{id}")),
            ("admin", "defaults"),
            ("enrollment", "enrollment")
        ]
    );

    // The CLI against the same API.
    let bad = root.join("bad.toml");
    std::fs::write(&bad, "[cache]\ncapacity_bytes = 5\n").expect("bad.toml");
    let out = Command::new(bin("tapfleet-manager"))
        .args(["config", "validate"])
        .arg(&bad)
        .args(["--manager", &m.http])
        .env("TAPFLEET_API_TOKEN", API_TOKEN)
        .output()
        .expect("cli");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "invalid config accepted");
    assert!(
        stderr.contains("cache.capacity_bytes: must be at least 1048576"),
        "{stderr}"
    );
    let out = Command::new(bin("tapfleet-manager"))
        .args(["config", "get", "effective", &id, "--manager", &m.http])
        .env("TAPFLEET_API_TOKEN", API_TOKEN)
        .output()
        .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["desired_version"], 4);

    // Telemetry history for charts, since a time; every field the edge sends is kept.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        - 120_000;
    let sample = wait_for("a telemetry sample", Duration::from_secs(10), || {
        let v = get_json(&format!(
            "{}/api/v1/edges/{id}/telemetry?since={since}",
            m.http
        ))?;
        v["samples"].as_array()?.last().cloned()
    });
    for field in [
        "packets",
        "bytes",
        "kernel_drops",
        "interface_drops",
        "active_calls",
        "recordings",
        "cache_used_bytes",
        "backlog_bytes",
        "backlog_oldest_secs",
        "upload_bytes_per_sec",
        "errors",
        "transfer_failures",
    ] {
        assert!(sample.get(field).is_some(), "{field} missing in {sample}");
    }
    let offset = sample["clock_offset_ms"].as_i64().expect("clock offset");
    assert!(offset.abs() < 2000, "same host, same clock: {offset} ms");
    let (status, _) = send("POST", &format!("{}/api/v1/config/validate", m.http), "{}");
    assert_eq!(status, 200);
    let bad = ureq::get(&format!(
        "{}/api/v1/edges/{id}/telemetry?since=yesterday",
        m.http
    ))
    .header("Authorization", bearer())
    .config()
    .http_status_as_error(false)
    .build()
    .call()
    .expect("telemetry");
    assert_eq!(bad.status().as_u16(), 400);

    // With the cloud unreachable, the edge starts on its last good config.
    assert!(edge.terminate(Duration::from_secs(20)), "edge stops");

    // A manager restart keeps the telemetry history: every sample comes back from its store
    // (SIGTERM writes the minutes since the last periodic write). The edge is stopped, so
    // nothing changes it in between.
    let history = |m: &Manager| -> Vec<Value> {
        get_json(&format!(
            "{}/api/v1/edges/{id}/telemetry?since={since}",
            m.http
        ))
        .and_then(|v| v["samples"].as_array().cloned())
        .unwrap_or_default()
    };
    let before = history(&m);
    assert!(!before.is_empty());
    let mut m = m;
    assert!(m.proc.terminate(Duration::from_secs(20)), "manager stops");
    let m = start_manager_named(root, "", "manager-2");
    let after = history(&m);
    assert_eq!(after, before, "telemetry history after a restart");
    eprintln!("telemetry history after a restart: {} samples", after.len());
    let dead_port = free_port();
    let (_edge2, metrics2) = start_edge(root, &m, dead_port, "edge-offline");
    wait_for("offline edge on config v4", Duration::from_secs(15), || {
        (edge_metric(&metrics2, "tapfleet_edge_config_version") == Some(4)).then_some(())
    });
    assert_eq!(edge_metric(&metrics2, "tapfleet_edge_connected"), Some(0));
}

/// A webhook receiver: records every JSON body; answers the first request 500 (so the manager
/// must retry), the others 200.
fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            if n > 0
                && let Ok(v) = serde_json::from_slice(&body)
            {
                g.lock().expect("lock").push(v);
            }
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, got)
}

#[test]
fn a_killed_edge_is_offline_and_alerted_within_one_and_a_half_keep_alives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (hook, received) = webhook();
    let m = start_manager(
        root,
        &format!("[alerts.webhook]\nurl = \"{hook}\"\ntimeout_secs = 2\nretries = 3\n"),
    );
    let (mut edge, _) = start_edge(root, &m, m.mqtt_port, "edge");
    let id = edge_id(&m);
    wait_reported(&m, &id, 1);
    let online = |m: &Manager| -> Option<bool> {
        let v = get_json(&format!("{}/api/v1/edges", m.http))?;
        v["edges"].as_array()?.first()?["online"].as_bool()
    };
    wait_for("edge online", Duration::from_secs(10), || {
        (online(&m) == Some(true)).then_some(())
    });

    edge.kill();
    let t0 = Instant::now();
    let limit = EDGE_KEEP_ALIVE.mul_f64(1.5);
    wait_for("edge offline", limit, || {
        (online(&m) == Some(false)).then_some(())
    });
    let offline_after = t0.elapsed();
    wait_for("offline alert", limit.saturating_sub(t0.elapsed()), || {
        let v = get_json(&format!("{}/api/v1/alerts?active=true&edge={id}", m.http))?;
        v["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["rule"] == "offline" && a["severity"] == "critical")
            .then_some(())
    });
    let alerted_after = t0.elapsed();
    eprintln!("offline after {offline_after:?}, alert after {alerted_after:?} (limit {limit:?})");

    // The webhook got it despite its first 500; /metrics counts it.
    let raised = wait_for("webhook alert_raised", Duration::from_secs(10), || {
        received
            .lock()
            .ok()?
            .iter()
            .find(|b| b["event"] == "alert_raised" && b["alert"]["rule"] == "offline")
            .cloned()
    });
    assert_eq!(raised["alert"]["edge_id"], id.as_str());
    assert_eq!(raised["tenant"], "default");
    let metrics = ureq::get(&format!("{}/metrics", m.http))
        .header("Authorization", bearer())
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    assert!(
        metrics.contains("tapfleet_manager_alerts_active{rule=\"offline\"} 1"),
        "{metrics}"
    );

    // Back online: cleared everywhere.
    let (edge2, _) = start_edge(root, &m, m.mqtt_port, "edge-again");
    wait_for("offline alert cleared", Duration::from_secs(15), || {
        let v = get_json(&format!("{}/api/v1/alerts?active=true&edge={id}", m.http))?;
        v["alerts"].as_array()?.is_empty().then_some(())
    });
    wait_for("webhook alert_cleared", Duration::from_secs(10), || {
        received
            .lock()
            .ok()?
            .iter()
            .any(|b| b["event"] == "alert_cleared" && b["alert"]["rule"] == "offline")
            .then_some(())
    });
    let all = get_json(&format!("{}/api/v1/alerts?edge={id}", m.http)).expect("alerts");
    let a = &all["alerts"][0];
    assert_eq!(a["rule"], "offline");
    assert!(a["cleared_ms"].as_i64() >= a["raised_ms"].as_i64(), "{a}");

    // A hung edge (SIGSTOP: its socket stays open, it sends no PINGREQ): the broker ends it by
    // its keep-alive and publishes its Will.
    drop(edge2); // kill -9
    wait_for("edge offline", limit, || {
        (online(&m) == Some(false)).then_some(())
    });
    let (edge3, _) = start_edge(root, &m, m.mqtt_port, "edge-hung");
    wait_for("edge online again", Duration::from_secs(15), || {
        (online(&m) == Some(true)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let stopped = Command::new("kill")
        .args(["-STOP", &edge3.pid().to_string()])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    let t0 = Instant::now();
    wait_for("hung edge offline", limit + Duration::from_secs(1), || {
        (online(&m) == Some(false)).then_some(())
    });
    eprintln!("hung edge offline after {:?}", t0.elapsed());
    let _ = Command::new("kill")
        .args(["-CONT", &edge3.pid().to_string()])
        .status();
}
