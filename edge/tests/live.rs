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

/// Several interfaces at once (`lo` and `any`, which also sees loopback): each interface's reader
/// thread feeds the one consumer, so every datagram arrives twice, once with each interface's
/// link type (Ethernet for `lo`, Linux SLL2/SLL for `any`), and the counters are per interface.
#[test]
fn live_capture_merges_several_interfaces_including_any() {
    use tapfleet_edge::capture::LiveCapture;
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = rx.local_addr().expect("addr").port();
    let mut opts = LiveOptions::new("unused");
    opts.filter = Some(format!("udp dst port {port}"));
    opts.timeout_ms = 50;
    opts.buffer_size = 8 * 1024 * 1024;
    let ifaces = ["lo".to_owned(), "any".to_owned()];
    let mut src = LiveCapture::open(&ifaces, &opts)
        .unwrap_or_else(|e| panic!("live capture needs CAP_NET_RAW: {e}"));
    let linktypes: Vec<u16> = src.interfaces().iter().map(|i| i.link_type).collect();
    assert_eq!(linktypes[0], 1, "lo is Ethernet");
    assert!(
        linktypes[1] == 276 || linktypes[1] == 113,
        "any is SLL2 or SLL: {linktypes:?}"
    );
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for i in 0..20u8 {
        tx.send_to(&[b'D', i], ("127.0.0.1", port)).expect("send");
    }
    let mut seen: std::collections::BTreeMap<(u8, u16), u32> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && seen.values().sum::<u32>() < 40 {
        match src.next_packet().expect("capture works") {
            Next::Packet(p) => {
                let d = packet::decode(p.linktype, p.data).expect("decodes");
                assert_eq!(d.dst.port(), port);
                let [b'D', i] = d.payload else {
                    panic!("not ours: {:?}", d.payload)
                };
                *seen.entry((*i, p.linktype)).or_default() += 1;
            }
            Next::Idle => {}
            Next::End => panic!("a live source does not end"),
        }
    }
    for i in 0..20u8 {
        for lt in &linktypes {
            assert_eq!(
                seen.get(&(i, *lt)),
                Some(&1),
                "datagram {i} on link type {lt}"
            );
        }
    }
    // The readers publish their counters every second.
    std::thread::sleep(Duration::from_millis(1200));
    let _ = src.next_packet();
    for i in src.interfaces() {
        let s = i.snapshot();
        assert_eq!(
            (s.kernel_dropped, s.if_dropped),
            (Some(0), Some(0)),
            "{}",
            i.interface
        );
        assert!(s.received.unwrap_or(0) >= 20, "{}: {s:?}", i.interface);
    }
    assert_eq!(src.stats().kernel_dropped, Some(0));
}
