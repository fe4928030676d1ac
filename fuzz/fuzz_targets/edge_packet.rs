//! Fuzz target: arbitrary bytes decoded as a captured frame of each link type the edge knows
//! (and one it does not), and as a bare IP packet. Decoding must never panic, and a payload it
//! returns must lie inside the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapfleet_edge::packet::{self, linktype};

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
});
