//! The manager's HTTPS listener (`--https-listen`) with a real client (curl): the fleet CA
//! verifies it and nothing else does, a login over HTTPS sets a `Secure` cookie (over plain HTTP
//! it does not), idle sockets that never handshake do not hold up a real request, the install
//! script served over HTTPS points at https and carries the CA, the CA fingerprint the manager
//! logs is openssl's; and plain listeners beyond loopback are refused without
//! `--allow-plain-non-loopback`.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
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
