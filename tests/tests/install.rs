//! One-command installation of an edge from the manager, as a site's admin would do it:
//! `curl -fsS MANAGER/install.sh | sh -s -- --token T` (into a temporary `--prefix`, with
//! `--no-start`, so the machine's /etc and /usr stay untouched; the system user `tapfleet` is
//! created if missing). Checks what it installed (binary with the manager's SHA-256, env file and
//! token 0600 owned by tapfleet, the fleet CA, the unit; `systemd-analyze verify` accepts the
//! unit), then starts the edge exactly as the unit's `ExecStart` would: as `tapfleet`, with the
//! env file and only the unit's ambient capabilities (`setpriv`), capturing live on `lo`. It
//! enrolls over TLS (the CA from `/ca.pem`) and shows in `/api/v1/edges`, running unprivileged
//! with CAP_NET_RAW + CAP_NET_ADMIN only. Needs root, curl, setpriv and systemd-analyze.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tapfleet_tests::{Proc, bin, free_port, get_json, require_tool, run_ok, wait_for};

/// `Key=Value` lines of a unit's `[Service]` section (last one wins).
fn unit_service(unit: &str) -> BTreeMap<String, String> {
    let mut in_service = false;
    let mut out = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && let Some((k, v)) = line.split_once('=') {
            out.insert(k.to_owned(), v.to_owned());
        }
    }
    out
}

/// `KEY=VALUE` lines of an environment file, as systemd's `EnvironmentFile=` reads them.
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn id_u(user: Option<&str>) -> u32 {
    let mut c = Command::new("id");
    c.arg("-u").args(user);
    run_ok(c).trim().parse().expect("uid")
}

/// SHA-256 by coreutils' `sha256sum` (a debug-built hasher takes seconds on a 100 MB binary).
fn sha256sum(p: &Path) -> String {
    let mut c = Command::new("sha256sum");
    c.arg(p);
    run_ok(c)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn mode_owner(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.permissions().mode() & 0o7777, m.uid())
}

/// A `/proc/PID/status` field.
fn proc_status(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default()
}

#[test]
fn install_script_installs_an_unprivileged_edge_that_enrolls() {
    let t0 = Instant::now();
    for tool in ["curl", "setpriv", "systemd-analyze", "sha256sum"] {
        require_tool(tool);
    }
    assert_eq!(
        id_u(None),
        0,
        "the installer test runs as root (it creates the tapfleet user and chowns files)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // The edge runs as tapfleet: it must be able to reach its files under the temporary prefix.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (http_port, tls_port) = (free_port(), free_port());
    let http = format!("http://127.0.0.1:{http_port}");
    let edge_bin = bin("tapfleet-edge");
    let mut cmd = tapfleet_tests::manager_serve(&dir.path().join("manager"), http_port);
    cmd.args(["--mqtt-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--mqtt-tls-listen", &format!("127.0.0.1:{tls_port}")])
        .arg("--edge-binary")
        .arg(&edge_bin)
        .env("RUST_LOG", "info");
    let _manager = Proc::start("manager", cmd, dir.path());
    wait_for("manager /healthz", Duration::from_secs(30), || {
        ureq::get(&format!("{http}/healthz")).call().ok()
    });
    let token = std::fs::read_to_string(dir.path().join("manager/enroll.token")).expect("token");
    println!("manager up after {:?}", t0.elapsed());

    // The public download routes, without credentials.
    let mut resp = ureq::get(&format!("{http}/download/tapfleet-edge.sha256"))
        .call()
        .expect("sha256 route is public");
    let served = resp.body_mut().read_to_string().expect("body");
    assert_eq!(
        served.split_whitespace().next(),
        Some(sha256sum(&edge_bin).as_str()),
        "served digest"
    );
    let resp = ureq::get(&format!("{http}/download/tapfleet-edge"))
        .call()
        .expect("binary route is public");
    let len = std::fs::metadata(&edge_bin).expect("edge binary").len();
    assert_eq!(
        resp.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some(len.to_string().as_str())
    );
    drop(resp);

    // The one command (here into a prefix, not started).
    let prefix = dir.path().join("root");
    let t_install = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -fsS {http}/install.sh | sh -s -- --token {} --prefix {} --no-start --interface lo --metrics 127.0.0.1:{}",
            token.trim(),
            prefix.display(),
            free_port()
        ))
        .output()
        .expect("sh runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "install failed:\n{said}");
    assert!(
        said.contains("systemctl daemon-reload && systemctl enable --now tapfleet-edge.service")
    );
    println!("installed in {:?}:\n{said}", t_install.elapsed());

    let tapfleet = id_u(Some("tapfleet"));
    let installed = prefix.join("usr/local/bin/tapfleet-edge");
    assert_eq!(sha256sum(&installed), sha256sum(&edge_bin));
    assert_eq!(mode_owner(&installed).0, 0o755);
    let env_path = prefix.join("etc/tapfleet/edge.env");
    assert_eq!(mode_owner(&env_path), (0o600, tapfleet), "edge.env");
    assert_eq!(
        mode_owner(&prefix.join("etc/tapfleet/enroll.token")),
        (0o600, tapfleet),
        "enroll.token"
    );
    assert_eq!(
        mode_owner(&prefix.join("var/lib/tapfleet-edge")),
        (0o700, tapfleet),
        "data dir"
    );
    let ca = std::fs::read_to_string(prefix.join("etc/tapfleet/fleet-ca.crt")).expect("ca");
    assert_eq!(
        ca,
        std::fs::read_to_string(dir.path().join("manager/ca/ca.crt")).expect("manager ca")
    );
    let env = env_file(&std::fs::read_to_string(&env_path).expect("env"));
    assert!(
        env.contains(&(
            "TAPFLEET_BROKER".into(),
            format!("mqtts://127.0.0.1:{tls_port}")
        )),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|(_, v)| v.contains(token.trim())),
        "token in the env file"
    );

    // The unit: unprivileged, capture capabilities only, paths moved under the prefix.
    let unit_path = prefix.join("etc/systemd/system/tapfleet-edge.service");
    let unit_text = std::fs::read_to_string(&unit_path).expect("unit");
    let unit = unit_service(&unit_text);
    for (k, v) in [
        ("User", "tapfleet"),
        ("Group", "tapfleet"),
        ("AmbientCapabilities", "CAP_NET_RAW CAP_NET_ADMIN"),
        ("CapabilityBoundingSet", "CAP_NET_RAW CAP_NET_ADMIN"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
    ] {
        assert_eq!(unit.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!(
        unit.get("EnvironmentFile").map(String::as_str),
        Some(env_path.to_str().expect("utf-8"))
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Start it as systemd would: User/Group, the ambient capabilities, no new privileges, the
    // env file, ExecStart.
    let exec: Vec<&str> = unit["ExecStart"].split_whitespace().collect();
    assert_eq!(Path::new(exec[0]), installed);
    let caps = "+net_raw,+net_admin";
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=tapfleet",
        "--regid=tapfleet",
        "--init-groups",
        &format!("--inh-caps=-all,{caps}"),
        &format!("--ambient-caps=-all,{caps}"),
        &format!("--bounding-set=-all,{caps}"),
        "--no-new-privs",
        "--",
    ])
    .args(&exec)
    .env_clear()
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    .current_dir("/");
    let mut edge = Proc::start("edge", cmd, dir.path());
    println!("edge started after {:?}", t0.elapsed());

    let edge_id = wait_for(
        "the edge in /api/v1/edges, online",
        Duration::from_secs(60),
        || {
            let v = get_json(&format!("{http}/api/v1/edges"))?;
            let e = v.get("edges")?.as_array()?.first()?.clone();
            (e["online"] == true).then(|| e["edge_id"].as_str().map(str::to_owned))?
        },
    );
    assert!(edge.running(), "edge exited:\n{}", edge.output());
    let pid = edge.pid();
    let uid = proc_status(pid, "Uid");
    assert!(
        uid.split_whitespace().all(|u| u == tapfleet.to_string()),
        "edge runs as {uid}"
    );
    // CAP_NET_ADMIN = bit 12, CAP_NET_RAW = bit 13: nothing else, effective and bounding.
    assert_eq!(proc_status(pid, "CapEff"), "0000000000003000");
    assert_eq!(proc_status(pid, "CapBnd"), "0000000000003000");
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    let identity = prefix.join("var/lib/tapfleet-edge/identity.json");
    assert_eq!(mode_owner(&identity), (0o600, tapfleet), "identity.json");
    let log = edge.output();
    assert!(
        !log.contains("Operation not permitted") && !log.contains("capture failed"),
        "capture needs more than the unit gives:\n{log}"
    );
    println!("edge {edge_id} enrolled unprivileged in {:?}", t0.elapsed());
}

#[test]
fn a_manager_without_an_edge_binary_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http_port = free_port();
    let http = format!("http://127.0.0.1:{http_port}");
    let mut cmd = tapfleet_tests::manager_serve(&dir.path().join("manager"), http_port);
    cmd.args(["--mqtt-listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--edge-binary")
        .arg(dir.path().join("no-such-binary"));
    let _manager = Proc::start("manager", cmd, dir.path());
    wait_for("manager /healthz", Duration::from_secs(30), || {
        ureq::get(&format!("{http}/healthz")).call().ok()
    });
    for path in ["/download/tapfleet-edge", "/download/tapfleet-edge.sha256"] {
        let mut resp = ureq::get(&format!("{http}{path}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("answers");
        assert_eq!(resp.status().as_u16(), 404, "{path}");
        let body = resp.body_mut().read_to_string().expect("body");
        assert!(body.contains("--edge-binary"), "{path}: {body}");
    }
    // The script itself is still served (it fails clearly when it downloads the binary).
    let mut resp = ureq::get(&format!("{http}/install.sh"))
        .call()
        .expect("script");
    let script = resp.body_mut().read_to_string().expect("body");
    assert!(script.contains(&format!("MANAGER_URL='{http}'")));
    assert!(script.contains("BROKER_URL='mqtt://127.0.0.1:"));
}
