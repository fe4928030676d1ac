//! The gate's TLS listener seen from Debian's `mosquitto_sub` / `mosquitto_pub` (package
//! mosquitto-clients; the test fails if they are missing): an edge certificate from the fleet CA
//! is the identity (its own config passes; edge B's topics are refused even with B's password);
//! no certificate and no password, a certificate from another CA, an expired certificate and a
//! revoked edge are all refused and counted; a revoked edge's open connection is dropped at once;
//! 100 sockets that never start a handshake do not delay a real client.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::matrix::{self, Pair, Pki, Via, run};
use common::*;
use tapfleet_broker::{BrokerHandle, CredentialStore, Role};
use tapfleet_schemas::{Channel, Topic};

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The broker on plain + TLS listeners with [`test_creds`] and edge-r (tenant acme), the PKI
/// and the directory holding its files.
fn start_tls_broker() -> (BrokerHandle, CredentialStore, Pki, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    let creds = test_creds();
    creds
        .set_password(
            "edge-r",
            "pw-r",
            Role::Edge {
                tenant: "acme".into(),
            },
        )
        .expect("random");
    let h = start_broker_with(&creds, Some(&pki));
    (h, creds, pki, dir)
}

/// A mosquitto client over TLS to `localhost:port`, trusting `ca`, with an optional client
/// certificate and user.
fn mosq(tool: &str, port: u16, ca: &Path, cert: Option<&Pair>, id: &str, args: &[&str]) -> Command {
    matrix::mosq(tool, Via::Tls(port, ca, cert), id, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificates_are_identities_and_strangers_are_refused() {
    let (h, _creds, pki, _dir) = start_tls_broker();
    let port = h.tls_addr().expect("tls listener").port();
    let mut m = must_connect(&h, "tapfleet-manager", MANAGER).await;
    let a_config = edge_topic("acme", "edge-a", Channel::Config);
    let b_config = edge_topic("acme", "edge-b", Channel::Config);
    for (t, p) in [(&a_config, "config of a"), (&b_config, "config of b")] {
        m.publish(t, true, p.as_bytes().to_vec()).await;
        assert!(m.puback_or_closed().await);
    }
    let sub = |t: &str| -> Vec<String> {
        ["-t", t, "-C", "1", "-W", "3", "-v"]
            .map(str::to_owned)
            .to_vec()
    };

    // Edge A's certificate: its own config, no password needed.
    let (o, out) = run(mosq(
        "mosquitto_sub",
        port,
        &pki.ca,
        Some(&pki.a),
        "edge-a",
        &strs(&sub(&a_config)),
    ));
    assert!(
        o.status.success() && out.contains("config of a"),
        "own config over TLS: {out}"
    );

    // Edge A's certificate reaching for B's config, even with B's password: denied.
    let mut args = sub(&b_config);
    args.extend(["-u".into(), EDGE_B.0.into(), "-P".into(), EDGE_B.1.into()]);
    let (_, out) = run(mosq(
        "mosquitto_sub",
        port,
        &pki.ca,
        Some(&pki.a),
        "edge-a",
        &strs(&args),
    ));
    assert!(
        out.contains("denied") && !out.contains("config of b"),
        "A reads B: {out}"
    );

    // ... or publishing on B's manifests: the connection is closed.
    let before = h.gate_counts();
    let b_manifests = edge_topic("acme", "edge-b", Channel::Manifests);
    let (o, _) = run(mosq(
        "mosquitto_pub",
        port,
        &pki.ca,
        Some(&pki.a),
        "edge-a",
        &["-t", &b_manifests, "-m", "forged", "-q", "1"],
    ));
    assert!(!o.status.success(), "forged publish reported success");
    assert_eq!(h.gate_counts().refused_publish, before.refused_publish + 1);

    // No certificate and no password: CONNACK 5.
    let (o, out) = run(mosq(
        "mosquitto_sub",
        port,
        &pki.ca,
        None,
        "anon",
        &["-t", "#", "-C", "1", "-W", "3"],
    ));
    assert!(
        !o.status.success() && out.contains("not authori"),
        "anonymous: {out}"
    );

    // A certificate from another CA, an expired one: the handshake fails.
    for (name, p) in [("foreign", &pki.foreign), ("expired", &pki.expired)] {
        let before = h.gate_counts().refused_handshake;
        let (o, out) = run(mosq(
            "mosquitto_pub",
            port,
            &pki.ca,
            Some(p),
            "edge-a",
            &["-t", &a_config, "-m", "x", "-q", "1"],
        ));
        assert!(!o.status.success(), "{name} certificate accepted: {out}");
        let deadline = Instant::now() + T;
        while h.gate_counts().refused_handshake == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(h.gate_counts().refused_handshake, before + 1, "{name}");
    }

    // An enrolling client without a certificate still enrolls over TLS, in its own session.
    let req = Topic::enroll_request("s9").expect("topic").to_string();
    assert_eq!(m.subscribe(&[&req]).await.len(), 1);
    let (o, out) = run(mosq(
        "mosquitto_pub",
        port,
        &pki.ca,
        None,
        "enroll-s9",
        &[
            "-u", "enroll", "-P", CLAIM, "-t", &req, "-m", "hello", "-q", "1",
        ],
    ));
    assert!(o.status.success(), "enrollment over TLS: {out}");
    assert!(m.publish_on(&req, T).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_edge_is_dropped_at_once_and_refused_after() {
    let (h, creds, pki, _dir) = start_tls_broker();
    let port = h.tls_addr().expect("tls listener").port();
    let r_config = edge_topic("acme", "edge-r", Channel::Config);
    let mut child = mosq(
        "mosquitto_sub",
        port,
        &pki.ca,
        Some(&pki.r),
        "edge-r",
        &["-t", &r_config, "-W", "20"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("mosquitto_sub starts");
    let deadline = Instant::now() + T;
    while h.gate_counts().connected == 0 {
        assert!(Instant::now() < deadline, "edge-r never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t0 = Instant::now();
    creds.revoke("edge-r");
    while h.gate_counts().revoked_closed == 0 {
        assert!(t0.elapsed() < T, "revoked edge still connected");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dropped = t0.elapsed();
    println!("revoked connection closed after {dropped:?}");
    assert!(dropped < Duration::from_secs(1));
    // mosquitto_sub reconnects (after 1 s) and is refused: it gives up with CONNACK 5.
    let gone = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(t0.elapsed() < T, "revoked edge reconnected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(gone.code(), Some(5), "mosquitto_sub: {gone}");
    assert_eq!(h.gate_counts().revoked_closed, 1);

    // Never again: with its certificate, or with its password.
    let (o, out) = run(mosq(
        "mosquitto_pub",
        port,
        &pki.ca,
        Some(&pki.r),
        "edge-r",
        &[
            "-t",
            &edge_topic("acme", "edge-r", Channel::State),
            "-m",
            "x",
            "-q",
            "1",
        ],
    ));
    assert!(
        !o.status.success() && out.contains("not authori"),
        "revoked cert: {out}"
    );
    let (o, out) = run(mosq(
        "mosquitto_pub",
        port,
        &pki.ca,
        None,
        "edge-r",
        &[
            "-u",
            "edge-r",
            "-P",
            "pw-r",
            "-t",
            &edge_topic("acme", "edge-r", Channel::State),
            "-m",
            "x",
            "-q",
            "1",
        ],
    ));
    assert!(
        !o.status.success() && out.contains("not authori"),
        "revoked password: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_do_not_block_tls_clients() {
    let (h, _creds, pki, _dir) = start_tls_broker();
    let tls = h.tls_addr().expect("tls listener");
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(tls).expect("idle socket"))
        .collect();
    let t0 = Instant::now();
    let (o, out) = run(mosq(
        "mosquitto_pub",
        tls.port(),
        &pki.ca,
        Some(&pki.a),
        "edge-a",
        &[
            "-t",
            &edge_topic("acme", "edge-a", Channel::State),
            "-m",
            "up",
            "-q",
            "1",
        ],
    ));
    let took = t0.elapsed();
    println!(
        "TLS client connected and published in {took:?} beside {} idle sockets",
        idle.len()
    );
    assert!(o.status.success(), "{out}");
    assert!(took < Duration::from_secs(1), "blocked for {took:?}");
    assert!(h.gate_counts().accepted >= 101);
}
