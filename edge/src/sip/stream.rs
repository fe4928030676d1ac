//! SIP over TCP: per-flow stream reassembly and Content-Length framing, pure (segments and `now`
//! in, whole SIP messages out).
//!
//! A flow (one direction of a TCP connection) is followed from the first segment whose payload
//! starts with a SIP start line; bytes are appended in sequence-number order, retransmitted bytes
//! are ignored, a few out-of-order segments wait for the gap to fill. Messages are cut by
//! Content-Length (absent means 0, as RFC 3261 section 18.3 requires on streams); CRLF
//! keep-alives between messages are skipped. Each message comes out with the tags of every
//! segment that carried a byte of it (a segment carrying two messages is in both).
//!
//! Bounds, in [`StreamLimits`]: flows followed at once (the least recently active is dropped),
//! bytes buffered per flow (a flow over it is reset to resynchronise on the next start line),
//! out-of-order segments per flow, and an idle timeout. A hole that never fills resets the flow.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::message::looks_like_sip;
use crate::packet::TcpMeta;

/// Bounds of [`SipStreams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    pub max_flows: usize,
    /// Bytes buffered per flow (in-order data + out-of-order segments).
    pub max_flow_bytes: usize,
    pub max_out_of_order: usize,
    /// A flow with no segment for this long (packet time) is dropped.
    pub idle_timeout_ns: i64,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_flows: 16_384,
            max_flow_bytes: 128 * 1024,
            max_out_of_order: 16,
            idle_timeout_ns: 300_000_000_000,
        }
    }
}

/// Counters of [`SipStreams`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub flows: u64,
    pub messages: u64,
    /// Segments whose bytes were all seen before.
    pub retransmissions: u64,
    pub out_of_order: u64,
    /// Flows reset: over the byte bound, a hole that did not fill, or bytes that are not SIP.
    pub resets: u64,
    /// Flows dropped for the flow bound or idleness.
    pub evicted: u64,
}

/// One SIP message cut from a stream, with the tags of the segments that carried it.
#[derive(Debug)]
pub struct StreamMessage<T> {
    pub bytes: Vec<u8>,
    pub tags: Vec<T>,
}

#[derive(Debug)]
struct Flow<T> {
    next_seq: u32,
    buf: Vec<u8>,
    /// (start, end) in `buf` of each segment's bytes, with its tag.
    spans: Vec<(usize, usize, T)>,
    ooo: Vec<(u32, Vec<u8>, T)>,
    ooo_bytes: usize,
    last_ns: i64,
}

/// What [`SipStreams::push`] made of a segment.
#[derive(Debug)]
pub enum Pushed<T> {
    /// Not part of a SIP flow.
    NotSip,
    /// Part of a SIP flow; the messages it completed (often none or one).
    Sip(Vec<StreamMessage<T>>),
    /// Every byte was seen before.
    Retransmission,
}

/// The SIP-over-TCP flows being followed.
#[derive(Debug)]
pub struct SipStreams<T> {
    limits: StreamLimits,
    flows: HashMap<(SocketAddr, SocketAddr), Flow<T>>,
    stats: StreamStats,
}

impl<T: Clone> SipStreams<T> {
    pub fn new(limits: StreamLimits) -> Self {
        SipStreams {
            limits,
            flows: HashMap::new(),
            stats: StreamStats::default(),
        }
    }

    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Flows followed now.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Whether the flow from `src` to `dst` is followed (a segment of it may matter even when it
    /// does not look like SIP).
    pub fn follows(&self, src: SocketAddr, dst: SocketAddr) -> bool {
        self.flows.contains_key(&(src, dst))
    }

    /// Adds a TCP segment from `src` to `dst` seen at `now_ns`.
    pub fn push(
        &mut self,
        now_ns: i64,
        src: SocketAddr,
        dst: SocketAddr,
        tcp: TcpMeta,
        payload: &[u8],
        tag: T,
    ) -> Pushed<T> {
        let key = (src, dst);
        if tcp.rst || tcp.syn {
            // A new or aborted connection: whatever was buffered will not complete.
            self.flows.remove(&key);
        }
        if payload.is_empty() {
            if tcp.fin {
                self.flows.remove(&key);
            }
            return Pushed::NotSip;
        }
        if !self.flows.contains_key(&key) {
            if !looks_like_sip(payload) {
                return Pushed::NotSip;
            }
            if self.flows.len() >= self.limits.max_flows.max(1) {
                self.evict_oldest();
            }
            self.stats.flows += 1;
            self.flows.insert(
                key,
                Flow {
                    next_seq: tcp.seq,
                    buf: Vec::new(),
                    spans: Vec::new(),
                    ooo: Vec::new(),
                    ooo_bytes: 0,
                    last_ns: now_ns,
                },
            );
        }
        let limits = self.limits;
        let Some(flow) = self.flows.get_mut(&key) else {
            return Pushed::NotSip;
        };
        flow.last_ns = now_ns;
        let rel = tcp.seq.wrapping_sub(flow.next_seq) as i32;
        if rel < 0 {
            let seen = rel.unsigned_abs() as usize;
            if seen >= payload.len() {
                self.stats.retransmissions += 1;
                return Pushed::Retransmission;
            }
            flow.append(payload.get(seen..).unwrap_or(&[]), tag);
        } else if rel > 0 {
            self.stats.out_of_order += 1;
            if flow.ooo.len() >= limits.max_out_of_order
                || flow.buf.len() + flow.ooo_bytes + payload.len() > limits.max_flow_bytes
            {
                // The hole does not fill: start again at this segment if it starts a message.
                self.stats.resets += 1;
                flow.reset(tcp.seq);
                if !looks_like_sip(payload) {
                    self.flows.remove(&key);
                    return Pushed::NotSip;
                }
                flow.append(payload, tag);
            } else {
                flow.ooo_bytes += payload.len();
                flow.ooo.push((tcp.seq, payload.to_vec(), tag));
                return Pushed::Sip(Vec::new());
            }
        } else {
            flow.append(payload, tag);
        }
        // Segments that were waiting for this one.
        while let Some(i) = flow
            .ooo
            .iter()
            .position(|(s, d, _)| (s.wrapping_sub(flow.next_seq) as i32) <= 0 && !d.is_empty())
        {
            let (s, d, t) = flow.ooo.swap_remove(i);
            flow.ooo_bytes -= d.len();
            let seen = flow.next_seq.wrapping_sub(s) as usize;
            if let Some(rest) = d.get(seen..).filter(|r| !r.is_empty()) {
                flow.append(rest, t);
            }
        }
        let mut out = Vec::new();
        let mut reset = false;
        loop {
            let skip = flow
                .buf
                .iter()
                .position(|b| !matches!(b, b'\r' | b'\n'))
                .unwrap_or(flow.buf.len());
            if skip > 0 {
                flow.consume(skip);
            }
            if flow.buf.is_empty() {
                break;
            }
            match frame(&flow.buf) {
                Frame::Complete(len) => {
                    let tags = flow
                        .spans
                        .iter()
                        .filter(|(s, _, _)| *s < len)
                        .map(|(_, _, t)| t.clone())
                        .collect();
                    let bytes = flow.buf.get(..len).unwrap_or(&[]).to_vec();
                    flow.consume(len);
                    self.stats.messages += 1;
                    out.push(StreamMessage { bytes, tags });
                }
                Frame::Partial if flow.buf.len() + flow.ooo_bytes <= limits.max_flow_bytes => break,
                Frame::Partial | Frame::NotSip => {
                    reset = true;
                    break;
                }
            }
        }
        if reset {
            self.stats.resets += 1;
            self.flows.remove(&key);
        }
        Pushed::Sip(out)
    }

    /// Drops flows idle for the timeout at `now_ns`.
    pub fn expire(&mut self, now_ns: i64) {
        let timeout = self.limits.idle_timeout_ns;
        let before = self.flows.len();
        self.flows
            .retain(|_, f| now_ns.saturating_sub(f.last_ns) < timeout);
        self.stats.evicted += (before - self.flows.len()) as u64;
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .flows
            .iter()
            .min_by_key(|(_, f)| f.last_ns)
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            self.flows.remove(&k);
            self.stats.evicted += 1;
        }
    }
}

impl<T> Flow<T> {
    fn append(&mut self, data: &[u8], tag: T) {
        let start = self.buf.len();
        self.buf.extend_from_slice(data);
        self.spans.push((start, self.buf.len(), tag));
        self.next_seq = self.next_seq.wrapping_add(data.len() as u32);
    }

    /// Drops the first `n` bytes of the buffer and the spans wholly inside them.
    fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
        self.spans.retain(|(_, e, _)| *e > n);
        for (s, e, _) in &mut self.spans {
            *s = s.saturating_sub(n);
            *e -= n;
        }
    }

    fn reset(&mut self, seq: u32) {
        self.buf.clear();
        self.spans.clear();
        self.ooo.clear();
        self.ooo_bytes = 0;
        self.next_seq = seq;
    }
}

enum Frame {
    /// A whole message of this many bytes starts the buffer.
    Complete(usize),
    /// More bytes are needed.
    Partial,
    /// The buffer does not start with a SIP message.
    NotSip,
}

/// Frames the message at the start of `buf` by its Content-Length.
fn frame(buf: &[u8]) -> Frame {
    let line_end = buf.iter().take(1024).position(|&b| b == b'\n');
    if line_end.is_none() {
        return if buf.len() >= 1024 {
            Frame::NotSip
        } else {
            Frame::Partial
        };
    }
    if !looks_like_sip(buf) {
        return Frame::NotSip;
    }
    let Some((head_end, body_start)) = header_end(buf) else {
        return Frame::Partial;
    };
    let head = buf.get(..head_end).unwrap_or(&[]);
    let mut clen = 0usize;
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or(&[]).trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let v = line.get(colon + 1..).unwrap_or(&[]).trim_ascii();
            match std::str::from_utf8(v).ok().and_then(|v| v.parse().ok()) {
                Some(n) => clen = n,
                None => return Frame::NotSip,
            }
            break;
        }
    }
    match body_start.checked_add(clen) {
        Some(len) if len <= buf.len() => Frame::Complete(len),
        Some(_) => Frame::Partial,
        None => Frame::NotSip,
    }
}

fn header_end(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = data.iter().position(|&b| b == b'\n')?;
    loop {
        match data.get(i + 1) {
            Some(b'\n') => return Some((i, i + 2)),
            Some(b'\r') if data.get(i + 2) == Some(&b'\n') => return Some((i, i + 3)),
            Some(_) => {}
            None => return None,
        }
        i += 1 + data.get(i + 1..)?.iter().position(|&b| b == b'\n')?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u32) -> TcpMeta {
        TcpMeta {
            seq,
            syn: false,
            fin: false,
            rst: false,
        }
    }

    const A: &[u8] = b"OPTIONS sip:a SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 4\r\n\r\nbody";
    const B: &[u8] = b"SIP/2.0 200 OK\r\nCall-ID: 1\r\nl: 0\r\n\r\n";

    /// Each message's bytes and the indexes of the segments that carried it.
    type Messages = Vec<(Vec<u8>, Vec<usize>)>;

    fn run(segs: &[(u32, &[u8])]) -> (Messages, StreamStats) {
        let mut s = SipStreams::new(StreamLimits::default());
        let a: SocketAddr = "10.0.0.1:5060".parse().expect("addr");
        let b: SocketAddr = "10.0.0.2:5060".parse().expect("addr");
        let mut out = Vec::new();
        for (i, (seq, d)) in segs.iter().enumerate() {
            if let Pushed::Sip(ms) = s.push(i as i64, a, b, meta(*seq), d, i) {
                out.extend(ms.into_iter().map(|m| (m.bytes, m.tags)));
            }
        }
        (out, s.stats())
    }

    #[test]
    fn several_messages_per_segment_and_split_messages() {
        let mut all = A.to_vec();
        all.extend_from_slice(b"\r\n\r\n"); // keep-alive
        all.extend_from_slice(B);
        all.extend_from_slice(A);
        // One segment with 1.5 messages, then the rest split in two.
        let cut1 = A.len() + 4 + B.len() + 10;
        let cut2 = cut1 + 20;
        let (msgs, _) = run(&[
            (100, &all[..cut1]),
            (100 + cut1 as u32, &all[cut1..cut2]),
            (100 + cut2 as u32, &all[cut2..]),
        ]);
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0], (A.to_vec(), vec![0]));
        assert_eq!(msgs[1], (B.to_vec(), vec![0]));
        assert_eq!(msgs[2], (A.to_vec(), vec![0, 1, 2]));
    }

    #[test]
    fn retransmissions_and_reordering() {
        let (x, y) = A.split_at(30);
        let (msgs, st) = run(&[
            (u32::MAX - 5, x), // sequence numbers wrap inside the message
            (u32::MAX - 5, x), // retransmitted
            ((u32::MAX - 5).wrapping_add(40), &y[10..]), // ahead of a hole
            ((u32::MAX - 5).wrapping_add(30), &y[..15]), // fills the hole, overlapping the next
        ]);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].0, A);
        assert_eq!(msgs[0].1, vec![0, 3, 2]);
        assert_eq!(st.retransmissions, 1);
        assert_eq!(st.out_of_order, 1);
    }

    #[test]
    fn non_sip_flows_are_ignored_and_garbage_resets() {
        let (msgs, st) = run(&[(1, b"GET / HTTP/1.1\r\n\r\n")]);
        assert!(msgs.is_empty());
        assert_eq!(st.flows, 0);
        let mut bad = B.to_vec();
        bad.extend_from_slice(&[0u8; 2000]);
        let (msgs, st) = run(&[(1, &bad)]);
        assert_eq!(msgs.len(), 1);
        assert_eq!(st.resets, 1);
    }
}
