//! Live capture on the loopback interface: packets sent to a local UDP port come out of
//! [`LiveSource`] with the interface's link type, and the kernel counters are readable.
//! Needs CAP_NET_RAW (the test fails, loudly, without it).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use tapfleet_edge::capture::{LiveOptions, LiveSource, Next, PacketSource};
use tapfleet_edge::packet;

#[test]
fn live_source_sees_loopback_udp() {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = rx.local_addr().expect("addr").port();
    let mut opts = LiveOptions::new("lo");
    opts.filter = Some(format!("udp dst port {port}"));
    opts.immediate = true;
    opts.timeout_ms = 50;
    opts.buffer_size = 4 * 1024 * 1024;
    let mut src = LiveSource::open(&opts)
        .unwrap_or_else(|e| panic!("live capture on lo needs CAP_NET_RAW: {e}"));
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    let mut idle = 0;
    let mut sent = 0;
    while Instant::now() < deadline && seen < 3 {
        if sent < 3 {
            tx.send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", ("127.0.0.1", port))
                .expect("send");
            sent += 1;
        }
        match src.next_packet().expect("capture works") {
            Next::Packet(p) => {
                let d = packet::decode(p.linktype, p.data).expect("decodes");
                assert_eq!(d.dst.port(), port);
                assert_eq!(d.payload, b"OPTIONS sip:x SIP/2.0\r\n\r\n");
                assert!(p.ts_ns > 1_600_000_000_000_000_000, "wall-clock timestamps");
                seen += 1;
            }
            Next::Idle => idle += 1,
            Next::End => panic!("a live source does not end"),
        }
    }
    assert_eq!(seen, 3, "saw our datagrams ({idle} idle polls)");
    let st = src.stats();
    assert!(st.received.is_some() && st.kernel_dropped == Some(0));
}
