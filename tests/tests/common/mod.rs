//! Shared harness of the job and fault tests (each tests/*.rs is its own crate and uses part of
//! it): a manager that can be killed and restarted on the same data folder and ports, edges with
//! their data folders, the manager's HTTP API with the test API token, the `tapfleet-manager job`
//! CLI, and checks that a target holds exactly the catalog's copies with matching SHA-256.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tapfleet_tests::{Proc, bin, free_port, sha256_file, wait_for};

/// The API token the manager is started with (its auth accepts it as `Authorization: Bearer`).
pub const TOKEN: &str = tapfleet_tests::API_TOKEN;

/// A manager process and how to start it again.
pub struct Manager {
    pub root: PathBuf,
    pub data: PathBuf,
    pub http: String,
    /// Where edges reach the broker (127.0.0.1 unless started with [`Manager::start_on`]).
    pub mqtt_host: String,
    pub mqtt_port: u16,
    pub proc: Proc,
    args: Vec<String>,
    starts: u32,
}

impl Manager {
    /// Starts a manager in `root/manager` (embedded broker unless `broker_url`), with a
    /// `--config` file when `config` is given.
    pub fn start(root: &Path, config: Option<&str>, broker_url: Option<(&str, u16)>) -> Manager {
        Self::start_on(root, config, broker_url, "127.0.0.1")
    }

    /// [`Manager::start`] with the embedded broker listening on `mqtt_host` (a local address).
    pub fn start_on(
        root: &Path,
        config: Option<&str>,
        broker_url: Option<(&str, u16)>,
        mqtt_host: &str,
    ) -> Manager {
        let data = root.join("manager");
        let http_port = free_port();
        let mut args = vec![
            "serve".to_owned(),
            "--data".to_owned(),
            data.display().to_string(),
            "--http".to_owned(),
            format!("127.0.0.1:{http_port}"),
        ];
        let mqtt_port = match broker_url {
            Some((url, port)) => {
                args.extend(["--broker".to_owned(), url.to_owned()]);
                port
            }
            None => {
                let p = free_port();
                args.extend(["--mqtt-listen".to_owned(), format!("{mqtt_host}:{p}")]);
                if mqtt_host != "127.0.0.1" {
                    // The WAN test's veth link is private to the test; plain MQTT keeps it simple.
                    args.push("--allow-plain-non-loopback".to_owned());
                }
                p
            }
        };
        if let Some(text) = config {
            let path = root.join("manager.toml");
            std::fs::write(&path, text).expect("manager.toml");
            args.extend(["--config".to_owned(), path.display().to_string()]);
        }
        let proc = Self::spawn(root, &args, 1);
        let m = Manager {
            root: root.to_path_buf(),
            data,
            http: format!("http://127.0.0.1:{http_port}"),
            mqtt_host: mqtt_host.to_owned(),
            mqtt_port,
            proc,
            args,
            starts: 1,
        };
        m.wait_healthy();
        m
    }

    fn spawn(root: &Path, args: &[String], n: u32) -> Proc {
        let mut cmd = Command::new(bin("tapfleet-manager"));
        cmd.args(args)
            .env("RUST_LOG", "info")
            .env("TAPFLEET_API_TOKEN", TOKEN)
            .env("TAPFLEET_ADMIN_PASSWORD", "test-admin-password-1234");
        Proc::start(&format!("manager-{n}"), cmd, root)
    }

    fn wait_healthy(&self) {
        wait_for("manager /healthz", Duration::from_secs(30), || {
            ureq::get(&format!("{}/healthz", self.http)).call().ok()
        });
    }

    /// Starts the manager again with the same data folder, ports and config.
    pub fn restart(&mut self) {
        self.starts += 1;
        self.proc = Self::spawn(&self.root, &self.args, self.starts);
        self.wait_healthy();
    }

    /// The folder of an fs target.
    pub fn target_dir(&self, name: &str) -> PathBuf {
        self.data.join("targets").join(name)
    }
}

/// Starts an edge with data in `root/edge`, enrolling with the manager's token, replaying `replay`.
pub fn start_edge(m: &Manager, name: &str, replay: &Path, extra: &[&str]) -> Proc {
    start_edge_at(m, name, &m.root.join("edge"), None, replay, extra)
}

/// Starts an edge with data in `data` (see [`start_edge`]); with `host`, in a UTS namespace of
/// its own with that host name (an edge enrolls under its host name: two edges on one machine).
pub fn start_edge_at(
    m: &Manager,
    name: &str,
    data: &Path,
    host: Option<&str>,
    replay: &Path,
    extra: &[&str],
) -> Proc {
    let broker = format!("mqtt://{}:{}", m.mqtt_host, m.mqtt_port);
    let mut cmd = match host {
        None => Command::new(bin("tapfleet-edge")),
        Some(h) => {
            let mut c = Command::new("unshare");
            c.args([
                "--uts",
                "sh",
                "-c",
                &format!("hostname {h} && exec \"$0\" \"$@\""),
            ])
            .arg(bin("tapfleet-edge"));
            c
        }
    };
    cmd.args(edge_args(m, data, &broker, replay, extra));
    Proc::start(name, cmd, &m.root)
}

/// The arguments of `tapfleet-edge` for an edge with data in `data`, enrolling with the
/// manager's token on `broker`, replaying `replay` (for a command that wraps the edge).
pub fn edge_args(
    m: &Manager,
    data: &Path,
    broker: &str,
    replay: &Path,
    extra: &[&str],
) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec!["run".into(), "--data".into(), data.into()];
    a.extend(["--broker".into(), broker.into(), "--token-file".into()]);
    a.push(m.data.join("enroll.token").into());
    a.extend(["--replay".into(), replay.into()]);
    a.extend(extra.iter().map(Into::into));
    a.extend([
        "--metrics-listen".into(),
        format!("127.0.0.1:{}", free_port()).into(),
    ]);
    a.extend(["--log".into(), "info".into()]);
    a
}

pub use tapfleet_tests::empty_pcap;

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    ureq::Agent::new_with_config(config)
}

/// GET with the API token; `None` on any error or non-2xx status (for polling).
pub fn api_get(m: &Manager, path: &str) -> Option<serde_json::Value> {
    let mut r = agent()
        .get(format!("{}{path}", m.http))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.body_mut().read_json().ok()
}

/// GET raw bytes with the API token: status and body.
pub fn api_bytes(m: &Manager, path: &str) -> (u16, Vec<u8>) {
    let mut r = agent()
        .get(format!("{}{path}", m.http))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .expect("GET");
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("body");
    (status, body)
}

/// PUT/POST/DELETE JSON with the API token: status and JSON answer.
pub fn api_send(
    m: &Manager,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let url = format!("{}{path}", m.http);
    let auth = format!("Bearer {TOKEN}");
    let a = agent();
    let r = match method {
        "POST" => a.post(url).header("Authorization", &auth).send_json(body),
        "PUT" => a.put(url).header("Authorization", &auth).send_json(body),
        _ => a.delete(url).header("Authorization", &auth).call(),
    };
    let mut r = r.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Runs `tapfleet-manager job|hold ...` against the manager.
pub fn cli(m: &Manager, args: &[&str]) -> Output {
    Command::new(bin("tapfleet-manager"))
        .args(args)
        .args(["--manager", &m.http])
        .env("TAPFLEET_API_TOKEN", TOKEN)
        .output()
        .expect("running tapfleet-manager")
}

/// Like [`cli`], and asserts success.
pub fn cli_ok(m: &Manager, args: &[&str]) -> String {
    let out = cli(m, args);
    assert!(
        out.status.success(),
        "tapfleet-manager {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every recording of the catalog, by id.
pub fn catalog(m: &Manager) -> BTreeMap<String, serde_json::Value> {
    let v = api_get(m, "/api/v1/recordings").expect("catalog");
    v["recordings"]
        .as_array()
        .expect("recordings")
        .iter()
        .filter_map(|r| Some((r["recording_id"].as_str()?.to_owned(), r.clone())))
        .collect()
}

/// The catalog once `n` recordings are `stored`.
pub fn wait_stored(
    m: &Manager,
    n: usize,
    timeout: Duration,
) -> BTreeMap<String, serde_json::Value> {
    wait_for(&format!("{n} recordings stored"), timeout, || {
        let v = api_get(m, "/api/v1/recordings")?;
        let stored: BTreeMap<String, serde_json::Value> = v["recordings"]
            .as_array()?
            .iter()
            .filter(|r| r["state"] == "stored")
            .filter_map(|r| Some((r["recording_id"].as_str()?.to_owned(), r.clone())))
            .collect();
        (stored.len() >= n).then_some(stored)
    })
}

/// The catalog's locations of a recording in `target`: file name -> path (incl. manifest.json).
pub fn locations_in(rec: &serde_json::Value, target: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in rec["files"].as_array().into_iter().flatten() {
        for l in f["locations"].as_array().into_iter().flatten() {
            if l["target"] == target {
                out.insert(
                    f["name"].as_str().unwrap_or_default().to_owned(),
                    l["path"].as_str().unwrap_or_default().to_owned(),
                );
            }
        }
    }
    for l in rec["manifest_locations"].as_array().into_iter().flatten() {
        if l["target"] == target {
            out.insert(
                "manifest.json".to_owned(),
                l["path"].as_str().unwrap_or_default().to_owned(),
            );
        }
    }
    out
}

/// Every regular file under `dir`, relative, `/`-separated.
pub fn files_under(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(d) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// The fs target `target` holds exactly the catalog's copies in it — every file of every
/// recording listed there, once, with the catalog's SHA-256 (and the edge's bytes when the edge
/// still has them), and nothing else (no duplicate, no half object).
pub fn assert_target_exact(
    m: &Manager,
    target: &str,
    recs: &BTreeMap<String, serde_json::Value>,
    expect_recordings: usize,
) {
    let root = m.target_dir(target);
    let mut expected = BTreeSet::new();
    let mut with_copy = 0;
    let edge_cache = m.root.join("edge/cache/recordings");
    for (id, rec) in recs {
        let locs = locations_in(rec, target);
        if locs.is_empty() {
            continue;
        }
        with_copy += 1;
        let files = rec["files"].as_array().expect("files");
        assert_eq!(
            locs.len(),
            files.len() + 1,
            "{id}: every file and manifest.json in {target}: {locs:?}"
        );
        for (name, path) in &locs {
            let p = root.join(path);
            let sha = sha256_file(&p);
            if let Some(f) = files.iter().find(|f| f["name"] == name.as_str()) {
                assert_eq!(
                    f["sha256"].as_str(),
                    Some(sha.as_str()),
                    "{id}/{name} sha256"
                );
            }
            let on_edge = edge_cache.join(id).join(name);
            if on_edge.exists() {
                assert_eq!(sha256_file(&on_edge), sha, "{id}/{name}: target == edge");
            }
            expected.insert(path.clone());
        }
    }
    assert_eq!(
        with_copy, expect_recordings,
        "recordings with a copy in {target}"
    );
    let actual = files_under(&root);
    assert_eq!(
        actual, expected,
        "{target} holds exactly the catalog's objects (no duplicate, no partial object)"
    );
    let tmp = m.data.join("targets").join(format!(".tmp-{target}"));
    assert!(
        files_under(&tmp).is_empty(),
        "no temporary object left in {}",
        tmp.display()
    );
}

/// The id of the only enrolled edge.
pub fn edge_id(m: &Manager) -> String {
    wait_for("an enrolled edge", Duration::from_secs(30), || {
        let v = api_get(m, "/api/v1/edges")?;
        Some(
            v["edges"].as_array()?.first()?["edge_id"]
                .as_str()?
                .to_owned(),
        )
    })
}

/// Enrolls an edge on an empty capture, applies `config` (EdgeConfig JSON) and waits until the
/// edge reports it; the edge is stopped again, so the next start records under that config.
pub fn enroll_with_config(m: &Manager, config: serde_json::Value) -> String {
    enroll_at_with_config(m, &m.root.join("edge"), None, config)
}

/// [`enroll_with_config`] for an edge with data in `data` and host name `host` (see
/// [`start_edge_at`]).
pub fn enroll_at_with_config(
    m: &Manager,
    data: &Path,
    host: Option<&str>,
    config: serde_json::Value,
) -> String {
    let edges = |m: &Manager| -> Option<Vec<serde_json::Value>> {
        Some(api_get(m, "/api/v1/edges")?["edges"].as_array()?.clone())
    };
    let before: BTreeSet<String> = edges(m)
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["edge_id"].as_str().map(str::to_owned))
        .collect();
    let empty = empty_pcap(&m.root);
    let mut edge = start_edge_at(m, "edge-enroll", data, host, &empty, &[]);
    let id = wait_for("a newly enrolled edge", Duration::from_secs(30), || {
        edges(m)?
            .iter()
            .filter_map(|e| e["edge_id"].as_str())
            .find(|id| !before.contains(*id))
            .map(str::to_owned)
    });
    let (status, v) = api_send(m, "PUT", &format!("/api/v1/edges/{id}/config"), &config);
    assert_eq!(status, 200, "config accepted: {v}");
    let version = v["version"].as_u64().expect("version");
    wait_for("edge applied its config", Duration::from_secs(20), || {
        let e = edges(m)?
            .into_iter()
            .find(|e| e["edge_id"] == id.as_str())?;
        (e["config_version_reported"].as_u64() == Some(version)).then_some(())
    });
    assert!(edge.terminate(Duration::from_secs(20)), "edge stops");
    id
}
