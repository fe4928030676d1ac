//! Starts the real `tapfleet-manager` binary on free ports with a temporary data dir and plays
//! the edge with raw rumqttc clients: enrollment with the token from `DATA/enroll.token`, the
//! retained config, a manifest and its ack and upload job, offers and chunks of real captures
//! (out of order and duplicated), `Stored`, the files and `manifest.json` in the fs target, the
//! catalog over HTTP, idempotent manifests and offers, refusals, and a restart.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use sha2::Digest;
use tapfleet_schemas::{
    Ack, AckBody, Channel, DesiredConfig, EnrollRequest, EnrollResponse, EnrollResult, FileEntry,
    Job, JobAction, JobReply, Manifest, Message, Party, RecordingKind, ReplyBody, Sha256, Topic,
    TransferChunk, TransferOffer,
};
use tokio::sync::mpsc;

const CAPTURES: &str = "/work/shared/captures";
const T: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

struct Manager {
    child: Child,
    http: SocketAddr,
    mqtt: u16,
}

impl Manager {
    fn start(data: &Path, http: SocketAddr, mqtt: u16) -> Manager {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.with_extension("log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_tapfleet-manager"))
            .args(["serve", "--data"])
            .arg(data)
            .args(["--http", &http.to_string()])
            .args(["--mqtt-listen", &format!("127.0.0.1:{mqtt}")])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("manager starts");
        let m = Manager { child, http, mqtt };
        let deadline = Instant::now() + T;
        while http_get(http, "/healthz").map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "manager not healthy; see {}",
                data.with_extension("log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(http_get(http, "/healthz"), Some((200, "ok".to_owned())));
        m
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(st.success());
        let deadline = Instant::now() + T;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "manager exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "manager did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
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
    let body = buf.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

fn http_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, path).expect("http answers");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, body) = http_get(addr, "/metrics").expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("tapfleet_manager_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// A raw MQTT client whose received packets are kept until a test asks for them.
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

async fn connect(port: u16, id: &str, user: &str, pass: &str) -> Result<Client, String> {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials(user, pass);
    o.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
    o.set_keep_alive(Duration::from_secs(30));
    let (c, mut el) = AsyncClient::new(o, 64);
    let first = tokio::time::timeout(T, async {
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
    if !first {
        return Err(format!("{id}: connection refused"));
    }
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
    Ok(Client {
        c,
        rx,
        seen: VecDeque::new(),
        task,
    })
}

impl Client {
    /// The first received packet that `f` maps to something, keeping the others.
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

    /// The next message of type `M` on `topic` that `f` accepts.
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

fn sha256(data: &[u8]) -> Sha256 {
    Sha256(sha2::Sha256::digest(data).into())
}

struct Grant {
    tenant: String,
    edge: String,
    user: String,
    pass: String,
}

async fn enroll(port: u16, token: &str, session: &str, hostname: &str) -> Result<Grant, String> {
    let mut c = connect(port, &format!("enroll-{session}"), "enroll", token).await?;
    let resp = Topic::enroll_response(session).expect("topic");
    c.subscribe(&resp.to_string()).await;
    let req = EnrollRequest::new(
        token.into(),
        session.into(),
        hostname.into(),
        "test-1".into(),
    );
    c.publish(&Topic::enroll_request(session).expect("topic"), &req)
        .await;
    let r: EnrollResponse = c.recv(&resp, Some).await;
    assert_eq!(r.session, session);
    match r.result {
        EnrollResult::Accepted(g) => Ok(Grant {
            tenant: g.tenant,
            edge: g.edge_id,
            user: g.username,
            pass: g.password,
        }),
        EnrollResult::Refused { reason } => Err(reason),
    }
}

fn real_file(rel: &str) -> Vec<u8> {
    let p = Path::new(CAPTURES).join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// INDEX.tsv's sha256 of a capture, to check the bytes the test sends are the real capture.
fn index_sha(rel: &str) -> String {
    let index = std::fs::read_to_string(Path::new(CAPTURES).join("INDEX.tsv")).expect("INDEX.tsv");
    index
        .lines()
        .find(|l| l.starts_with(&format!("{rel}\t")))
        .and_then(|l| l.split('\t').next_back())
        .unwrap_or_else(|| panic!("{rel} not in INDEX.tsv"))
        .to_owned()
}

const CHUNK: usize = 256 * 1024;

async fn next_chunk_ack(edge: &mut Client, acks: &Topic, tid: u64) -> u64 {
    edge.recv(acks, |a: Ack| match a.body {
        AckBody::Chunk {
            transfer_id,
            next_offset,
        } if transfer_id == tid => Some(next_offset),
        _ => None,
    })
    .await
}

/// Offers a file and uploads it over `bulk`, starting out of order and with duplicates, then
/// following the manager's acks. Returns the `Stored` ack's location.
async fn upload(
    edge: &mut Client,
    bulk: &Client,
    g: &Grant,
    rid: &str,
    name: &str,
    data: &[u8],
) -> String {
    // At least 4 chunks, so the scripted start has room.
    let chunk = CHUNK.min(data.len() / 4);
    assert!(chunk > 0);
    let replies = Topic::edge(&g.tenant, &g.edge, Channel::Replies).expect("topic");
    let acks = Topic::edge(&g.tenant, &g.edge, Channel::Acks).expect("topic");
    let upload = Topic::edge(&g.tenant, &g.edge, Channel::Upload).expect("topic");
    let offer = TransferOffer {
        recording_id: rid.into(),
        file: name.into(),
        size: data.len() as u64,
        sha256: sha256(data),
    };
    edge.publish(&replies, &JobReply::new(None, ReplyBody::Offer(offer)))
        .await;
    let (tid, offset) = edge
        .recv(&acks, |a: Ack| match a.body {
            AckBody::Accept {
                transfer_id,
                offset,
                file,
                ..
            } if file == name => Some((transfer_id, offset)),
            _ => None,
        })
        .await;
    assert_eq!(offset, 0);
    let chunk_at = |off: usize| {
        let end = (off + chunk).min(data.len());
        TransferChunk::new(tid, off as u64, data[off..end].to_vec())
    };
    // Scripted start: chunk 0, a gap (chunk 2), chunk 1, chunk 1 again, chunk 0 again.
    let script = [
        (0, chunk),
        (2 * chunk, chunk),
        (chunk, 2 * chunk),
        (chunk, 2 * chunk),
        (0, 2 * chunk),
    ];
    for (off, expect) in script {
        bulk.publish(&upload, &chunk_at(off)).await;
        assert_eq!(
            next_chunk_ack(edge, &acks, tid).await,
            expect as u64,
            "ack after chunk at {off}"
        );
    }
    // Then stop-and-wait from the acked offset.
    let mut acked = 2 * chunk as u64;
    while acked < data.len() as u64 {
        bulk.publish(&upload, &chunk_at(acked as usize)).await;
        acked = next_chunk_ack(edge, &acks, tid).await;
    }
    edge.recv(&acks, |a: Ack| match a.body {
        AckBody::Stored {
            file,
            location,
            sha256: s,
            target,
            ..
        } if file == name => {
            assert_eq!(s, sha256(data));
            assert_eq!(target, "cloud");
            Some(location)
        }
        AckBody::TransferFailed { reason, .. } => panic!("transfer failed: {reason}"),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_enrolls_uploads_and_the_catalog_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data: PathBuf = dir.path().join("data");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mqtt = free_port();
    let m = Manager::start(&data, http, mqtt);
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

    let mut edge = connect(m.mqtt, &g.edge, &g.user, &g.pass)
        .await
        .expect("edge connects");
    let bulk = connect(m.mqtt, &format!("{}-bulk", g.edge), &g.user, &g.pass)
        .await
        .expect("bulk connects");
    let t = |ch| Topic::edge(&g.tenant, &g.edge, ch).expect("topic");
    edge.subscribe(&t(Channel::Config).to_string()).await;
    edge.subscribe(&t(Channel::Acks).to_string()).await;
    edge.subscribe(&t(Channel::Jobs).to_string()).await;
    let cfg: DesiredConfig = edge.recv(&t(Channel::Config), Some).await;
    assert_eq!(cfg.version, 1);
    assert_eq!(cfg.edge.storage.target, "cloud");

    // A manifest of a call with two real captures as its files.
    let pcap_rel = "rtp-pcap/examples/marseillaise-srtp.pcap";
    let extra_rel = "rtp-pcap/examples/SIP_DTMF2.pcap";
    let pcap = real_file(pcap_rel);
    let extra = real_file(extra_rel);
    assert_eq!(sha256(&pcap).to_hex(), index_sha(pcap_rel));
    assert_eq!(sha256(&extra).to_hex(), index_sha(extra_rel));
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
    for (name, bytes) in [("call.pcap", &pcap), ("dtmf.pcap", &extra)] {
        man.files.push(FileEntry {
            name: name.into(),
            size: bytes.len() as u64,
            sha256: sha256(bytes),
            content_type: "application/vnd.tcpdump.pcap".into(),
        });
    }

    // An offer before the manifest is refused.
    let early = TransferOffer {
        recording_id: rid.clone(),
        file: "call.pcap".into(),
        size: pcap.len() as u64,
        sha256: sha256(&pcap),
    };
    edge.publish(
        &t(Channel::Replies),
        &JobReply::new(None, ReplyBody::Offer(early.clone())),
    )
    .await;
    edge.recv(&t(Channel::Acks), |a: Ack| {
        matches!(a.body, AckBody::TransferFailed { .. }).then_some(())
    })
    .await;

    edge.publish(&t(Channel::Manifests), &man).await;
    edge.recv(&t(Channel::Acks), |a: Ack| {
        matches!(&a.body, AckBody::Manifest { recording_id } if *recording_id == rid).then_some(())
    })
    .await;
    let job: Job = edge.recv(&t(Channel::Jobs), Some).await;
    assert_eq!(
        job.action,
        JobAction::Upload {
            recording_id: rid.clone(),
            files: vec![]
        }
    );

    let loc = upload(&mut edge, &bulk, &g, &rid, "call.pcap", &pcap).await;
    let dir_rel = format!("default/{}/2024/02/29/{rid}", g.edge);
    assert_eq!(loc, format!("{dir_rel}/call.pcap"));
    // Tampered bytes under the right offer: the digest check fails, nothing becomes visible.
    {
        let mut bad = extra.clone();
        bad[1000] ^= 0xff;
        let offer = TransferOffer {
            recording_id: rid.clone(),
            file: "dtmf.pcap".into(),
            size: extra.len() as u64,
            sha256: sha256(&extra),
        };
        edge.publish(
            &t(Channel::Replies),
            &JobReply::new(None, ReplyBody::Offer(offer)),
        )
        .await;
        let tid = edge
            .recv(&t(Channel::Acks), |a: Ack| match a.body {
                AckBody::Accept { transfer_id, .. } => Some(transfer_id),
                _ => None,
            })
            .await;
        for off in (0..bad.len()).step_by(CHUNK) {
            let end = (off + CHUNK).min(bad.len());
            let chunk = TransferChunk::new(tid, off as u64, bad[off..end].to_vec());
            bulk.publish(&t(Channel::Upload), &chunk).await;
        }
        let reason = edge
            .recv(&t(Channel::Acks), |a: Ack| match a.body {
                AckBody::TransferFailed {
                    transfer_id,
                    reason,
                    ..
                } if transfer_id == tid => Some(reason),
                AckBody::Stored { .. } => panic!("tampered file stored"),
                _ => None,
            })
            .await;
        assert!(reason.contains("sha256"), "{reason}");
        let dir = data
            .join("targets/cloud")
            .join(format!("default/{}/2024/02/29/{rid}", g.edge));
        assert!(!dir.join("dtmf.pcap").exists());
        assert_eq!(metric(http, "transfers_failed_total"), 2); // the early offer and this one
    }
    let loc2 = upload(&mut edge, &bulk, &g, &rid, "dtmf.pcap", &extra).await;
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
    edge.publish(&t(Channel::Manifests), &man).await;
    edge.recv(&t(Channel::Acks), |a: Ack| {
        matches!(&a.body, AckBody::Manifest { recording_id } if *recording_id == rid).then_some(())
    })
    .await;
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
    drop(bulk);

    // Restart: the catalog is kept and the retained config is published again.
    m.stop();
    let m = Manager::start(&data, http, mqtt);
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
