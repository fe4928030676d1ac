//! A recording's SIP flow (the ladder diagram of the recording page): reads the recording's
//! `call.pcap` from a manager target and lists its SIP messages, reusing the edge's pure parsers
//! (`capture::PcapReader`, `packet` decoding with bounded IPv4/IPv6 fragment reassembly,
//! `sip::parse`). [`parse_flow`] is pure (bytes in, messages out); the route does the IO.
//!
//! - `GET /api/v1/recordings/{id}/sipflow` -> [`SipFlow`] (`messages` in capture order, the
//!   `endpoints` in order of appearance); `404` no recording or no `call.pcap`, `409` only an
//!   edge holds it, `413` the pcap is larger than [`MAX_PCAP_BYTES`], `422` not a capture.
//!
//! Bounds: at most [`MAX_PCAP_BYTES`] are read, at most [`MAX_MESSAGES`] messages returned
//! (`truncated` then says so); only SIP is parsed (every other payload is skipped by a cheap
//! start-line check). SIP over TCP goes through the edge's stream reassembler
//! (`sip::stream::SipStreams`: per-direction byte streams in sequence order, retransmissions
//! dropped, messages cut by Content-Length), so a message split across segments is listed once,
//! at the time of the segment that completed it, and several messages in one segment each.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tapfleet_edge::capture::{CaptureError, PcapReader};
use tapfleet_edge::packet::reassembly::{Reassembler, ReassemblyLimits};
use tapfleet_edge::packet::{self, Datagram, Decoded, TcpMeta, Transport};
use tapfleet_edge::sip::stream::{Pushed, SipStreams, StreamLimits};
use tapfleet_edge::sip::{self, SipMessage, StartLine};

use crate::auth::error;
use crate::catalog::edge_of_target;
use crate::store::Store;
use crate::targets::Targets;

/// Largest `call.pcap` the route reads (a G.711 call of about 50 minutes).
pub const MAX_PCAP_BYTES: u64 = 64 * 1024 * 1024;
/// Messages returned at most.
pub const MAX_MESSAGES: usize = 1000;
/// Longest text field of a message (summary, Call-ID, ...), in bytes.
const MAX_TEXT: usize = 200;

/// One SIP message of the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowMessage {
    /// Capture time, Unix ns, and as RFC 3339 UTC.
    pub at_ns: i64,
    pub time: String,
    /// `ip:port` (IPv6 as `[ip]:port`).
    pub src: String,
    pub dst: String,
    /// `udp` or `tcp`.
    pub transport: &'static str,
    /// The method of a request, e.g. `INVITE`.
    pub method: Option<String>,
    /// The status of a response, e.g. 200.
    pub status: Option<u16>,
    /// What the ladder's arrow says: `INVITE` or `200 OK`.
    pub label: String,
    /// `1 INVITE`.
    pub cseq: String,
    pub call_id: String,
    /// Request: `from-user → to-user`; response: the reason phrase; `(SDP)` when it carries SDP.
    pub summary: String,
    pub sdp: bool,
}

/// The SIP messages of a capture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SipFlow {
    pub messages: Vec<FlowMessage>,
    /// Every `src`/`dst` in order of first appearance (the ladder's columns).
    pub endpoints: Vec<String>,
    /// Packets read.
    pub packets: u64,
    /// Payloads that looked like SIP but did not parse.
    pub skipped: u64,
    /// More than [`MAX_MESSAGES`] (or the caller's limit): the rest is not listed.
    pub truncated: bool,
    /// The capture ended with an error after some packets (what was read is listed).
    pub error: Option<String>,
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default())
}

/// Where a message went: source, destination, transport.
#[derive(Debug, Clone, Copy)]
struct Hop {
    src: SocketAddr,
    dst: SocketAddr,
    transport: Transport,
}

fn message(at_ns: i64, p: Hop, m: &SipMessage<'_>) -> FlowMessage {
    let sdp = m.has_sdp();
    let (method, status, label, mut summary) = match m.start {
        StartLine::Request { method, .. } => {
            let party = |p: &sip::NameAddr<'_>| p.user.unwrap_or(p.uri).to_owned();
            (
                Some(clip(method)),
                None,
                clip(method),
                format!("{} → {}", party(&m.from), party(&m.to)),
            )
        }
        StartLine::Response { status, reason } => (
            None,
            Some(status),
            clip(&format!("{status} {reason}")),
            reason.to_owned(),
        ),
    };
    if sdp {
        summary.push_str(" (SDP)");
    }
    FlowMessage {
        at_ns,
        time: tapfleet_schemas::UtcDateTime::from_unix_ns(at_ns).rfc3339(),
        src: p.src.to_string(),
        dst: p.dst.to_string(),
        transport: match p.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        },
        method,
        status,
        label,
        cseq: clip(&format!("{} {}", m.cseq.seq, m.cseq.method)),
        call_id: clip(m.call_id),
        summary: clip(&summary),
        sdp,
    }
}

impl SipFlow {
    /// Adds one parsed message; false once full.
    fn push(&mut self, at_ns: i64, p: Hop, m: &SipMessage<'_>, max: usize) -> bool {
        if self.messages.len() >= max {
            self.truncated = true;
            return false;
        }
        let fm = message(at_ns, p, m);
        for e in [&fm.src, &fm.dst] {
            if !self.endpoints.contains(e) {
                self.endpoints.push(e.clone());
            }
        }
        self.messages.push(fm);
        true
    }

    /// Adds the SIP message of one UDP datagram; false once full.
    fn add_datagram(&mut self, at_ns: i64, d: &Datagram<'_>, max: usize) -> bool {
        if !sip::looks_like_sip(d.payload) {
            return true;
        }
        let p = Hop {
            src: d.src,
            dst: d.dst,
            transport: d.transport,
        };
        match sip::parse(d.payload) {
            Ok(m) => self.push(at_ns, p, &m, max),
            Err(_) => {
                self.skipped += 1;
                true
            }
        }
    }

    /// Adds the messages a TCP segment completed; false once full.
    fn add_segment(
        &mut self,
        streams: &mut SipStreams<()>,
        at_ns: i64,
        d: &Datagram<'_>,
        tcp: TcpMeta,
        max: usize,
    ) -> bool {
        let Pushed::Sip(done) = streams.push(at_ns, d.src, d.dst, tcp, d.payload, ()) else {
            return true;
        };
        let p = Hop {
            src: d.src,
            dst: d.dst,
            transport: Transport::Tcp,
        };
        for m in done {
            match sip::parse(&m.bytes) {
                Ok(parsed) => {
                    if !self.push(at_ns, p, &parsed, max) {
                        return false;
                    }
                }
                Err(_) => self.skipped += 1,
            }
        }
        true
    }

    fn add(
        &mut self,
        streams: &mut SipStreams<()>,
        at_ns: i64,
        d: &Datagram<'_>,
        tcp: Option<TcpMeta>,
        max: usize,
    ) -> bool {
        match (d.transport, tcp) {
            (Transport::Tcp, Some(tcp)) => self.add_segment(streams, at_ns, d, tcp, max),
            _ => self.add_datagram(at_ns, d, max),
        }
    }
}

/// The SIP messages of a pcap or pcapng capture, at most `max_messages`. Fails only when the
/// bytes are not a capture; an error later keeps what was read (`error`).
pub fn parse_flow(capture: &[u8], max_messages: usize) -> Result<SipFlow, CaptureError> {
    let mut reader = PcapReader::new(capture)?;
    let mut flow = SipFlow::default();
    let mut frags: Reassembler<()> = Reassembler::new(ReassemblyLimits {
        max_bytes: 1024 * 1024,
        max_datagrams: 64,
        timeout_ns: 30_000_000_000,
    });
    // One call's capture: a few flows; the byte bound is the edge's.
    let mut streams: SipStreams<()> = SipStreams::new(StreamLimits {
        max_flows: 256,
        ..StreamLimits::default()
    });
    loop {
        let p = match reader.next_raw() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                flow.error = Some(e.to_string());
                break;
            }
        };
        flow.packets += 1;
        let more = match packet::decode_any(p.linktype, p.data) {
            Ok(Decoded::Datagram(d, tcp)) => flow.add(&mut streams, p.ts_ns, &d, tcp, max_messages),
            Ok(Decoded::Fragment(f)) => match frags.push(p.ts_ns, &f, (), 0) {
                Some(r) => match packet::decode_transport(r.src, r.dst, r.protocol, &r.payload) {
                    Ok((d, tcp)) => flow.add(&mut streams, p.ts_ns, &d, tcp, max_messages),
                    Err(_) => true,
                },
                None => true,
            },
            Err(_) => true,
        };
        if !more {
            break;
        }
    }
    Ok(flow)
}

// ---- HTTP

#[derive(Clone)]
struct FlowState {
    store: Arc<Store>,
    targets: Targets,
}

/// The route, with its state applied.
pub fn router(store: Arc<Store>, targets: Targets) -> Router {
    Router::new()
        .route("/api/v1/recordings/{id}/sipflow", get(sipflow))
        .with_state(FlowState { store, targets })
}

async fn sipflow(State(s): State<FlowState>, Path(id): Path<String>) -> Response {
    let rec = match s.store.recording(&id) {
        Ok(Some(r)) => r,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no recording {id:?}")),
        Err(e) => {
            tracing::error!(error = %e, "sipflow: catalog not read");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let Some(file) = rec.file("call.pcap") else {
        return error(
            StatusCode::NOT_FOUND,
            format!("recording {id} has no call.pcap"),
        );
    };
    if file.size > MAX_PCAP_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "call.pcap of {id} is {} bytes, more than the {MAX_PCAP_BYTES} bytes the SIP flow reads: download it and open it in Wireshark",
                file.size
            ),
        );
    }
    let found = file
        .locations
        .iter()
        .find_map(|l| s.targets.get(&l.target).map(|op| (op, l)));
    let Some((op, loc)) = found else {
        let edges: Vec<&str> = file
            .locations
            .iter()
            .filter_map(|l| edge_of_target(&l.target))
            .collect();
        let msg = if edges.is_empty() {
            format!("call.pcap of {id} is in no target")
        } else {
            format!(
                "call.pcap of {id} is only in the local storage of edge {}: fetch it into a target first",
                edges.join(", ")
            )
        };
        return error(StatusCode::CONFLICT, msg);
    };
    // The catalog's size bounds the read, whatever the target holds.
    let bytes = match op.read_with(&loc.path).range(0..file.size).await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("target {} cannot be read: {e}", loc.target),
            );
        }
    };
    match tokio::task::spawn_blocking(move || parse_flow(&bytes, MAX_MESSAGES)).await {
        Ok(Ok(flow)) => Json(flow).into_response(),
        Ok(Err(e)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("call.pcap of {id} cannot be read: {e}"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "sipflow: parser task failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(name: &str) -> Vec<u8> {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/captures/");
        std::fs::read(format!("{p}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn labels(f: &SipFlow) -> Vec<&str> {
        f.messages.iter().map(|m| m.label.as_str()).collect()
    }

    #[test]
    fn a_udp_call_from_invite_to_bye() {
        // tshark: 7 SIP messages over UDP, INVITE, 183 early media, 200, ACK, BYE.
        let f = parse_flow(&capture("rtp-pcap/examples/nb6-telephone.pcap"), 100).expect("pcap");
        assert_eq!(f.packets, 527);
        assert_eq!(f.messages.len(), 7, "{:?}", labels(&f));
        let first = &f.messages[0];
        assert_eq!(first.method.as_deref(), Some("INVITE"));
        assert!(first.cseq.ends_with(" INVITE") && first.sdp, "{first:?}");
        assert_eq!(first.transport, "udp");
        assert!(labels(&f).contains(&"BYE"), "{:?}", labels(&f));
        assert!(f.messages.iter().any(|m| m.status == Some(183)));
        assert!(f.messages.iter().any(|m| m.label.starts_with("200 ")));
        assert_eq!(f.endpoints.len(), 2, "{:?}", f.endpoints);
        assert!(f.messages.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
        assert!(!f.truncated && f.error.is_none());
    }

    #[test]
    fn fragmented_ipv6_and_sip_over_tcp_in_a_tunnel() {
        // The INVITE is IPv6-fragmented: it is reassembled, so all 32 messages are listed.
        let f = parse_flow(&capture("sngrep/tests/ipv6frag.pcap"), 100).expect("pcap");
        assert_eq!(f.messages.len(), 32, "{:?}", labels(&f));
        assert_eq!(f.messages.iter().filter(|m| m.label == "INVITE").count(), 2);
        assert!(
            f.messages[0].src.starts_with("[fd17:"),
            "{:?}",
            f.messages[0]
        );
        // TCP inside IP-in-IP: INVITE, 183, 200, BYE.
        let f = parse_flow(&capture("sngrep/tests/ipip.pcap"), 100).expect("pcap");
        assert_eq!(labels(&f).len(), 4, "{:?}", labels(&f));
        assert_eq!(f.messages[0].label, "INVITE");
        assert_eq!(f.messages[3].label, "BYE");
        assert!(f.messages.iter().all(|m| m.transport == "tcp"));
    }

    /// What tshark lists as SIP in a capture (port 6060 decoded as SIP too): the method of each
    /// request, the status code of each response, in frame order (several per frame in order).
    fn tshark_sip(name: &str) -> Vec<String> {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/captures/");
        let out = std::process::Command::new("tshark")
            .args(["-n", "-d", "tcp.port==6060,sip", "-r"])
            .arg(format!("{p}{name}"))
            .args(["-Y", "sip", "-T", "fields", "-e", "_ws.col.Info"])
            .output()
            .expect("tshark runs (deploy/install-deps.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .flat_map(|l| l.split(" | "))
            .filter_map(|part| {
                let part = part.trim();
                let word = |s: &str| s.split_whitespace().next().map(str::to_owned);
                part.strip_prefix("Request: ")
                    .and_then(word)
                    .or_else(|| part.strip_prefix("Status: ").and_then(word))
            })
            .collect()
    }

    fn methods_and_statuses(f: &SipFlow) -> Vec<String> {
        f.messages
            .iter()
            .map(|m| match (&m.method, m.status) {
                (Some(method), _) => method.clone(),
                (None, Some(s)) => s.to_string(),
                (None, None) => "?".to_owned(),
            })
            .collect()
    }

    #[test]
    fn sip_over_tcp_is_reassembled_as_tshark_does() {
        // 406 messages over TCP, 234 of them split across segments.
        let name = "heplify/example/pcap/sip_ipv4_tcp_fragmented.pcap";
        let f = parse_flow(&capture(name), MAX_MESSAGES).expect("pcap");
        let want = tshark_sip(name);
        assert_eq!(want.len(), 406);
        assert_eq!(methods_and_statuses(&f), want);
        assert_eq!(f.skipped, 0);
        assert!(f.messages.iter().all(|m| m.transport == "tcp"));
        assert!(f.messages.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
        // Every message's Call-ID and CSeq came through whole.
        assert!(f.messages.iter().all(|m| !m.call_id.is_empty()));
        // Other captures with SIP over TCP (and UDP, tunnels, IPv6): the same lists as tshark.
        for name in [
            "heplify/example/pcap/sip_ipv4_tcp.pcap",
            "sip-capture/extract/testdata/sip-tcp.pcap",
            "sipp/sipp_calls_tcp.pcap",
            "arkime/tests/pcap/gtp-iphone.pcap",
            "sngrep/tests/ipip.pcap",
        ] {
            let f = parse_flow(&capture(name), MAX_MESSAGES).expect("pcap");
            assert_eq!(methods_and_statuses(&f), tshark_sip(name), "{name}");
        }
    }

    #[test]
    fn bounded_and_refusing_what_is_not_a_capture() {
        let bytes = capture("rtp-pcap/examples/SIP_DTMF2.pcap");
        let f = parse_flow(&bytes, 3).expect("pcap");
        assert_eq!(f.messages.len(), 3);
        assert!(f.truncated);
        assert!(parse_flow(b"INVITE sip:x SIP/2.0\r\n\r\n", 10).is_err());
        // Cut in the middle of a record: what came before is kept, the error is said.
        let f = parse_flow(&bytes[..bytes.len() / 2], 1000).expect("pcap header");
        assert!(f.error.is_some() && !f.messages.is_empty(), "{f:?}");
    }
}
