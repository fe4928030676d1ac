//! Fuzz target: arbitrary bytes decoded as a captured frame of each link type the edge knows
//! (and one it does not), and as a bare IP packet. Decoding must never panic, and a payload it
//! returns must lie inside the frame. Then the input is cut into `[len][ip packet]` records whose
//! fragments go through a small bounded reassembler, which must stay within its bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapfleet_edge::packet::reassembly::{MAX_DATAGRAM, Reassembler, ReassemblyLimits};
use tapfleet_edge::packet::{self, Decoded, linktype};

const LINKTYPES: [u16; 9] = [
    linktype::NULL,
    linktype::ETHERNET,
    linktype::RAW_OPENBSD,
    linktype::RAW,
    linktype::LINUX_SLL,
    linktype::IPV4,
    linktype::IPV6,
    linktype::LINUX_SLL2,
    999,
];

fn inside(frame: &[u8], part: &[u8]) -> bool {
    let (f, p) = (frame.as_ptr() as usize, part.as_ptr() as usize);
    part.is_empty() || (p >= f && p + part.len() <= f + frame.len())
}

fuzz_target!(|data: &[u8]| {
    for lt in LINKTYPES {
        if let Ok(d) = packet::decode(lt, data) {
            assert!(inside(data, d.payload), "payload outside the frame");
        }
    }
    if let Ok(d) = packet::decode_ip(data) {
        assert!(inside(data, d.payload), "payload outside the packet");
    }

    let limits = ReassemblyLimits {
        max_bytes: 4096,
        max_datagrams: 4,
        timeout_ns: 50,
    };
    let mut r = Reassembler::new(limits);
    let mut rest = data;
    let mut now = 0i64;
    while let [len, tail @ ..] = rest {
        let (pkt, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        now += 10;
        if let Ok(Decoded::Fragment(f)) = packet::decode_ip_any(pkt) {
            if let Some(d) = r.push(now, &f, now, 16) {
                assert!(d.payload.len() <= MAX_DATAGRAM);
                assert!(!d.tags.is_empty());
                let _ = packet::decode_transport(d.src, d.dst, d.protocol, &d.payload);
            }
            assert!(r.buffered_bytes() <= limits.max_bytes);
            assert!(r.pending() <= limits.max_datagrams);
        }
    }
});
