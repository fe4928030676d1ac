//! Fuzz target: arbitrary bytes parsed as a SIP message, its body and the bytes themselves as
//! SDP, header values as name-addr, and every message that parses fed to a call tracker. Nothing
//! may panic; a parsed message's length and body lie inside the input. Then the input is cut into
//! TCP segments `[len][seq delta][flags][bytes]` of one flow fed to the SIP stream reassembler.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapfleet_edge::calls::{CallTracker, TrackerOptions};
use tapfleet_edge::packet::TcpMeta;
use tapfleet_edge::sip::stream::{Pushed, SipStreams, StreamLimits};
use tapfleet_edge::sip::{self, sdp};

fuzz_target!(|data: &[u8]| {
    let _ = sdp::parse(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = sip::message::parse_name_addr(s);
        let _ = sip::message::uri_user(s);
    }
    let mut tracker = CallTracker::new(TrackerOptions {
        max_calls: 4,
        ..TrackerOptions::default()
    });
    // Several messages back to back, as in a TCP stream.
    let mut rest = data;
    let mut now = 0i64;
    for _ in 0..16 {
        let Ok(m) = sip::parse(rest) else { break };
        assert!(m.len <= rest.len(), "message longer than its input");
        assert!(m.body.len() <= m.len);
        let _ = m.has_sdp();
        let _ = m.header("via");
        if m.has_sdp() {
            let _ = sdp::parse(m.body);
        }
        let _ = tracker.on_sip(now, &m);
        let _ = tracker.take_ended();
        now += 1_000_000_000;
        let _ = tracker.expire(now);
        if m.len == 0 {
            break;
        }
        rest = rest.get(m.len..).unwrap_or(&[]);
    }
    let _ = tracker.end_all();

    let limits = StreamLimits {
        max_flows: 2,
        max_flow_bytes: 2048,
        max_out_of_order: 3,
        idle_timeout_ns: 100,
    };
    let mut streams = SipStreams::new(limits);
    let (a, b) = ("10.0.0.1:5060".parse().unwrap(), "10.0.0.2:5060".parse().unwrap());
    let mut seq = 1000u32;
    let mut rest = data;
    let mut n = 0i64;
    while let [len, delta, flags, tail @ ..] = rest {
        let (seg, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        n += 1;
        // Mostly in order; sometimes back (retransmission) or ahead (a hole).
        let at = seq.wrapping_add(i32::from(*delta as i8) as u32);
        let meta = TcpMeta { seq: at, syn: flags & 1 != 0, fin: flags & 2 != 0, rst: flags & 4 != 0 };
        let (src, dst) = if flags & 8 == 0 { (a, b) } else { (b, a) };
        if let Pushed::Sip(msgs) = streams.push(n, src, dst, meta, seg, n) {
            for m in msgs {
                assert!(!m.tags.is_empty(), "a message has its segments");
                assert!(m.bytes.len() <= limits.max_flow_bytes + 255);
                let _ = sip::parse(&m.bytes);
            }
        }
        assert!(streams.flows() <= limits.max_flows);
        seq = at.wrapping_add(seg.len() as u32);
        streams.expire(n);
    }
});
