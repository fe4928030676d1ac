//! Shared harness of the tests that drive the real `tapfleet-manager` binary as an edge would:
//! the manager process on loopback ports (killed on drop, or stopped with SIGTERM), a minimal
//! HTTP GET for its API, raw rumqttc clients that keep received packets until asked, enrollment
//! with the claim token, and the offer + chunked upload of a file with its acks.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use tapfleet_schemas::{
    Ack, AckBody, Channel, EnrollRequest, EnrollResponse, EnrollResult, FileEntry, JobReply,
    Manifest, Message, ReplyBody, Topic, TransferChunk, TransferOffer,
};
use tokio::sync::mpsc;

use super::sha256;

/// How long any one wait of the harness may take.
pub const T: Duration = Duration::from_secs(30);
/// The largest chunk an upload sends.
pub const CHUNK: usize = 256 * 1024;

/// The `tapfleet-manager serve` process, killed on drop.
pub struct Manager {
    pub child: Child,
    pub http: SocketAddr,
    pub mqtt: u16,
    pub log: PathBuf,
}

impl Manager {
    /// Starts the manager on `data` with its HTTP API on `http` and its broker on `mqtt`,
    /// appending its output to `log`; `extra` adds arguments and environment. Returns once
    /// `/healthz` answers `ok`.
    pub fn start(
        data: &Path,
        http: SocketAddr,
        mqtt: u16,
        log: &Path,
        extra: impl FnOnce(&mut Command),
    ) -> Manager {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tapfleet-manager"));
        cmd.args(["serve", "--data"])
            .arg(data)
            .args(["--http", &http.to_string()])
            .args(["--mqtt-listen", &format!("127.0.0.1:{mqtt}")])
            .env("TAPFLEET_API_TOKEN", API_TOKEN)
            .env("RUST_LOG", "info");
        extra(&mut cmd);
        // tracing writes to stdout.
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("manager starts");
        let m = Manager {
            child,
            http,
            mqtt,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + T;
        while http_get(http, "/healthz").map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "manager not healthy; {}: {}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(http_get(http, "/healthz"), Some((200, "ok".to_owned())));
        m
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
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

/// The admin API token the harness starts the manager with; [`http_get`] sends it.
pub const API_TOKEN: &str = "tapfleet-test-admin-token-0123456789";

/// A minimal HTTP/1.1 GET with the harness's API token: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The value of the manager's `/metrics` counter `tapfleet_manager_<name>`; panics if absent.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, body) = http_get(addr, "/metrics").expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("tapfleet_manager_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// The JSON body of a GET that must answer 200.
pub fn http_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, path).expect("http answers");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// A raw MQTT client whose received packets are kept until a test asks for them.
pub struct Client {
    pub c: AsyncClient,
    rx: mpsc::UnboundedReceiver<Packet>,
    seen: VecDeque<Packet>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to the broker on `port`; an error if the CONNACK refuses (or never comes).
pub async fn connect(port: u16, id: &str, user: &str, pass: &str) -> Result<Client, String> {
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
    pub async fn wait_for<R>(&mut self, what: &str, mut f: impl FnMut(&Packet) -> Option<R>) -> R {
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

    pub async fn subscribe(&mut self, filter: &str) {
        self.c
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        self.wait_for("suback", |p| matches!(p, Packet::SubAck(_)).then_some(()))
            .await;
    }

    pub async fn publish<M: Message>(&self, topic: &Topic, msg: &M) {
        let payload = tapfleet_schemas::encode(msg).expect("encode");
        self.c
            .publish(topic.to_string(), QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
    }

    /// The next message of type `M` on `topic` that `f` accepts.
    pub async fn recv<M: Message, R>(
        &mut self,
        topic: &Topic,
        mut f: impl FnMut(M) -> Option<R>,
    ) -> R {
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

/// What enrollment granted an edge.
#[derive(Clone)]
pub struct Grant {
    pub tenant: String,
    pub edge: String,
    pub user: String,
    pub pass: String,
}

impl Grant {
    /// The edge's topic of channel `ch`.
    pub fn topic(&self, ch: Channel) -> Topic {
        Topic::edge(&self.tenant, &self.edge, ch).expect("topic")
    }
}

/// Enrolls `hostname` with the claim `token` in enrollment session `session`; the refusal's
/// reason if the manager refuses (a refused connection is an error too).
pub async fn enroll(
    port: u16,
    token: &str,
    session: &str,
    hostname: &str,
) -> Result<Grant, String> {
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

/// A connected edge: its control client `ctl` (which the edge's methods of [`Client`] reach
/// through deref), its bulk client for chunks, and its grant.
pub struct Edge {
    pub ctl: Client,
    pub bulk: Client,
    pub g: Grant,
}

impl Deref for Edge {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.ctl
    }
}

impl DerefMut for Edge {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.ctl
    }
}

impl Edge {
    /// Connects the control client (subscribed to `channels` of the edge's topics) and the bulk
    /// client (`<edge>-bulk`).
    pub async fn connect(port: u16, g: &Grant, channels: &[Channel]) -> Edge {
        let mut ctl = connect(port, &g.edge, &g.user, &g.pass)
            .await
            .expect("edge connects");
        let bulk = connect(port, &format!("{}-bulk", g.edge), &g.user, &g.pass)
            .await
            .expect("bulk connects");
        for ch in channels {
            ctl.subscribe(&g.topic(*ch).to_string()).await;
        }
        Edge {
            ctl,
            bulk,
            g: g.clone(),
        }
    }

    /// The edge's topic of channel `ch`.
    pub fn topic(&self, ch: Channel) -> Topic {
        self.g.topic(ch)
    }

    /// Publishes `man` and waits for the manager's ack of it (needs a subscription to acks).
    pub async fn send_manifest(&mut self, man: &Manifest) {
        let acks = self.topic(Channel::Acks);
        self.ctl.publish(&self.topic(Channel::Manifests), man).await;
        let rid = &man.recording_id;
        self.ctl
            .recv(&acks, |a: Ack| {
                matches!(&a.body, AckBody::Manifest { recording_id } if recording_id == rid)
                    .then_some(())
            })
            .await;
    }

    /// Publishes `offer` on the replies, expects an Accept at offset 0, sends `data` over the
    /// bulk client as `pace` says, and returns the final ack of the file: `Stored` or
    /// `TransferFailed`.
    pub async fn upload(&mut self, offer: TransferOffer, data: &[u8], pace: Pace) -> AckBody {
        let acks = self.topic(Channel::Acks);
        let upload = self.topic(Channel::Upload);
        let name = offer.file.clone();
        self.ctl
            .publish(
                &self.topic(Channel::Replies),
                &JobReply::new(None, ReplyBody::Offer(offer)),
            )
            .await;
        let (tid, offset) = self
            .ctl
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
        let chunk = match pace {
            // At least 4 chunks, so the scripted start has room.
            Pace::Scripted => CHUNK.min(data.len() / 4),
            Pace::StopAndWait | Pace::Blast => CHUNK,
        };
        assert!(chunk > 0);
        let chunk_at = |off: usize| {
            let end = (off + chunk).min(data.len());
            TransferChunk::new(tid, off as u64, data[off..end].to_vec())
        };
        let mut acked = 0u64;
        match pace {
            Pace::Blast => {
                for off in (0..data.len()).step_by(chunk) {
                    self.bulk.publish(&upload, &chunk_at(off)).await;
                }
                acked = data.len() as u64;
            }
            Pace::Scripted => {
                let script = [
                    (0, chunk),
                    (2 * chunk, chunk),
                    (chunk, 2 * chunk),
                    (chunk, 2 * chunk),
                    (0, 2 * chunk),
                ];
                for (off, expect) in script {
                    self.bulk.publish(&upload, &chunk_at(off)).await;
                    assert_eq!(
                        next_chunk_ack(&mut self.ctl, &acks, tid).await,
                        expect as u64,
                        "ack after chunk at {off}"
                    );
                }
                acked = 2 * chunk as u64;
            }
            Pace::StopAndWait => {}
        }
        while acked < data.len() as u64 {
            self.bulk.publish(&upload, &chunk_at(acked as usize)).await;
            acked = next_chunk_ack(&mut self.ctl, &acks, tid).await;
        }
        self.ctl
            .recv(&acks, |a: Ack| match a.body {
                AckBody::Stored { ref file, .. } | AckBody::TransferFailed { ref file, .. }
                    if *file == name =>
                {
                    Some(a.body)
                }
                _ => None,
            })
            .await
    }

    /// Uploads real bytes under their own offer; the `Stored` ack's location in `cloud`.
    pub async fn upload_stored(
        &mut self,
        rid: &str,
        name: &str,
        data: &[u8],
        pace: Pace,
    ) -> String {
        match self.upload(offer(rid, name, data), data, pace).await {
            AckBody::Stored {
                location,
                sha256: s,
                target,
                ..
            } => {
                assert_eq!(s, sha256(data));
                assert_eq!(target, "cloud");
                location
            }
            AckBody::TransferFailed { reason, .. } => panic!("transfer failed: {reason}"),
            other => panic!("not stored: {other:?}"),
        }
    }

    /// Uploads `data` with one byte changed under the offer of the real bytes: the manager's
    /// digest check must fail the transfer.
    pub async fn upload_tampered(&mut self, rid: &str, name: &str, data: &[u8], pace: Pace) {
        let mut bad = data.to_vec();
        bad[1000] ^= 0xff;
        match self.upload(offer(rid, name, data), &bad, pace).await {
            AckBody::TransferFailed { reason, .. } => {
                assert!(reason.contains("sha256"), "{reason}")
            }
            other => panic!("tampered file not refused: {other:?}"),
        }
    }
}

/// The manifest entry of a pcap file.
pub fn pcap_entry(name: &str, data: &[u8]) -> FileEntry {
    FileEntry {
        name: name.into(),
        size: data.len() as u64,
        sha256: sha256(data),
        content_type: "application/vnd.tcpdump.pcap".into(),
    }
}

/// The offer of `data` as file `name` of recording `rid`, with its size and SHA-256.
pub fn offer(rid: &str, name: &str, data: &[u8]) -> TransferOffer {
    TransferOffer {
        recording_id: rid.into(),
        file: name.into(),
        size: data.len() as u64,
        sha256: sha256(data),
    }
}

/// The next chunk ack of transfer `tid` on `acks`: its next offset.
pub async fn next_chunk_ack(ctl: &mut Client, acks: &Topic, tid: u64) -> u64 {
    ctl.recv(acks, |a: Ack| match a.body {
        AckBody::Chunk {
            transfer_id,
            next_offset,
        } if transfer_id == tid => Some(next_offset),
        _ => None,
    })
    .await
}

/// How an upload sends its chunks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pace {
    /// One chunk, then wait for its ack, from offset 0.
    StopAndWait,
    /// Chunks of at most a quarter of the file: chunk 0, a gap (chunk 2), chunk 1, chunk 1
    /// again, chunk 0 again, each ack checked; then stop-and-wait from the acked offset.
    Scripted,
    /// Every chunk in order without waiting for acks.
    Blast,
}
