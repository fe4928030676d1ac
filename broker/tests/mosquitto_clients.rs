//! The gate's refusals seen from Debian's `mosquitto_sub` / `mosquitto_pub` (package
//! mosquitto-clients; the test fails if they are missing): no credentials, a wrong password,
//! edge A subscribing to B's config, acks, `#` and every enrollment response, A publishing on B's
//! manifests, an enrolling client subscribing to another session's response — all refused; an
//! edge's own traffic (1 MiB QoS1 publish, retained config) passes.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use tapfleet_schemas::{Channel, Topic};

fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is required (apt-get install mosquitto-clients): this test does not skip"
    );
}

fn run(tool: &str, port: u16, user: Option<(&str, &str)>, id: &str, args: &[&str]) -> Output {
    require(tool);
    let mut cmd = Command::new(tool);
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-i",
        id,
        "-V",
        "mqttv311",
    ]);
    if let Some((u, p)) = user {
        cmd.args(["-u", u, "-P", p]);
    }
    cmd.args(args);
    let out = cmd.output().unwrap_or_else(|e| panic!("{tool}: {e}"));
    println!(
        "{tool} {args:?} -> {:?}\n  stdout: {}\n  stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
    .to_lowercase()
}

/// `mosquitto_sub` for at most `secs`, stopping after one message: its output.
fn sub(port: u16, user: Option<(&str, &str)>, id: &str, topic: &str, secs: u32) -> Output {
    let w = secs.to_string();
    run(
        "mosquitto_sub",
        port,
        user,
        id,
        &["-t", topic, "-C", "1", "-W", &w, "-q", "1", "-v"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_are_refused_outside_their_namespace() {
    let (h, _creds) = start_broker();
    let port = h.local_addr().port();
    let mut m = must_connect(&h, "tapfleet-manager", MANAGER).await;
    let b_config = edge_topic("acme", "edge-b", Channel::Config);
    let b_acks = edge_topic("acme", "edge-b", Channel::Acks);
    let s2_resp = Topic::enroll_response("s2").expect("topic").to_string();
    for (t, p) in [
        (&b_config, "config of b"),
        (&b_acks, "ack of b"),
        (&s2_resp, "grant of s2"),
    ] {
        m.publish(t, true, p.as_bytes().to_vec()).await;
        assert!(m.puback_or_closed().await);
    }

    // No credentials, wrong password.
    let o = sub(port, None, "anon", "#", 3);
    assert!(
        !o.status.success() && text(&o).contains("not authori"),
        "anonymous"
    );
    let o = sub(port, Some((EDGE_A.0, "wrong")), "edge-a", "#", 3);
    assert!(
        !o.status.success() && text(&o).contains("bad user name or password"),
        "wrong password"
    );

    // Edge A reaching into B, the whole tree, every enrollment answer.
    for f in [
        b_config.as_str(),
        b_acks.as_str(),
        "#",
        "tapfleet/v1/enroll/+/response",
    ] {
        let o = sub(port, Some(EDGE_A), "edge-a", f, 3);
        let out = text(&o);
        assert!(
            !out.contains("of b") && !out.contains("grant"),
            "{f}: secret leaked: {out}"
        );
        assert!(
            out.contains("denied"),
            "{f}: subscription not denied: {out}"
        );
    }

    // Edge A publishing a forged manifest on B's topic: connection closed, nothing delivered.
    assert_eq!(m.subscribe(&["#"]).await.len(), 1);
    let b_manifests = edge_topic("acme", "edge-b", Channel::Manifests);
    let before = h.gate_counts().refused_publish;
    let o = run(
        "mosquitto_pub",
        port,
        Some(EDGE_A),
        "edge-a",
        &["-t", &b_manifests, "-m", "forged", "-q", "1"],
    );
    assert!(!o.status.success(), "forged publish reported success");
    assert_eq!(h.gate_counts().refused_publish, before + 1);
    assert!(
        m.publish_on(&b_manifests, Duration::from_millis(500))
            .await
            .is_none(),
        "forged manifest delivered"
    );

    // An enrolling client reading another session's grant.
    let o = sub(port, Some(("enroll", CLAIM)), "enroll-s1", &s2_resp, 3);
    let out = text(&o);
    assert!(
        !out.contains("grant of s2") && out.contains("denied"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_pass_their_own_traffic() {
    let (h, _creds) = start_broker();
    let port = h.local_addr().port();
    let mut m = must_connect(&h, "tapfleet-manager", MANAGER).await;
    let filter = tapfleet_schemas::topic::filter::all_edges(Channel::Upload);
    assert_eq!(m.subscribe(&[&filter]).await.len(), 1);

    // A retained config published by the manager reaches the edge's mosquitto_sub.
    let a_config = edge_topic("acme", "edge-a", Channel::Config);
    m.publish(&a_config, true, b"config of a".to_vec()).await;
    assert!(m.puback_or_closed().await);
    let o = sub(port, Some(EDGE_A), "edge-a", &a_config, 5);
    assert!(o.status.success(), "own config");
    assert!(text(&o).contains("config of a"));

    // A 1 MiB QoS1 upload chunk from mosquitto_pub.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("chunk.bin");
    let big: Vec<u8> = (0..(1024 * 1024)).map(|i| (i % 253) as u8).collect();
    std::fs::write(&file, &big).expect("write");
    let upload = edge_topic("acme", "edge-a", Channel::Upload);
    let path = file.to_string_lossy().into_owned();
    let o = run(
        "mosquitto_pub",
        port,
        Some(EDGE_A),
        "edge-a-bulk",
        &["-t", &upload, "-f", &path, "-q", "1"],
    );
    assert!(o.status.success(), "own upload refused");
    let p = m.publish_on(&upload, T).await.expect("chunk delivered");
    assert!(p.payload[..] == big[..], "payload changed");

    // Enrollment through mosquitto_pub on its own session.
    let mut m2 = must_connect(&h, "tapfleet-manager-2", MANAGER).await;
    let req = Topic::enroll_request("s9").expect("topic").to_string();
    assert_eq!(m2.subscribe(&[&req]).await.len(), 1);
    let o = run(
        "mosquitto_pub",
        port,
        Some(("enroll", CLAIM)),
        "enroll-s9",
        &["-t", &req, "-m", "hello", "-q", "1"],
    );
    assert!(o.status.success(), "own enrollment request refused");
    assert!(m2.publish_on(&req, T).await.is_some());
}
