//! The real `tapfleet-manager` binary with `--config` naming an S3 target (s3s-fs on loopback,
//! credentials from environment variables) as `cloud`, driven like an edge over MQTT: a
//! recording's real capture is offered and uploaded in chunks, lands in the bucket with its
//! SHA-256 and `manifest.json` beside it; tampered bytes leave no object; the secret never
//! appears in the manager's log.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::fake_edge::*;
use common::*;
use tapfleet_schemas::{Channel, DesiredConfig, Manifest, RecordingKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_stores_uploads_in_an_s3_cloud_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s3, bucket) = start_s3(dir.path());
    let config = dir.path().join("manager.toml");
    std::fs::write(
        &config,
        format!(
            "[targets.cloud]\ntype = \"s3\"\nbucket = \"{S3_BUCKET}\"\n\
             endpoint = \"http://127.0.0.1:{}\"\nroot = \"/tapfleet\"\n\
             access_key_id = {{ env = \"TEST_S3_KEY_ID\" }}\n\
             secret_access_key = {{ env = \"TEST_S3_SECRET\" }}\n",
            s3.port
        ),
    )
    .expect("config");
    let data = dir.path().join("data");
    let log = dir.path().join("manager.log");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mqtt = free_port();
    let _m = Manager::start(&data, http, mqtt, &log, |cmd| {
        cmd.arg("--config")
            .arg(&config)
            .env("RUST_LOG", "debug,rumqttd=warn,hyper=info,reqwest=info")
            .env("TEST_S3_KEY_ID", S3_KEY_ID)
            .env("TEST_S3_SECRET", S3_SECRET);
    });

    // Enroll with the claim token.
    let token = std::fs::read_to_string(data.join("enroll.token")).expect("token");
    let g = enroll(mqtt, token.trim(), "s1", "pbx-s3")
        .await
        .expect("enrolled");
    let t = |ch| g.topic(ch);
    let mut edge = Edge::connect(mqtt, &g, &[Channel::Config, Channel::Acks]).await;
    let cfg: DesiredConfig = edge.recv(&t(Channel::Config), Some).await;
    assert_eq!(cfg.edge.storage.target, "cloud");

    let pcap = capture("rtp-pcap/examples/marseillaise-srtp.pcap");
    let dtmf = capture("rtp-pcap/examples/SIP_DTMF2.pcap");
    let start_ns = 1_709_210_096_000_000_000; // 2024-02-29T12:34:56Z
    let rid = tapfleet_schemas::recording_id(start_ns, *b"\x09\x02\x03\x04\x05\x06\x07\x08");
    let mut man = Manifest::new(rid.clone(), RecordingKind::Call);
    man.edge_id = Some(g.edge.clone());
    man.call_id = "s3-test@pbx.example.com".into();
    man.start_ns = start_ns;
    man.end_ns = start_ns + 60_000_000_000;
    man.files = vec![
        pcap_entry("call.pcap", &pcap),
        pcap_entry("dtmf.pcap", &dtmf),
    ];
    edge.send_manifest(&man).await;

    let dir_rel = format!("default/{}/2024/02/29/{rid}", g.edge);
    let in_bucket = bucket.join("tapfleet");
    let loc = edge
        .upload_stored(&rid, "call.pcap", &pcap, Pace::StopAndWait)
        .await;
    assert_eq!(loc, format!("{dir_rel}/call.pcap"));
    let stored = std::fs::read(in_bucket.join(format!("{dir_rel}/call.pcap"))).expect("object");
    assert_eq!(sha256(&stored), sha256(&pcap));

    // Tampered bytes under the manifest's digest: failed, no object in the bucket.
    edge.upload_tampered(&rid, "dtmf.pcap", &dtmf, Pace::StopAndWait)
        .await;
    assert_eq!(
        files_under(&in_bucket),
        vec![format!("{dir_rel}/call.pcap")]
    );

    edge.upload_stored(&rid, "dtmf.pcap", &dtmf, Pace::StopAndWait)
        .await;
    assert_eq!(
        std::fs::read(in_bucket.join(format!("{dir_rel}/dtmf.pcap"))).expect("object"),
        dtmf
    );
    // Every file stored: manifest.json beside them, the catalog says stored.
    let deadline = Instant::now() + T;
    let mj = in_bucket.join(format!("{dir_rel}/manifest.json"));
    while !mj.exists() {
        assert!(Instant::now() < deadline, "no manifest.json");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::fs::read(&mj).expect("manifest"),
        tapfleet_schemas::manifest_json(&man)
    );
    let v = http_json(http, &format!("/api/v1/recordings/{rid}"));
    assert_eq!(v["state"], "stored");
    assert_eq!(v["files"][0]["locations"][0]["target"], "cloud");

    // The secret is in neither the log nor any file the manager wrote.
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("storage target"), "{logged}");
    if let Some(l) = logged.lines().find(|l| l.contains(S3_SECRET)) {
        panic!("secret logged: {l}");
    }
}
