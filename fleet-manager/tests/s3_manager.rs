//! The real `tapfleet-manager` binary with `--config` naming an S3 target (s3s-fs on loopback,
//! credentials from environment variables) as `cloud`, driven like an edge over MQTT: a
//! recording's real capture is offered and uploaded in chunks, lands in the bucket with its
//! SHA-256 and `manifest.json` beside it; tampered bytes leave no object; the secret never
//! appears in the manager's log.

mod common;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use tapfleet_schemas::{
    Ack, AckBody, Channel, DesiredConfig, EnrollRequest, EnrollResponse, EnrollResult, FileEntry,
    JobReply, Manifest, Message, RecordingKind, ReplyBody, Topic, TransferChunk, TransferOffer,
};
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(30);
const CHUNK: usize = 256 * 1024;

struct Manager(Child);

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    Some((status, buf.split_once("\r\n\r\n")?.1.to_owned()))
}

struct Client {
    c: AsyncClient,
    rx: mpsc::UnboundedReceiver<Packet>,
    seen: VecDeque<Packet>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(port: u16, id: &str, user: &str, pass: &str) -> Client {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials(user, pass);
    o.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
    let (c, mut el) = AsyncClient::new(o, 64);
    let ok = tokio::time::timeout(T, async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    return a.code == ConnectReturnCode::Success;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(ok, "{id}: connection refused");
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(p)) => {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    Client {
        c,
        rx,
        seen: VecDeque::new(),
        task,
    }
}

impl Client {
    async fn wait_for<R>(&mut self, what: &str, mut f: impl FnMut(&Packet) -> Option<R>) -> R {
        if let Some(i) = self.seen.iter().position(|p| f(p).is_some()) {
            let p = self.seen.remove(i).expect("index");
            return f(&p).expect("matched");
        }
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let p = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("client alive");
            if let Some(r) = f(&p) {
                return r;
            }
            self.seen.push_back(p);
        }
    }

    async fn subscribe(&mut self, filter: &str) {
        self.c
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        self.wait_for("suback", |p| matches!(p, Packet::SubAck(_)).then_some(()))
            .await;
    }

    async fn publish<M: Message>(&self, topic: &Topic, msg: &M) {
        let payload = tapfleet_schemas::encode(msg).expect("encode");
        self.c
            .publish(topic.to_string(), QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
    }

    async fn recv<M: Message, R>(&mut self, topic: &Topic, mut f: impl FnMut(M) -> Option<R>) -> R {
        let t = topic.to_string();
        self.wait_for(&t.clone(), |p| match p {
            Packet::Publish(p) if p.topic == t => tapfleet_schemas::decode::<M>(&p.payload)
                .ok()
                .and_then(&mut f),
            _ => None,
        })
        .await
    }
}

/// Offers `data` as `name` and sends it stop-and-wait; the final ack (Stored or failed).
async fn upload(
    edge: &mut Client,
    bulk: &Client,
    t: &dyn Fn(Channel) -> Topic,
    rid: &str,
    name: &str,
    data: &[u8],
    sha: tapfleet_schemas::Sha256,
) -> AckBody {
    let offer = TransferOffer {
        recording_id: rid.into(),
        file: name.into(),
        size: data.len() as u64,
        sha256: sha,
    };
    edge.publish(
        &t(Channel::Replies),
        &JobReply::new(None, ReplyBody::Offer(offer)),
    )
    .await;
    let tid = edge
        .recv(&t(Channel::Acks), |a: Ack| match a.body {
            AckBody::Accept {
                transfer_id,
                offset: 0,
                file,
                ..
            } if file == name => Some(transfer_id),
            _ => None,
        })
        .await;
    let mut acked = 0usize;
    while acked < data.len() {
        let end = (acked + CHUNK).min(data.len());
        bulk.publish(
            &t(Channel::Upload),
            &TransferChunk::new(tid, acked as u64, data[acked..end].to_vec()),
        )
        .await;
        acked = edge
            .recv(&t(Channel::Acks), |a: Ack| match a.body {
                AckBody::Chunk {
                    transfer_id,
                    next_offset,
                } if transfer_id == tid => Some(next_offset as usize),
                _ => None,
            })
            .await;
    }
    edge.recv(&t(Channel::Acks), |a: Ack| match a.body {
        b @ AckBody::Stored { .. } => Some(b),
        b @ AckBody::TransferFailed { .. } => Some(b),
        _ => None,
    })
    .await
}

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
    // tracing writes to stdout.
    let log_file = std::fs::File::create(&log).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_tapfleet-manager"))
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--http", &http.to_string()])
        .args(["--mqtt-listen", &format!("127.0.0.1:{mqtt}")])
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "debug,rumqttd=warn,hyper=info,reqwest=info")
        .env("TEST_S3_KEY_ID", S3_KEY_ID)
        .env("TEST_S3_SECRET", S3_SECRET)
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("manager starts");
    let _m = Manager(child);
    let deadline = Instant::now() + T;
    while http_get(http, "/healthz").map(|(s, _)| s) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "manager not healthy: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Enroll with the claim token.
    let token = std::fs::read_to_string(data.join("enroll.token")).expect("token");
    let token = token.trim();
    let mut c = connect(mqtt, "enroll-s1", "enroll", token).await;
    let resp = Topic::enroll_response("s1").expect("topic");
    c.subscribe(&resp.to_string()).await;
    c.publish(
        &Topic::enroll_request("s1").expect("topic"),
        &EnrollRequest::new(token.into(), "s1".into(), "pbx-s3".into(), "test-1".into()),
    )
    .await;
    let r: EnrollResponse = c.recv(&resp, Some).await;
    let EnrollResult::Accepted(g) = r.result else {
        panic!("refused: {:?}", r.result)
    };
    drop(c);
    let (tenant, edge_id) = (g.tenant.clone(), g.edge_id.clone());
    let t = move |ch| Topic::edge(&tenant, &edge_id, ch).expect("topic");
    let mut edge = connect(mqtt, &g.edge_id, &g.username, &g.password).await;
    let bulk = connect(
        mqtt,
        &format!("{}-bulk", g.edge_id),
        &g.username,
        &g.password,
    )
    .await;
    edge.subscribe(&t(Channel::Config).to_string()).await;
    edge.subscribe(&t(Channel::Acks).to_string()).await;
    let cfg: DesiredConfig = edge.recv(&t(Channel::Config), Some).await;
    assert_eq!(cfg.edge.storage.target, "cloud");

    let pcap = capture("rtp-pcap/examples/marseillaise-srtp.pcap");
    let dtmf = capture("rtp-pcap/examples/SIP_DTMF2.pcap");
    let start_ns = 1_709_210_096_000_000_000; // 2024-02-29T12:34:56Z
    let rid = tapfleet_schemas::recording_id(start_ns, *b"\x09\x02\x03\x04\x05\x06\x07\x08");
    let mut man = Manifest::new(rid.clone(), RecordingKind::Call);
    man.edge_id = Some(g.edge_id.clone());
    man.call_id = "s3-test@pbx.example.com".into();
    man.start_ns = start_ns;
    man.end_ns = start_ns + 60_000_000_000;
    for (name, bytes) in [("call.pcap", &pcap), ("dtmf.pcap", &dtmf)] {
        man.files.push(FileEntry {
            name: name.into(),
            size: bytes.len() as u64,
            sha256: sha256(bytes),
            content_type: "application/vnd.tcpdump.pcap".into(),
        });
    }
    edge.publish(&t(Channel::Manifests), &man).await;
    edge.recv(&t(Channel::Acks), |a: Ack| {
        matches!(&a.body, AckBody::Manifest { recording_id } if *recording_id == rid).then_some(())
    })
    .await;

    let dir_rel = format!("default/{}/2024/02/29/{rid}", g.edge_id);
    let in_bucket = bucket.join("tapfleet");
    match upload(
        &mut edge,
        &bulk,
        &t,
        &rid,
        "call.pcap",
        &pcap,
        sha256(&pcap),
    )
    .await
    {
        AckBody::Stored {
            target,
            location,
            sha256: s,
            ..
        } => {
            assert_eq!(target, "cloud");
            assert_eq!(location, format!("{dir_rel}/call.pcap"));
            assert_eq!(s, sha256(&pcap));
        }
        other => panic!("not stored: {other:?}"),
    }
    let stored = std::fs::read(in_bucket.join(format!("{dir_rel}/call.pcap"))).expect("object");
    assert_eq!(sha256(&stored), sha256(&pcap));

    // Tampered bytes under the manifest's digest: failed, no object in the bucket.
    let mut bad = dtmf.clone();
    bad[1000] ^= 0xff;
    match upload(&mut edge, &bulk, &t, &rid, "dtmf.pcap", &bad, sha256(&dtmf)).await {
        AckBody::TransferFailed { reason, .. } => assert!(reason.contains("sha256"), "{reason}"),
        other => panic!("tampered file not refused: {other:?}"),
    }
    assert_eq!(
        files_under(&in_bucket),
        vec![format!("{dir_rel}/call.pcap")]
    );

    match upload(
        &mut edge,
        &bulk,
        &t,
        &rid,
        "dtmf.pcap",
        &dtmf,
        sha256(&dtmf),
    )
    .await
    {
        AckBody::Stored { .. } => {}
        other => panic!("not stored: {other:?}"),
    }
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
    let (status, body) = http_get(http, &format!("/api/v1/recordings/{rid}")).expect("http");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["state"], "stored");
    assert_eq!(v["files"][0]["locations"][0]["target"], "cloud");

    // The secret is in neither the log nor any file the manager wrote.
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("storage target"), "{logged}");
    if let Some(l) = logged.lines().find(|l| l.contains(S3_SECRET)) {
        panic!("secret logged: {l}");
    }
}
