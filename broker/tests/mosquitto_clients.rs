//! The gate seen from Debian's `mosquitto_sub` / `mosquitto_pub` (package mosquitto-clients; the
//! test fails if they are missing): the shared refusal matrix ([`common::matrix`], which
//! `mosquitto_broker.rs` runs against Debian's mosquitto too) with the gate's stricter answers
//! (SUBACK denials, enrolling clients confined to their session); an edge's own traffic (1 MiB
//! QoS1 publish, retained config, its own enrollment session) passes.

mod common;

use std::process::Output;

use common::matrix::{self, Attempt, Pki, Target, Tls, Via, mosq, refusal_matrix, text};
use common::*;
use tapfleet_schemas::{Channel, Topic};

fn run(tool: &str, port: u16, user: Option<(&str, &str)>, id: &str, args: &[&str]) -> Output {
    matrix::run(mosq(tool, Via::Password(port, user), id, args)).0
}

/// `mosquitto_sub` for at most `secs`, stopping after one message: its output.
fn sub(port: u16, user: Option<(&str, &str)>, id: &str, topic: &str, secs: u32) -> Output {
    matrix::run(matrix::sub(Via::Password(port, user), id, topic, secs)).0
}

/// The gate with a TLS listener, as a target of the shared refusal matrix.
struct Gate {
    h: tapfleet_broker::BrokerHandle,
    creds: tapfleet_broker::CredentialStore,
    pki: Pki,
    _dir: tempfile::TempDir,
}

impl Gate {
    fn start() -> Gate {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new(dir.path());
        let creds = test_creds();
        let h = start_broker_with(&creds, Some(&pki));
        Gate {
            h,
            creds,
            pki,
            _dir: dir,
        }
    }
}

impl Target for Gate {
    fn name(&self) -> &str {
        "gate"
    }
    fn port(&self) -> u16 {
        self.h.local_addr().port()
    }
    fn tls(&self) -> Option<Tls<'_>> {
        Some(Tls {
            port: self.h.tls_addr().expect("tls listener").port(),
            pki: &self.pki,
        })
    }
    fn mark(&self) -> u64 {
        let n = self.h.gate_counts();
        n.refused_connect + n.refused_subscribe + n.refused_publish + n.refused_handshake
    }
    fn recorded_since(&self, mark: u64, attempts: &[Attempt]) -> Result<(), String> {
        // Each refusal is logged (warn) and counted; the counters are what a test can read.
        let n = self.mark() - mark;
        if n >= attempts.len() as u64 {
            Ok(())
        } else {
            Err(format!(
                "{} attempts, {n} counted: {:?}",
                attempts.len(),
                self.h.gate_counts()
            ))
        }
    }
    fn revoke(&self, edge: &str) {
        self.creds.revoke(edge);
    }
    fn denies_in_suback(&self) -> bool {
        true
    }
    fn admits_enrolling_clients(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_passes_the_refusal_matrix() {
    let t0 = std::time::Instant::now();
    let g = Gate::start();
    refusal_matrix(&g).await;
    println!("matrix against the gate in {:?}", t0.elapsed());
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
