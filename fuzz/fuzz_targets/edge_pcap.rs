//! Fuzz target: arbitrary bytes read as a capture file (classic pcap or pcapng). The reader must
//! return packets or a typed error, never panic, loop forever or allocate without bound; every
//! packet it returns stays within the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapfleet_edge::capture::{MAX_PACKET, PcapReader};

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = PcapReader::new(data) else {
        return;
    };
    let mut n = 0u64;
    while let Ok(Some(p)) = r.next_raw() {
        assert!(p.data.len() <= MAX_PACKET, "packet over the limit");
        n += 1;
        // Each packet consumes at least one byte of input, so this always ends.
        assert!(n <= data.len() as u64, "more packets than input bytes");
    }
    assert_eq!(r.packets(), n);
    assert!(r.bytes_read() <= data.len() as u64);
});
