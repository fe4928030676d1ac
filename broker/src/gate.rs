//! The gate: the broker's public listener. It accepts client connections, authenticates each
//! CONNECT against the [`CredentialStore`], and checks every PUBLISH topic, Will topic and
//! SUBSCRIBE filter against the client's [`Identity`] ([`crate::acl`]) before forwarding the packet
//! to rumqttd, which listens on a loopback port of its own that only the gate knows.
//!
//! - One task per connection; the stream setup ([`Accept`]: plain TCP, or TLS in
//!   [`crate::tls`]) and the CONNECT must complete within `connect_timeout`, so an idle socket
//!   or an unfinished TLS handshake blocks nobody but itself.
//! - A verified client certificate that names an edge ([`PeerCert::Edge`]) is the identity: user
//!   name and password are then ignored. Without a certificate the CONNECT's credentials decide.
//! - Revocation: a revoked edge is refused at CONNECT (CONNACK 5), and its open connections are
//!   closed as soon as the [`CredentialStore`] revokes it.
//! - CONNECT refused: CONNACK 1 (protocol), 2 (client id), 4 (user/password) or 5 (not
//!   authorized: no credentials, Will topic outside the namespace), then close.
//! - SUBSCRIBE: refused filters are removed from the SUBSCRIBE forwarded to rumqttd and get 0x80
//!   in the SUBACK the client receives (the gate rewrites rumqttd's SUBACK, or answers itself when
//!   no filter is allowed).
//! - PUBLISH outside the namespace: dropped and the connection closed (MQTT 3.1.1 has no
//!   negative PUBACK).
//! - Towards rumqttd the CONNECT is rewritten: the client id becomes `user|client-id` (one
//!   identity cannot take over another's session) and the password the broker's internal secret
//!   (nothing reaches rumqttd without passing the gate).
//!
//! Every refusal is logged with client id, user and topic (never a password) and counted in
//! [`GateStats`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::acl::{Identity, may_publish, may_subscribe};
use crate::credentials::{CredentialStore, LoginError};
use crate::mqtt::{self, FixedHeader, MqttError, connack};

/// What a client's TLS certificate says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCert {
    /// No certificate (plain TCP, or TLS without a client certificate).
    None,
    /// A certificate verified against the fleet CA naming this edge.
    Edge { tenant: String, edge: String },
    /// A verified certificate that names no edge, or names one badly: refused at CONNECT.
    Invalid(String),
}

/// Turns an accepted TCP connection into the client's stream (the TLS handshake goes here) and
/// says what its certificate proves. Runs inside the connection's own task, under the CONNECT
/// deadline.
pub trait Accept: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = io::Result<(Self::Stream, PeerCert)>> + Send;
}

/// Plain TCP (loopback listeners).
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Accept for Plain {
    type Stream = TcpStream;
    async fn accept(&self, tcp: TcpStream) -> io::Result<(TcpStream, PeerCert)> {
        Ok((tcp, PeerCert::None))
    }
}

/// Counters of the gate (monotonic).
#[derive(Debug, Default)]
pub struct GateStats {
    pub accepted: AtomicU64,
    pub connected: AtomicU64,
    pub over_limit: AtomicU64,
    pub connect_timeouts: AtomicU64,
    pub malformed: AtomicU64,
    pub refused_connect: AtomicU64,
    pub refused_subscribe: AtomicU64,
    pub refused_publish: AtomicU64,
    pub refused_handshake: AtomicU64,
    pub revoked_closed: AtomicU64,
}

/// A copy of the gate's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateCounts {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Clients authenticated and connected through to rumqttd.
    pub connected: u64,
    /// Connections closed at once because `max_connections` were open.
    pub over_limit: u64,
    /// Connections that sent no CONNECT in time.
    pub connect_timeouts: u64,
    /// Connections closed for a malformed or oversized packet.
    pub malformed: u64,
    /// CONNECTs refused (credentials, client id, protocol, Will topic).
    pub refused_connect: u64,
    /// SUBSCRIBE filters refused.
    pub refused_subscribe: u64,
    /// PUBLISHes refused (the connection was closed).
    pub refused_publish: u64,
    /// TLS handshakes that failed (no or a bad client certificate chain, wrong protocol).
    pub refused_handshake: u64,
    /// Open connections closed because their edge was revoked.
    pub revoked_closed: u64,
}

impl GateStats {
    pub fn snapshot(&self) -> GateCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GateCounts {
            accepted: g(&self.accepted),
            connected: g(&self.connected),
            over_limit: g(&self.over_limit),
            connect_timeouts: g(&self.connect_timeouts),
            malformed: g(&self.malformed),
            refused_connect: g(&self.refused_connect),
            refused_subscribe: g(&self.refused_subscribe),
            refused_publish: g(&self.refused_publish),
            refused_handshake: g(&self.refused_handshake),
            revoked_closed: g(&self.revoked_closed),
        }
    }
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// What every connection task shares.
pub(crate) struct Gate {
    pub creds: CredentialStore,
    /// rumqttd's internal listener.
    pub internal: SocketAddr,
    /// The password every forwarded CONNECT carries; rumqttd accepts nothing else.
    pub internal_secret: String,
    /// Largest remaining length accepted from a client.
    pub max_packet: usize,
    pub connect_timeout: Duration,
    pub max_connections: usize,
    pub stats: Arc<GateStats>,
    /// The gate's own link into rumqttd's router (see [`Direct`]); none: every packet goes over
    /// the internal TCP connection.
    pub direct: Option<Direct>,
}

/// Allowed PUBLISHes at QoS 0 and 1 go into rumqttd's router through this in-process link
/// instead of the client's internal TCP connection (which keeps carrying everything else:
/// SUBSCRIBE, PINGREQ, DISCONNECT, and every packet towards the client). The bytes are the ones
/// read from the client (no copy, no TCP hop, no second MQTT parse); the gate answers the QoS 1
/// PUBACK itself once the router has the message, which is what rumqttd's PUBACK means too.
/// One link serves every connection, so a client's publishes keep their order. rumqttd sees no
/// traffic on the internal connection of a client that only publishes, so the gate sends it a
/// PINGREQ every half keep-alive and keeps the PINGRESP from the client.
pub(crate) struct Direct {
    tx: tokio::sync::Mutex<crate::local::LocalSender>,
    /// Never read: the link publishes at QoS 0 and subscribes to nothing, so the router sends
    /// it nothing; kept so that the link stays whole.
    _rx: Mutex<crate::local::LocalReceiver>,
}

impl Direct {
    pub(crate) fn new((tx, rx): (crate::local::LocalSender, crate::local::LocalReceiver)) -> Self {
        Direct {
            tx: tokio::sync::Mutex::new(tx),
            _rx: Mutex::new(rx),
        }
    }
}

/// Slack over the client limit for packets coming from rumqttd (trusted, still bounded).
const UPSTREAM_SLACK: usize = 64 * 1024;
/// How long a closing connection waits for rumqttd to finish after the client left.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts connections forever, one task each.
pub(crate) async fn run<A: Accept>(listener: TcpListener, acceptor: Arc<A>, gate: Arc<Gate>) {
    let slots = Arc::new(Semaphore::new(gate.max_connections));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        inc(&gate.stats.accepted);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            inc(&gate.stats.over_limit);
            tracing::warn!(%peer, max = gate.max_connections, "connection refused: too many connections");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let gate = gate.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve(tcp, peer, acceptor, gate).await;
        });
    }
}

/// Reads whole MQTT packets from a stream, at most `max` bytes of remaining length each.
struct PacketReader<R> {
    rd: R,
    buf: BytesMut,
    max: usize,
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The peer closed cleanly between packets.
    Eof,
    Io(io::Error),
    /// The stream setup (TLS handshake) failed.
    Handshake(io::Error),
    Malformed(MqttError),
    /// A protocol violation or a refusal: close at once.
    Closed(&'static str),
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> Self {
        End::Io(e)
    }
}

impl From<MqttError> for End {
    fn from(e: MqttError) -> Self {
        End::Malformed(e)
    }
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    fn new(rd: R, max: usize) -> Self {
        PacketReader {
            rd,
            buf: BytesMut::with_capacity(8 * 1024),
            max,
        }
    }

    /// The next whole packet and its header.
    async fn next(&mut self) -> Result<(FixedHeader, Bytes), End> {
        loop {
            if let Some(h) = mqtt::frame(&self.buf, self.max)? {
                let n = h.frame_len();
                if self.buf.len() >= n {
                    return Ok((h, self.buf.split_to(n).freeze()));
                }
                self.buf.reserve(n - self.buf.len());
            } else {
                self.buf.reserve(1024);
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return Err(if self.buf.is_empty() {
                    End::Eof
                } else {
                    End::Io(io::ErrorKind::UnexpectedEof.into())
                });
            }
        }
    }
}

async fn serve<A: Accept>(tcp: TcpStream, peer: SocketAddr, acceptor: Arc<A>, gate: Arc<Gate>) {
    // Stream setup and CONNECT share one deadline.
    let first = tokio::time::timeout(gate.connect_timeout, async {
        let (stream, cert) = acceptor.accept(tcp).await.map_err(End::Handshake)?;
        let (rd, wr) = tokio::io::split(stream);
        let mut reader = PacketReader::new(rd, gate.max_packet);
        let (h, pkt) = reader.next().await?;
        Ok::<_, End>((reader, wr, h, pkt, cert))
    })
    .await;
    let (reader, mut wr, h, pkt, cert) = match first {
        Err(_) => {
            inc(&gate.stats.connect_timeouts);
            tracing::debug!(%peer, "no CONNECT in time");
            return;
        }
        Ok(Err(e)) => {
            note_end(&gate, &peer, "", "", &e);
            return;
        }
        Ok(Ok(x)) => x,
    };
    if h.packet_type() != mqtt::CONNECT {
        inc(&gate.stats.malformed);
        tracing::warn!(%peer, packet_type = h.packet_type(), "first packet is not CONNECT");
        return;
    }
    let connect = match mqtt::parse_connect(h.flags(), mqtt::body(&pkt, &h)) {
        Ok(c) => c,
        Err(MqttError::Protocol { name, level }) => {
            inc(&gate.stats.refused_connect);
            tracing::warn!(%peer, protocol = %name, level, "connection refused: unsupported protocol");
            refuse(&mut wr, connack::BAD_PROTOCOL_VERSION).await;
            return;
        }
        Err(e) => {
            inc(&gate.stats.malformed);
            tracing::warn!(%peer, error = %e, "malformed CONNECT");
            return;
        }
    };
    let mut connect = connect;
    let client_id = connect.client_id.clone();
    if let PeerCert::Edge { edge, .. } = &cert {
        // The certificate is the identity; the user name becomes the edge id upstream.
        connect.username = Some(edge.clone());
    }
    let user = connect.username.clone().unwrap_or_default();
    let identity = match login(&gate, &connect, &cert) {
        Ok(id) => id,
        Err((code, reason)) => {
            inc(&gate.stats.refused_connect);
            tracing::warn!(%peer, %client_id, %user, %reason, code, "connection refused");
            refuse(&mut wr, code).await;
            return;
        }
    };
    if let Some(w) = &connect.will
        && !may_publish(&identity, &w.topic)
    {
        inc(&gate.stats.refused_connect);
        tracing::warn!(%peer, %client_id, %user, topic = %w.topic, "connection refused: Will topic outside the namespace");
        refuse(&mut wr, connack::NOT_AUTHORIZED).await;
        return;
    }
    let end = relay(&gate, connect, &identity, reader, wr).await;
    note_end(&gate, &peer, &client_id, &user, &end);
}

/// Decides a CONNECT: the identity, or the CONNACK code and reason.
fn login(gate: &Gate, c: &mqtt::Connect, cert: &PeerCert) -> Result<Identity, (u8, String)> {
    if c.client_id.is_empty() {
        return Err((connack::IDENTIFIER_REJECTED, "empty client id".into()));
    }
    match cert {
        PeerCert::None => {}
        PeerCert::Invalid(why) => {
            return Err((
                connack::NOT_AUTHORIZED,
                format!("client certificate: {why}"),
            ));
        }
        PeerCert::Edge { tenant, edge } => {
            if gate.creds.is_revoked(edge) {
                return Err((connack::NOT_AUTHORIZED, "edge revoked".into()));
            }
            return Ok(Identity::Edge {
                tenant: tenant.clone(),
                edge: edge.clone(),
            });
        }
    }
    let Some(user) = c.username.as_deref() else {
        return Err((connack::NOT_AUTHORIZED, "no credentials".into()));
    };
    let pass = c
        .password
        .as_deref()
        .and_then(|p| std::str::from_utf8(p).ok())
        .unwrap_or("");
    gate.creds
        .authenticate(&c.client_id, user, pass)
        .map_err(|e| {
            let code = match e {
                LoginError::BadPassword => connack::BAD_USER_OR_PASSWORD,
                LoginError::BadEnrollClientId => connack::IDENTIFIER_REJECTED,
                LoginError::NoCredentials | LoginError::BadIdentity | LoginError::Revoked => {
                    connack::NOT_AUTHORIZED
                }
            };
            (code, e.to_string())
        })
}

async fn refuse<W: AsyncWrite + Unpin>(wr: &mut W, code: u8) {
    let _ = wr.write_all(&mqtt::encode_connack(false, code)).await;
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

fn note_end(gate: &Gate, peer: &SocketAddr, client_id: &str, user: &str, end: &End) {
    match end {
        End::Eof => {}
        End::Closed(why) => {
            tracing::debug!(%peer, %client_id, %user, reason = why, "connection closed")
        }
        End::Io(e) => tracing::debug!(%peer, %client_id, %user, error = %e, "connection ended"),
        End::Handshake(e) => {
            inc(&gate.stats.refused_handshake);
            tracing::warn!(%peer, error = %e, "connection refused: TLS handshake failed");
        }
        End::Malformed(e) => {
            inc(&gate.stats.malformed);
            tracing::warn!(%peer, %client_id, %user, error = %e, "connection closed: malformed packet");
        }
    }
}

type ClientWriter<S> = Arc<tokio::sync::Mutex<WriteHalf<S>>>;
/// SUBSCRIBE packet id -> which of its filters were allowed, in order.
type Pending = Arc<Mutex<HashMap<u16, Vec<bool>>>>;

/// Connects the authorized client through to rumqttd and relays until either side ends.
async fn relay<S>(
    gate: &Arc<Gate>,
    connect: mqtt::Connect,
    identity: &Identity,
    reader: PacketReader<ReadHalf<S>>,
    wr: WriteHalf<S>,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client_id = connect.client_id.clone();
    let user = connect.username.clone().unwrap_or_default();
    let keep_alive = Duration::from_secs(u64::from(connect.keep_alive));
    let inner = mqtt::Connect {
        client_id: format!("{user}|{client_id}"),
        password: Some(gate.internal_secret.clone().into_bytes()),
        ..connect
    };
    let upstream = match TcpStream::connect(gate.internal).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the internal broker");
            let mut wr = wr;
            refuse(&mut wr, 3).await; // server unavailable
            return End::Io(e);
        }
    };
    let _ = upstream.set_nodelay(true);
    let (ur, mut uw) = upstream.into_split();
    match mqtt::encode_connect(&inner) {
        Ok(b) => {
            if let Err(e) = uw.write_all(&b).await {
                return End::Io(e);
            }
        }
        Err(e) => return End::Malformed(e),
    }
    inc(&gate.stats.connected);
    tracing::debug!(%client_id, %user, identity = identity.kind(), "client connected");
    let cw: ClientWriter<S> = Arc::new(tokio::sync::Mutex::new(wr));
    let pending: Pending = Arc::default();
    let pings = Arc::new(AtomicU64::new(0));
    let down = tokio::spawn(downstream(
        PacketReader::new(ur, gate.max_packet + UPSTREAM_SLACK),
        cw.clone(),
        pending.clone(),
        pings.clone(),
    ));
    let mut down = AbortOnDrop(down);
    let ctx = Ctx {
        gate,
        identity,
        client_id: &client_id,
        user: &user,
        keep_alive,
        pings,
    };
    let end = tokio::select! {
        end = upstream_loop(&ctx, reader, &mut uw, &cw, &pending) => end,
        _ = &mut down.0 => End::Closed("internal broker closed"),
        _ = until_revoked(&gate.creds, identity) => {
            inc(&gate.stats.revoked_closed);
            tracing::warn!(%client_id, %user, "connection closed: edge revoked");
            End::Closed("edge revoked")
        }
    };
    if matches!(end, End::Eof) {
        // The client left cleanly (or rumqttd did): let rumqttd finish and close its side.
        let _ = uw.shutdown().await;
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, &mut down.0).await;
    }
    let _ = cw.lock().await.shutdown().await;
    end
}

/// Resolves when `identity` (an edge) is revoked; never for other identities.
async fn until_revoked(creds: &CredentialStore, identity: &Identity) {
    let Identity::Edge { edge, .. } = identity else {
        return std::future::pending().await;
    };
    let mut rx = creds.revocations();
    loop {
        if creds.is_revoked(edge) {
            return;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Ctx<'a> {
    gate: &'a Gate,
    identity: &'a Identity,
    client_id: &'a str,
    user: &'a str,
    /// The client's keep-alive (0: none): rumqttd drops a connection silent for 1.5 times it.
    keep_alive: Duration,
    /// PINGREQs the gate sent rumqttd itself: their PINGRESPs are not the client's.
    pings: Arc<AtomicU64>,
}

/// Client -> rumqttd: authorizes PUBLISH and SUBSCRIBE, passes the rest.
async fn upstream_loop<R, W, S>(
    ctx: &Ctx<'_>,
    mut reader: PacketReader<R>,
    uw: &mut W,
    cw: &ClientWriter<S>,
    pending: &Pending,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    S: AsyncWrite,
{
    let mut last_up = tokio::time::Instant::now();
    loop {
        let (h, pkt) = match reader.next().await {
            Ok(x) => x,
            Err(e) => return e,
        };
        let body = mqtt::body(&pkt, &h);
        let out: Bytes = match h.packet_type() {
            mqtt::PUBLISH => {
                let info = match mqtt::parse_publish(h.flags(), body) {
                    Ok(i) => i,
                    Err(e) => return End::Malformed(e),
                };
                if !may_publish(ctx.identity, &info.topic) {
                    inc(&ctx.gate.stats.refused_publish);
                    tracing::warn!(client_id = %ctx.client_id, user = %ctx.user, topic = %info.topic, identity = ctx.identity.kind(), "publish refused: connection closed");
                    return End::Closed("publish refused");
                }
                if let (Some(direct), 0 | 1) = (&ctx.gate.direct, info.qos) {
                    let start = h.header_len + info.payload_at;
                    if start > pkt.len() {
                        return End::Malformed(MqttError::Truncated("PUBLISH"));
                    }
                    let payload = pkt.slice(start..);
                    let sent = direct
                        .tx
                        .lock()
                        .await
                        .publish(info.topic, payload, info.retain)
                        .await;
                    if let Err(e) = sent {
                        tracing::error!(error = %e, "the gate's link to the router is lost");
                        return End::Closed("router link lost");
                    }
                    if let Some(id) = info.packet_id {
                        let [hi, lo] = id.to_be_bytes();
                        let puback = [mqtt::PUBACK << 4, 2, hi, lo];
                        if let Err(e) = cw.lock().await.write_all(&puback).await {
                            return End::Io(e);
                        }
                    }
                    if !ctx.keep_alive.is_zero() && last_up.elapsed() >= ctx.keep_alive / 2 {
                        ctx.pings.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = uw.write_all(&[mqtt::PINGREQ << 4, 0]).await {
                            return End::Io(e);
                        }
                        last_up = tokio::time::Instant::now();
                    }
                    continue;
                }
                pkt
            }
            mqtt::SUBSCRIBE => {
                let sub = match mqtt::parse_subscribe(h.flags(), body) {
                    Ok(s) => s,
                    Err(e) => return End::Malformed(e),
                };
                let mask: Vec<bool> = sub
                    .filters
                    .iter()
                    .map(|(f, _)| may_subscribe(ctx.identity, f))
                    .collect();
                for ((f, _), ok) in sub.filters.iter().zip(&mask) {
                    if !ok {
                        inc(&ctx.gate.stats.refused_subscribe);
                        tracing::warn!(client_id = %ctx.client_id, user = %ctx.user, topic = %f, identity = ctx.identity.kind(), "subscribe refused");
                    }
                }
                if mask.iter().all(|ok| *ok) {
                    pkt
                } else if !mask.iter().any(|ok| *ok) {
                    let codes = vec![mqtt::SUBACK_FAILURE; mask.len()];
                    match mqtt::encode_suback(sub.packet_id, &codes) {
                        Ok(b) => {
                            if let Err(e) = cw.lock().await.write_all(&b).await {
                                return End::Io(e);
                            }
                        }
                        Err(e) => return End::Malformed(e),
                    }
                    continue;
                } else {
                    let allowed = mqtt::Subscribe {
                        packet_id: sub.packet_id,
                        filters: sub
                            .filters
                            .into_iter()
                            .zip(&mask)
                            .filter(|(_, ok)| **ok)
                            .map(|(f, _)| f)
                            .collect(),
                    };
                    let b = match mqtt::encode_subscribe(&allowed) {
                        Ok(b) => b,
                        Err(e) => return End::Malformed(e),
                    };
                    pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(allowed.packet_id, mask);
                    Bytes::from(b)
                }
            }
            mqtt::CONNECT => return End::Closed("second CONNECT"),
            mqtt::CONNACK | mqtt::SUBACK | mqtt::UNSUBACK | mqtt::PINGRESP | 0 | 15 => {
                return End::Malformed(MqttError::Flags("client packet type"));
            }
            _ => pkt,
        };
        if let Err(e) = uw.write_all(&out).await {
            return End::Io(e);
        }
        last_up = tokio::time::Instant::now();
    }
}

/// rumqttd -> client: passes packets through, merging refused filters into SUBACKs.
async fn downstream<S>(
    mut reader: PacketReader<tokio::net::tcp::OwnedReadHalf>,
    cw: ClientWriter<S>,
    pending: Pending,
    pings: Arc<AtomicU64>,
) where
    S: AsyncWrite,
{
    loop {
        let Ok((h, pkt)) = reader.next().await else {
            return;
        };
        // rumqttd does not set TCP_NODELAY on its sockets: ack at once what it sent, so that its
        // next small packet (an ack, an offer's answer) is not held by Nagle for our delayed ACK
        // (~40 ms each on loopback).
        let _ = reader.rd.as_ref().set_quickack(true);
        if h.packet_type() == mqtt::PINGRESP
            && pings
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        {
            continue; // the answer to the gate's own PINGREQ
        }
        let out = if h.packet_type() == mqtt::SUBACK {
            merge_suback(&pkt, &h, &pending).unwrap_or(pkt)
        } else {
            pkt
        };
        if cw.lock().await.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// rumqttd's SUBACK for a rewritten SUBSCRIBE, with 0x80 put back at the refused filters.
fn merge_suback(pkt: &[u8], h: &FixedHeader, pending: &Pending) -> Option<Bytes> {
    let (id, codes) = mqtt::parse_suback(mqtt::body(pkt, h)).ok()?;
    let mask = pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id)?;
    let mut broker_codes = codes.into_iter();
    let merged: Vec<u8> = mask
        .iter()
        .map(|ok| {
            if *ok {
                broker_codes.next().unwrap_or(mqtt::SUBACK_FAILURE)
            } else {
                mqtt::SUBACK_FAILURE
            }
        })
        .collect();
    mqtt::encode_suback(id, &merged).ok().map(Bytes::from)
}
