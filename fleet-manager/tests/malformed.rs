//! Malformed and oversized CBOR on every topic the real `tapfleet-manager` takes (an enrollment
//! request and each of an enrolled edge's state, telemetry, manifests, replies and upload): each
//! one is dropped, logged and counted in `/metrics` (`decode_errors_total`), a malformed
//! enrollment request is answered with a refusal, and nothing else is affected: the manager
//! keeps running, acknowledges the edge's next valid manifest and catalogs it.

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use common::fake_edge::*;
use common::*;
use rumqttc::QoS;
use tapfleet_schemas::{
    Channel, EnrollRequest, EnrollResponse, EnrollResult, Manifest, RecordingKind, Telemetry, Topic,
};

fn manifest(edge: &str, n: u8) -> Manifest {
    let start_ns = 1_709_210_096_000_000_000 + i64::from(n) * 1_000_000_000;
    let rid = tapfleet_schemas::recording_id(start_ns, [n; 8]);
    let mut m = Manifest::new(rid, RecordingKind::Call);
    m.edge_id = Some(edge.into());
    m.call_id = format!("call-{n}@example.com");
    m.start_ns = start_ns;
    m.end_ns = start_ns + 5_000_000_000;
    m.files = vec![pcap_entry("call.pcap", b"not really a pcap")];
    m
}

/// Bad payloads: garbage, truncated CBOR, deep nesting, a valid message of another type, and
/// one past every message's size bound (under the broker's 2 MiB packet limit).
fn bad_payloads() -> Vec<(&'static str, Vec<u8>)> {
    let telemetry = tapfleet_schemas::encode(&Telemetry::default()).expect("cbor");
    vec![
        ("garbage", b"\xff\xfe not cbor at all".to_vec()),
        ("truncated", telemetry[..telemetry.len() / 2].to_vec()),
        ("deep", vec![0x81; 10_000]),
        ("oversized", {
            // A byte string of 1.5 MiB: well-formed CBOR, too large for any message.
            let mut v = vec![0x5a, 0x00, 0x18, 0x00, 0x00];
            v.resize(5 + 0x18_0000, 0x61);
            v
        }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_cbor_is_counted_and_nothing_else_is_affected() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let m = Manager::start(
        &data,
        http,
        free_port(),
        &data.with_extension("log"),
        |_| {},
    );
    let token = std::fs::read_to_string(data.join("enroll.token"))
        .expect("token")
        .trim()
        .to_owned();
    let g = enroll(m.mqtt, &token, "s1", "edge-fuzzed")
        .await
        .expect("enrolled");
    let mut edge = Edge::connect(m.mqtt, &g, &[Channel::Acks]).await;
    edge.send_manifest(&manifest(&g.edge, 1)).await;
    let errors0 = metric(http, "decode_errors_total");
    let received0 = metric(http, "manifests_received_total");

    // Every edge channel the manager takes, every bad payload (the state gets no empty one: an
    // empty retained state is a cleared one).
    let mut sent = 0;
    for ch in [
        Channel::State,
        Channel::Telemetry,
        Channel::Manifests,
        Channel::Replies,
        Channel::Upload,
    ] {
        let client = if ch == Channel::Upload {
            &edge.bulk
        } else {
            &edge.ctl
        };
        for (_, bytes) in bad_payloads() {
            client
                .c
                .publish(g.topic(ch).to_string(), QoS::AtLeastOnce, false, bytes)
                .await
                .expect("publish");
            sent += 1;
        }
    }

    // A malformed enrollment request is refused, not ignored.
    let mut e = connect(m.mqtt, "enroll-s9", "enroll", &token)
        .await
        .expect("token connects");
    let resp = Topic::enroll_response("s9").expect("topic");
    e.subscribe(&resp.to_string()).await;
    let req = Topic::enroll_request("s9").expect("topic").to_string();
    for (_, bytes) in bad_payloads() {
        e.c.publish(&req, QoS::AtLeastOnce, false, bytes)
            .await
            .expect("publish");
        sent += 1;
        let r: EnrollResponse = e.recv(&resp, Some).await;
        assert!(
            matches!(&r.result, EnrollResult::Refused { reason } if reason.contains("malformed")),
            "{r:?}"
        );
    }
    // A valid request on the same session still enrolls.
    let ok = EnrollRequest::new(token.clone(), "s9".into(), "edge-two".into(), "v".into());
    e.publish(&Topic::enroll_request("s9").expect("topic"), &ok)
        .await;
    let r: EnrollResponse = e.recv(&resp, Some).await;
    assert!(matches!(r.result, EnrollResult::Accepted(_)), "{r:?}");

    // The next valid manifest is acknowledged (the dispatcher handles messages in order, so
    // every bad one before it was handled) and cataloged.
    let next = manifest(&g.edge, 2);
    edge.send_manifest(&next).await;
    assert_eq!(metric(http, "decode_errors_total") - errors0, sent);
    assert_eq!(metric(http, "manifests_received_total") - received0, 1);
    let (status, body) =
        http_get(http, &format!("/api/v1/recordings/{}", next.recording_id)).expect("http");
    assert_eq!(status, 200, "{body}");
    let log = std::fs::read_to_string(data.with_extension("log")).expect("log");
    assert!(log.contains("inbound message dropped"), "not logged");
    assert_eq!(
        log.matches("inbound message dropped").count() as u64,
        sent,
        "each one logged once"
    );
    println!(
        "{sent} bad messages counted, manager unaffected, in {:?}",
        t0.elapsed()
    );
    m.stop();
}
