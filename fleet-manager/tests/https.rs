//! The manager's HTTPS listener (`--https-listen`) with a real client (curl): the fleet CA
//! verifies it and nothing else does, a login over HTTPS sets a `Secure` cookie (over plain HTTP
//! it does not), idle sockets that never handshake do not hold up a real request, the install
//! script served over HTTPS points at https and carries the CA, the CA fingerprint the manager
//! logs is openssl's; the manager's own CLI talks to it over https with `--ca-file` (and
//! refuses a server its CA file does not vouch for); alerts reach an `https://` webhook whose
//! private CA is the webhook's `ca_file`; and plain listeners beyond loopback are refused
//! without `--allow-plain-non-loopback`.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fake_edge::Manager;
use common::free_port;

const PASSWORD: &str = "correct horse battery";

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl runs (deploy/install-deps.sh installs it)")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `Set-Cookie` header of a login at `url` (curl `extra` args first).
fn login_cookie(extra: &[&str], url: &str) -> String {
    let body = format!("{{\"username\":\"admin\",\"password\":\"{PASSWORD}\"}}");
    let mut args = extra.to_vec();
    args.extend([
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "content-type: application/json",
        "--data",
        &body,
        url,
    ]);
    let out = curl(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let headers = text(&out.stdout);
    assert!(headers.starts_with("HTTP/1.1 200"), "{headers}");
    headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no Set-Cookie in {headers}"))
        .trim()
        .to_owned()
}

#[test]
fn https_listener_serves_with_the_fleet_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let https_port = free_port();
    let m = Manager::start(
        &data,
        http,
        free_port(),
        &dir.path().join("manager.log"),
        |c| {
            c.args(["--https-listen", &format!("127.0.0.1:{https_port}")])
                .args(["--admin-password", PASSWORD]);
        },
    );
    let ca = data.join("ca/ca.crt");
    let ca = ca.to_str().expect("utf-8 path");
    let base = format!("https://localhost:{https_port}");

    // The fleet CA verifies the server (name localhost and IP 127.0.0.1 alike).
    for url in [
        format!("{base}/healthz"),
        format!("https://127.0.0.1:{https_port}/healthz"),
    ] {
        let out = curl(&["--cacert", ca, "-w", " %{http_code}", &url]);
        assert!(out.status.success(), "{url}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "ok 200", "{url}");
    }
    // Without it (the system's CAs only): a TLS failure, no response.
    let out = curl(&[&format!("{base}/healthz")]);
    assert_eq!(
        out.status.code(),
        Some(60),
        "curl without the CA: {}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    // Plain HTTP on the TLS port gets no answer either.
    let out = curl(&[&format!("http://127.0.0.1:{https_port}/healthz")]);
    assert!(!out.status.success());

    // The session cookie is `Secure` over HTTPS only.
    let tls_cookie = login_cookie(&["--cacert", ca], &format!("{base}/api/v1/auth/login"));
    assert!(tls_cookie.contains("tapfleet_session="), "{tls_cookie}");
    assert!(tls_cookie.contains("; Secure"), "{tls_cookie}");
    assert!(tls_cookie.contains("HttpOnly"), "{tls_cookie}");
    let plain_cookie = login_cookie(&[], &format!("http://{http}/api/v1/auth/login"));
    assert!(!plain_cookie.contains("Secure"), "{plain_cookie}");

    // 50 sockets that never start a handshake do not hold up a real request.
    let idle: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(("127.0.0.1", https_port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let out = curl(&["--cacert", ca, &format!("{base}/healthz")]);
    let took = t0.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok");
    assert!(took < Duration::from_secs(1), "request took {took:?}");
    eprintln!("HTTPS request with 50 idle sockets open: {took:?}");
    drop(idle);

    // The install script over HTTPS: an https manager URL and the CA to check downloads with.
    let out = curl(&["--cacert", ca, &format!("{base}/install.sh")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    assert!(
        script.contains(&format!("MANAGER_URL='{base}'")),
        "{script}"
    );
    let ca_pem = std::fs::read_to_string(ca).expect("CA");
    assert!(script.contains(&format!("FLEET_CA_PEM='{}'", ca_pem.trim())));

    // The fingerprint the manager logs is the one openssl computes.
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", ca])
        .output()
        .expect("openssl runs");
    assert!(out.status.success());
    let fp = text(&out.stdout);
    let fp = fp.trim().rsplit('=').next().expect("fingerprint");
    assert_eq!(fp.len(), 95, "{fp}");
    let log = std::fs::read_to_string(&m.log).expect("log");
    assert!(
        log.lines()
            .any(|l| l.contains("fleet CA fingerprint") && l.contains(fp)),
        "{fp} not in {log}"
    );
    // The manager's CLI over https: trusts the fleet CA given as --ca-file ...
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tapfleet-manager"))
            .args(args)
            .env("TAPFLEET_API_TOKEN", common::fake_edge::API_TOKEN)
            .env_remove("TAPFLEET_CA_FILE")
            .stdin(Stdio::null())
            .output()
            .expect("CLI runs")
    };
    for manager in [base.clone(), format!("https://127.0.0.1:{https_port}")] {
        let out = cli(&["token", "list", "--manager", &manager, "--ca-file", ca]);
        assert!(out.status.success(), "{manager}: {}", text(&out.stderr));
        // The default tenant's claim token, listed by the API.
        assert!(
            text(&out.stdout).contains("default"),
            "{}",
            text(&out.stdout)
        );
    }
    let out = cli(&[
        "config",
        "get",
        "defaults",
        "--manager",
        &base,
        "--ca-file",
        ca,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(v.is_object(), "{v}");
    // ... and refuses the server when its CA file is another CA.
    let (other, _) = tapfleet_broker::FleetCa::generate("another CA", now_s(), 86_400).expect("CA");
    let other_pem = dir.path().join("other-ca.pem");
    std::fs::write(&other_pem, other.cert_pem()).expect("write");
    let out = cli(&[
        "token",
        "list",
        "--manager",
        &base,
        "--ca-file",
        other_pem.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success(), "an unknown CA was trusted");
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot reach") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    m.stop();
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A one-thread HTTPS server on 127.0.0.1 with a certificate for `localhost` from its own
/// private CA; records the JSON body of every POST and answers 200. Returns its port, the CA's
/// PEM file and the bodies.
fn https_webhook(dir: &Path) -> (u16, PathBuf, Arc<Mutex<Vec<serde_json::Value>>>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{BufRead, BufReader, Read, Write};

    let (ca, _) = tapfleet_broker::FleetCa::generate("webhook CA", now_s(), 86_400).expect("CA");
    let issued = ca
        .issue_server(&["localhost".to_owned()], now_s(), 86_400)
        .expect("server certificate");
    let ca_file = dir.join("webhook-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).expect("write");
    let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.0.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config"),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { continue };
            let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
            let Ok(conn) = rustls::ServerConnection::new(cfg.clone()) else {
                continue;
            };
            let mut tls = BufReader::new(rustls::StreamOwned::new(conn, sock));
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if tls.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if tls.read_exact(&mut body).is_err() {
                continue;
            }
            if let Ok(v) = serde_json::from_slice(&body) {
                g.lock().expect("lock").push(v);
            }
            let tls = tls.get_mut();
            let _ =
                tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, ca_file, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_an_https_webhook_with_a_private_ca() {
    use common::fake_edge::{Edge, enroll};
    use tapfleet_schemas::{Channel, ReportedState};

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (port, ca_file, received) = https_webhook(dir.path());
    let cfg = dir.path().join("manager.toml");
    std::fs::write(
        &cfg,
        format!(
            "[alerts.webhook]\nurl = \"https://localhost:{port}/hook\"\nca_file = {:?}\ntimeout_secs = 5\nretries = 2\n",
            ca_file.to_str().expect("utf-8")
        ),
    )
    .expect("config");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let m = Manager::start(
        &data,
        http,
        free_port(),
        &dir.path().join("manager.log"),
        |c| {
            c.arg("--config").arg(&cfg);
        },
    );
    let token = std::fs::read_to_string(data.join("enroll.token")).expect("token");
    let g = enroll(m.mqtt, token.trim(), "s1", "pbx-1")
        .await
        .expect("enrolled");
    let edge = Edge::connect(m.mqtt, &g, &[]).await;
    // The edge says it goes offline: the `offline` alert is raised and posted over https.
    edge.publish(
        &g.topic(Channel::State),
        &ReportedState::offline("test-1".into(), "pbx-1".into()),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let raised = loop {
        let found = received
            .lock()
            .expect("lock")
            .iter()
            .find(|b| b["event"] == "alert_raised" && b["alert"]["rule"] == "offline")
            .cloned();
        if let Some(b) = found {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "no alert at the https webhook; manager log: {}",
            std::fs::read_to_string(&m.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(raised["alert"]["edge_id"], g.edge.as_str());
    assert_eq!(raised["tenant"], "default");
    // Counted once the receiver's 200 is read.
    let delivered = || common::fake_edge::metric(http, "webhook_deliveries_total");
    while delivered() == 0 {
        assert!(Instant::now() < deadline, "delivery not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(common::fake_edge::metric(http, "webhook_failures_total"), 0);
    m.stop();
}

/// `serve` with `args` exits with an error naming the allow flag, without starting.
fn refused(data: &Path, args: &[&str]) {
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tapfleet-manager"))
        .args(["serve", "--data"])
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("manager runs");
    assert!(!out.status.success(), "{args:?} started");
    let err = text(&out.stderr);
    assert!(
        err.contains("--allow-plain-non-loopback"),
        "{args:?}: {err}"
    );
    assert!(err.contains("not loopback"), "{args:?}: {err}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(
        !data.join("manager.redb").exists(),
        "{args:?} opened the store"
    );
}

#[test]
fn plain_listeners_beyond_loopback_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let lo_mqtt = format!("127.0.0.1:{}", free_port());
    refused(
        &data,
        &[
            "--http",
            &format!("0.0.0.0:{}", free_port()),
            "--mqtt-listen",
            &lo_mqtt,
        ],
    );
    refused(
        &data,
        &[
            "--http",
            &format!("127.0.0.1:{}", free_port()),
            "--mqtt-listen",
            &format!("0.0.0.0:{}", free_port()),
        ],
    );
}
