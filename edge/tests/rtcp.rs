//! RTCP attached to streams, checked against tshark on real captures: for every stream of a
//! recorded call, the manifest's `rtcp` says how many sender reports its SSRC sent (and the last
//! one's packet count), and how many report blocks were about it (and the last one's cumulative
//! loss), exactly as tshark reads the RTCP in that recording's own `call.pcap`.

mod common;
use common::{capture, record_ok, tshark};

use std::collections::BTreeMap;
use std::path::Path;

/// What tshark finds in the RTCP of a pcap, per SSRC.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    sender_reports: u32,
    sender_packets: u32,
    blocks: u32,
    cumulative_lost: i64,
}

fn parse_ssrc(s: &str) -> u32 {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex SSRC")
}

/// Walks tshark's per-frame lists of RTCP fields in packet order: an SR or RR takes a sender
/// SSRC and a report count (an SR also a packet count) and that many report blocks; an SDES takes
/// its chunk count of identifiers, a BYE its source count.
fn tshark_rtcp(pcap: &Path) -> BTreeMap<u32, Seen> {
    let f = pcap.to_string_lossy();
    let out = tshark(&[
        "-r",
        &f,
        "-Y",
        "rtcp",
        "-T",
        "fields",
        "-E",
        "separator=;",
        "-e",
        "rtcp.pt",
        "-e",
        "rtcp.senderssrc",
        "-e",
        "rtcp.sender.packetcount",
        "-e",
        "rtcp.rc",
        "-e",
        "rtcp.sc",
        "-e",
        "rtcp.ssrc.identifier",
        "-e",
        "rtcp.ssrc.cum_nr",
    ]);
    let mut seen: BTreeMap<u32, Seen> = BTreeMap::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let cols: Vec<Vec<&str>> = line
            .split(';')
            .map(|c| c.split(',').filter(|v| !v.is_empty()).collect())
            .collect();
        let col = |i: usize| cols.get(i).cloned().unwrap_or_default();
        let (mut senders, mut counts, mut rcs, mut scs) = (
            col(1).into_iter(),
            col(2).into_iter(),
            col(3).into_iter(),
            col(4).into_iter(),
        );
        let (mut ids, mut cums) = (col(5).into_iter(), col(6).into_iter());
        for pt in col(0) {
            match pt {
                "200" | "201" => {
                    let sender = parse_ssrc(senders.next().expect("sender SSRC"));
                    if pt == "200" {
                        let e = seen.entry(sender).or_default();
                        e.sender_reports += 1;
                        e.sender_packets = counts.next().expect("count").parse().expect("n");
                    }
                    let rc: usize = rcs.next().expect("rc").parse().expect("rc");
                    for _ in 0..rc {
                        let about = parse_ssrc(ids.next().expect("block SSRC"));
                        let e = seen.entry(about).or_default();
                        e.blocks += 1;
                        e.cumulative_lost = cums.next().expect("cum").parse().expect("cum");
                    }
                }
                // SDES chunks, BYE sources.
                "202" | "203" => {
                    let sc: usize = scs.next().expect("sc").parse().expect("sc");
                    for _ in 0..sc {
                        ids.next();
                    }
                }
                other => panic!("{}: RTCP type {other} not expected here", pcap.display()),
            }
        }
    }
    seen
}

fn check(rel: &str) -> usize {
    let out = tempfile::tempdir().expect("tempdir");
    let recs = record_ok(&[&capture(rel)], out.path());
    let mut compared = 0;
    for (dir, m) in &recs {
        let want = tshark_rtcp(&dir.join("call.pcap"));
        for s in &m.streams {
            let got = s.rtcp.as_ref().map(|r| Seen {
                sender_reports: r.sender_reports,
                sender_packets: r.sender_packets,
                blocks: r.receiver_reports,
                cumulative_lost: r.cumulative_lost,
            });
            let w = want.get(&s.ssrc).filter(|w| **w != Seen::default());
            assert_eq!(
                got.as_ref(),
                w,
                "{rel}: {} stream {:#010x}",
                m.call_id,
                s.ssrc
            );
            compared += usize::from(w.is_some());
        }
    }
    compared
}

#[test]
fn rtcp_reports_are_attached_to_their_streams_like_tshark_reads_them() {
    // SR + RR + SDES compounds on a B2BUA's two legs (the same SSRCs relayed).
    assert!(check("jnetpcap-legacy/tests/test-sip-rtp-g711.pcap") >= 2);
    // SIP over TCP, G.711A + comfort noise.
    check("heplify/example/pcap/sip_ipv4_tcp.pcap");
    // VoLTE inside GTP-U, IPv6, AMR.
    check("arkime/tests/pcap/gtp-iphone.pcap");
}
