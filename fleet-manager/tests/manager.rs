//! Starts the real `tapfleet-manager` binary on free ports with a temporary data dir and plays
//! the edge with raw rumqttc clients: enrollment with the token from `DATA/enroll.token`, the
//! retained config, a manifest and its ack and upload job, offers and chunks of real captures
//! (out of order and duplicated), `Stored`, the files and `manifest.json` in the fs target, the
//! catalog over HTTP, idempotent manifests and offers, refusals, and a restart.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::fake_edge::*;
use common::*;
use rumqttc::QoS;
use tapfleet_schemas::{
    Ack, AckBody, Channel, DesiredConfig, EnrollRequest, EnrollResponse, EnrollResult, Job,
    JobAction, JobReply, Manifest, Party, RecordingKind, ReplyBody, Topic,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_enrolls_uploads_and_the_catalog_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data: PathBuf = dir.path().join("data");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mqtt = free_port();
    let m = Manager::start(&data, http, mqtt, &data.with_extension("log"), |_| {});
    assert_eq!(m.http, http);

    // The token file: 64 hex digits, private.
    let token = std::fs::read_to_string(data.join("enroll.token"))
        .expect("token")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("enroll.token"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let shown = Command::new(env!("CARGO_BIN_EXE_tapfleet-manager"))
        .args(["token", "show", "--data"])
        .arg(&data)
        .output()
        .expect("token show");
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), token);

    // A wrong token is refused by the broker; a wrong token in the request by the manager.
    assert!(
        connect(m.mqtt, "enroll-bad", "enroll", "not-the-token")
            .await
            .is_err()
    );
    assert!(connect(m.mqtt, "nobody", "nobody", "x").await.is_err());
    {
        let mut c = connect(m.mqtt, "enroll-s0", "enroll", &token)
            .await
            .expect("token connects");
        let resp = Topic::enroll_response("s0").expect("topic");
        c.subscribe(&resp.to_string()).await;
        let req = EnrollRequest::new("wrong".into(), "s0".into(), "h".into(), "v".into());
        c.publish(&Topic::enroll_request("s0").expect("topic"), &req)
            .await;
        let r: EnrollResponse = c.recv(&resp, Some).await;
        assert!(matches!(r.result, EnrollResult::Refused { .. }), "{r:?}");
    }

    let g = enroll(m.mqtt, &token, "s1", "PBX-01.example.com")
        .await
        .expect("enrolled");
    assert_eq!(g.tenant, "default");
    assert_eq!(g.edge, "pbx-01-example-com");
    assert_eq!(g.user, g.edge);
    // Same host and token again: the same edge with a new password.
    let g2 = enroll(m.mqtt, &token, "s2", "PBX-01.example.com")
        .await
        .expect("re-enrolled");
    assert_eq!(g2.edge, g.edge);
    assert_ne!(g2.pass, g.pass);
    assert!(
        connect(m.mqtt, "old", &g.user, &g.pass).await.is_err(),
        "old password still works"
    );
    let g = g2;

    let subs = [Channel::Config, Channel::Acks, Channel::Jobs];
    let mut edge = Edge::connect(m.mqtt, &g, &subs).await;
    let t = |ch| g.topic(ch);
    let cfg: DesiredConfig = edge.recv(&t(Channel::Config), Some).await;
    assert_eq!(cfg.version, 1);
    assert_eq!(cfg.edge.storage.target, "cloud");

    // A manifest of a call with two real captures as its files.
    let pcap_rel = "rtp-pcap/examples/marseillaise-srtp.pcap";
    let extra_rel = "rtp-pcap/examples/SIP_DTMF2.pcap";
    // capture() checks the bytes against INDEX.tsv.
    let pcap = capture(pcap_rel);
    let extra = capture(extra_rel);
    let start_ns = 1_709_210_096_000_000_000; // 2024-02-29T12:34:56Z
    let rid = tapfleet_schemas::recording_id(start_ns, *b"\x01\x02\x03\x04\x05\x06\x07\x08");
    let mut man = Manifest::new(rid.clone(), RecordingKind::Call);
    man.edge_id = Some(g.edge.clone());
    man.call_id = "a84b4c76e66710@pc33.example.com".into();
    man.caller = Party {
        uri: "sip:+4930123@pbx.example.com".into(),
        number: "+4930123".into(),
        display_name: Some("Alice".into()),
        tag: None,
    };
    man.callee.number = "200".into();
    man.start_ns = start_ns;
    man.answer_ns = Some(start_ns + 2_000_000_000);
    man.end_ns = start_ns + 60_000_000_000;
    man.files = vec![
        pcap_entry("call.pcap", &pcap),
        pcap_entry("dtmf.pcap", &extra),
    ];

    // An offer before the manifest is refused.
    let early = offer(&rid, "call.pcap", &pcap);
    edge.publish(
        &t(Channel::Replies),
        &JobReply::new(None, ReplyBody::Offer(early.clone())),
    )
    .await;
    edge.recv(&t(Channel::Acks), |a: Ack| {
        matches!(a.body, AckBody::TransferFailed { .. }).then_some(())
    })
    .await;

    edge.send_manifest(&man).await;
    let job: Job = edge.recv(&t(Channel::Jobs), Some).await;
    assert_eq!(
        job.action,
        JobAction::Upload {
            recording_id: rid.clone(),
            files: vec![]
        }
    );

    let loc = edge
        .upload_stored(&rid, "call.pcap", &pcap, Pace::Scripted)
        .await;
    let dir_rel = format!("default/{}/2024/02/29/{rid}", g.edge);
    assert_eq!(loc, format!("{dir_rel}/call.pcap"));
    // Tampered bytes under the right offer: the digest check fails, nothing becomes visible.
    {
        edge.upload_tampered(&rid, "dtmf.pcap", &extra, Pace::Blast)
            .await;
        let dir = data
            .join("targets/cloud")
            .join(format!("default/{}/2024/02/29/{rid}", g.edge));
        assert!(!dir.join("dtmf.pcap").exists());
        assert_eq!(metric(http, "transfers_failed_total"), 2); // the early offer and this one
    }
    let loc2 = edge
        .upload_stored(&rid, "dtmf.pcap", &extra, Pace::Scripted)
        .await;
    assert_eq!(loc2, format!("{dir_rel}/dtmf.pcap"));

    let cloud = data.join("targets/cloud");
    let stored = std::fs::read(cloud.join(&loc)).expect("stored file");
    assert_eq!(sha256(&stored).to_hex(), index_sha(pcap_rel));
    assert_eq!(std::fs::read(cloud.join(&loc2)).expect("stored"), extra);
    let mj = std::fs::read(cloud.join(format!("{dir_rel}/manifest.json"))).expect("manifest.json");
    assert_eq!(mj, tapfleet_schemas::manifest_json(&man));

    // The catalog.
    let list = http_json(http, "/api/v1/recordings");
    let recs = list["recordings"].as_array().expect("array");
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r["recording_id"], rid.as_str());
    assert_eq!(r["edge_id"], g.edge.as_str());
    assert_eq!(r["tenant"], "default");
    assert_eq!(r["state"], "stored");
    assert_eq!(r["start"], "2024-02-29T12:34:56Z");
    assert_eq!(r["answer"], "2024-02-29T12:34:58Z");
    assert_eq!(r["end"], "2024-02-29T12:35:56Z");
    assert_eq!(r["caller"]["number"], "+4930123");
    assert_eq!(r["caller"]["display_name"], "Alice");
    assert_eq!(r["files"][0]["name"], "call.pcap");
    assert_eq!(r["files"][0]["sha256"], index_sha(pcap_rel).as_str());
    assert_eq!(r["files"][0]["locations"][0]["target"], "cloud");
    assert_eq!(r["files"][0]["locations"][0]["path"], loc.as_str());
    assert_eq!(
        http_json(http, &format!("/api/v1/recordings/{rid}"))["recording_id"],
        rid.as_str()
    );
    assert_eq!(
        http_get(http, "/api/v1/recordings/nope").map(|(s, _)| s),
        Some(404)
    );
    assert_eq!(metric(http, "transfers_ok_total"), 2);
    assert_eq!(
        metric(http, "bytes_stored_total"),
        (pcap.len() + extra.len()) as u64
    );
    assert!(metric(http, "chunks_gap_total") >= 2);
    assert!(metric(http, "chunks_duplicate_total") >= 4);

    // The same manifest again: acked again, counted, no second entry, no new upload job.
    edge.send_manifest(&man).await;
    // The same offer again: stored already.
    edge.publish(
        &t(Channel::Replies),
        &JobReply::new(None, ReplyBody::Offer(early)),
    )
    .await;
    let again = edge
        .recv(&t(Channel::Acks), |a: Ack| match a.body {
            AckBody::Stored { location, .. } => Some(location),
            _ => None,
        })
        .await;
    assert_eq!(again, loc);
    assert_eq!(
        http_json(http, "/api/v1/recordings")["recordings"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(metric(http, "manifest_duplicates_total"), 1);

    // Garbage is counted, not fatal.
    edge.c
        .publish(
            t(Channel::Manifests).to_string(),
            QoS::AtLeastOnce,
            false,
            b"\xff\x00garbage".to_vec(),
        )
        .await
        .expect("publish");
    let deadline = Instant::now() + T;
    while metric(http, "decode_errors_total") < 1 {
        assert!(Instant::now() < deadline, "errors not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another edge's topic never reaches the manager: the broker's gate refuses the publish
    // (and closes the connection), so the manager counts no unknown-edge message.
    let stranger = Topic::edge("default", "stranger", Channel::Telemetry).expect("topic");
    edge.c
        .publish(stranger.to_string(), QoS::AtLeastOnce, false, b"x".to_vec())
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(metric(http, "unknown_edge_messages_total"), 0);
    let edges = http_json(http, "/api/v1/edges");
    assert_eq!(edges["edges"][0]["edge_id"], g.edge.as_str());
    assert_eq!(edges["edges"][0]["config_version_desired"], 1);
    drop(edge);

    // Restart: the catalog is kept and the retained config is published again.
    m.stop();
    let m = Manager::start(&data, http, mqtt, &data.with_extension("log"), |_| {});
    let token2 = std::fs::read_to_string(data.join("enroll.token")).expect("token");
    assert_eq!(token2.trim(), token);
    let list = http_json(http, "/api/v1/recordings");
    assert_eq!(list["recordings"][0]["state"], "stored");
    let deadline = Instant::now() + T;
    let mut edge = loop {
        match connect(m.mqtt, &g.edge, &g.user, &g.pass).await {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The manager republishes on its CONNACK; give it a moment before subscribing.
    let cfg_topic = t(Channel::Config);
    let deadline = Instant::now() + T;
    loop {
        edge.subscribe(&cfg_topic.to_string()).await;
        let got = tokio::time::timeout(
            Duration::from_secs(2),
            edge.recv(&cfg_topic, |c: DesiredConfig| Some(c.version)),
        )
        .await;
        if let Ok(v) = got {
            assert_eq!(v, 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retained config not republished after restart"
        );
    }
    m.stop();
}
