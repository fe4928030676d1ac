//! Fuzz target: arbitrary bytes parsed as a SIP message, its body and the bytes themselves as
//! SDP, header values as name-addr, and every message that parses fed to a call tracker. Nothing
//! may panic; a parsed message's length and body lie inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapfleet_edge::calls::{CallTracker, TrackerOptions};
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
});
