//! Calls written here as pcaps for what no shared capture has: encrypted signalling and media,
//! comfort noise, an SSRC change:
//! - SRTP is kept in `call.pcap`, flagged `srtp` and not decoded (no noise in `audio.wav`):
//!   the real SRTP capture without SIP (marseillaise-srtp.pcap), and calls crafted here whose SDP
//!   says `RTP/SAVP`, or `RTP/AVP` while the payloads carry an SRTP authentication tag;
//! - SIP over TLS (port 5061) is counted in `record`'s summary, not recorded;
//! - a stream that starts with comfort noise (PT 13) keeps its voice codec and is decoded;
//! - a sender changing SSRC mid-call (sequence and timestamp restart) is a second stream of the
//!   same direction, both counted and decoded into the sender's channel.
//!
//! No capture in ../shared/captures has SDP-signalled SRTP, SIP over TLS, a stream starting with
//! CN or an SSRC change, so those calls are written as classic pcaps (Ethernet, IPv4, UDP/TCP).

mod common;
use common::{capture, record, record_ok};

use std::net::Ipv4Addr;
use std::path::Path;

use tapfleet_schemas::Manifest;

const CALLER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CALLEE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// A classic pcap being written: microsecond timestamps, Ethernet.
struct Pcap(Vec<u8>);

impl Pcap {
    fn new() -> Self {
        let mut b = Vec::new();
        b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65_535u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        Pcap(b)
    }

    /// One IPv4 packet (`proto` 17 UDP or 6 TCP) with `l4` as its transport header + payload.
    fn ip(&mut self, t_us: u64, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = (20 + l4.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(l4);
        let b = &mut self.0;
        b.extend_from_slice(&((t_us / 1_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&((t_us % 1_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&f);
    }

    fn udp(&mut self, t_us: u64, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&src.1.to_be_bytes());
        l4.extend_from_slice(&dst.1.to_be_bytes());
        l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        l4.extend_from_slice(payload);
        self.ip(t_us, src.0, dst.0, 17, &l4);
    }

    fn tcp(&mut self, t_us: u64, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), seq: u32, p: &[u8]) {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&src.1.to_be_bytes());
        l4.extend_from_slice(&dst.1.to_be_bytes());
        l4.extend_from_slice(&seq.to_be_bytes());
        l4.extend_from_slice(&1u32.to_be_bytes());
        l4.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        l4.extend_from_slice(p);
        self.ip(t_us, src.0, dst.0, 6, &l4);
    }
}

fn sip(
    start: &str,
    from_tag: bool,
    to_tag: bool,
    cseq: &str,
    sdp: Option<(Ipv4Addr, u16, &str)>,
) -> Vec<u8> {
    let body = sdp
        .map(|(ip, port, proto)| {
            let crypto = if proto.contains("SAVP") {
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
            } else {
                ""
            };
            format!(
                "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
                 m=audio {port} {proto} 0 13\r\na=rtpmap:0 PCMU/8000\r\n{crypto}"
            )
        })
        .unwrap_or_default();
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{start}\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
         From: \"Alice\" <sip:1001@10.0.0.1>{}\r\nTo: <sip:1002@10.0.0.2>{}\r\n\
         Call-ID: crafted-1\r\nCSeq: {cseq}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        if from_tag { ";tag=a1" } else { "" },
        if to_tag { ";tag=b2" } else { "" },
        body.len()
    )
    .into_bytes()
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A call: INVITE/200/ACK with `proto` on the audio line, 50 RTP packets each way of 160 bytes
/// of PCMU (a 1 kHz-ish pattern) plus `tag` bytes, the caller's first packet comfort noise
/// when `cn_first`, the callee's SSRC 0x3333 (sequence and timestamp restarting) from its 26th
/// packet on when `switch`, 3 SIP-over-TLS segments on port 5061 beside, then BYE/200.
fn call(proto: &str, tag: usize, cn_first: bool, switch: bool) -> Vec<u8> {
    let (a_sip, b_sip) = ((CALLER, 5060), (CALLEE, 5060));
    let (a_rtp, b_rtp) = ((CALLER, 4000), (CALLEE, 6000));
    let mut p = Pcap::new();
    let t0 = 1_700_000_000_000_000u64;
    p.udp(
        t0,
        a_sip,
        b_sip,
        &sip(
            "INVITE sip:1002@10.0.0.2 SIP/2.0",
            true,
            false,
            "1 INVITE",
            Some((CALLER, 4000, proto)),
        ),
    );
    p.udp(
        t0 + 50_000,
        b_sip,
        a_sip,
        &sip(
            "SIP/2.0 200 OK",
            true,
            true,
            "1 INVITE",
            Some((CALLEE, 6000, proto)),
        ),
    );
    p.udp(
        t0 + 60_000,
        a_sip,
        b_sip,
        &sip("ACK sip:1002@10.0.0.2 SIP/2.0", true, true, "1 ACK", None),
    );
    let voice: Vec<u8> = (0..160 + tag)
        .map(|i| if i % 8 < 4 { 0x20 } else { 0xa0 })
        .collect();
    for i in 0..50u32 {
        let t = t0 + 100_000 + u64::from(i) * 20_000;
        let seq = i as u16;
        let (pt, payload) = if cn_first && i == 0 {
            (13, &[40u8][..])
        } else {
            (0, &voice[..])
        };
        p.udp(t, a_rtp, b_rtp, &rtp(pt, seq, i * 160, 0x1111, payload));
        p.udp(
            t + 5_000,
            b_rtp,
            a_rtp,
            &if switch && i >= 25 {
                rtp(0, 9000 + seq, 77_000 + i * 160, 0x3333, &voice)
            } else {
                rtp(0, 100 + seq, i * 160, 0x2222, &voice)
            },
        );
        if i % 20 == 0 {
            let tls = [0x17, 3, 3, 0, 4, 0xde, 0xad, 0xbe, 0xef];
            p.tcp(t + 7_000, (CALLER, 40_000), (CALLEE, 5061), i, &tls);
        }
    }
    let t = t0 + 1_200_000;
    p.udp(
        t,
        a_sip,
        b_sip,
        &sip("BYE sip:1002@10.0.0.2 SIP/2.0", true, true, "2 BYE", None),
    );
    p.udp(
        t + 10_000,
        b_sip,
        a_sip,
        &sip("SIP/2.0 200 OK", true, true, "2 BYE", None),
    );
    p.0
}

/// Records `pcap`; returns the one call's manifest, its folder's file names and `record`'s
/// stdout.
fn record_one(pcap: &[u8], dir: &Path) -> (Manifest, Vec<String>, String) {
    let input = dir.join("in.pcap");
    std::fs::write(&input, pcap).expect("write capture");
    let out = dir.join("out");
    let o = record(&[&input], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recs = common::manifests(&out);
    assert_eq!(recs.len(), 1, "one call");
    let (folder, m) = recs.into_iter().next().expect("one");
    let mut files: Vec<String> = std::fs::read_dir(&folder)
        .expect("folder")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    (m, files, String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn srtp_by_sdp_or_by_tag_is_kept_flagged_and_not_decoded() {
    for (proto, tag, why) in [
        ("RTP/SAVP", 10, "SDP"),
        ("RTP/AVP", 4, "32-bit tag"),
        ("RTP/AVP", 10, "80-bit tag"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (m, files, _) = record_one(&call(proto, tag, false, false), dir.path());
        assert_eq!(m.call_id, "crafted-1");
        assert_eq!(
            m.packets,
            5 + 100,
            "{why}: SIP and every SRTP packet in call.pcap"
        );
        assert_eq!(files, ["call.pcap", "manifest.json"], "{why}: no audio.wav");
        assert_eq!(m.streams.len(), 2);
        for s in &m.streams {
            assert!(s.srtp, "{why}: {s:?}");
            assert!(!s.decoded);
            assert!(
                s.not_decoded
                    .as_deref()
                    .is_some_and(|n| n.starts_with("SRTP")),
                "{s:?}"
            );
            assert_eq!(
                (s.packets, s.lost),
                (50, 0),
                "statistics from the clear RTP header"
            );
        }
    }
}

#[test]
fn plain_rtp_starting_with_comfort_noise_is_decoded_and_tls_is_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (m, files, stdout) = record_one(&call("RTP/AVP", 0, true, false), dir.path());
    assert_eq!(files, ["audio.wav", "call.pcap", "manifest.json"]);
    assert_eq!(m.packets, 105, "the TLS segments are not the call's");
    for s in &m.streams {
        assert!(!s.srtp && s.decoded, "{s:?}");
        assert_eq!(
            (s.codec.as_str(), s.payload_type),
            ("PCMU", 0),
            "CN is not the codec"
        );
        assert_eq!(s.packets, 50);
    }
    assert!(
        stdout.contains("3 SIP over TLS (encrypted, not recorded)"),
        "{stdout}"
    );
}

#[test]
fn orphan_srtp_capture_is_kept_without_audio() {
    // Wireshark's SRTP sample: PCMA with 80-bit tags (170-byte payloads), no SIP.
    let out = tempfile::tempdir().expect("tempdir");
    let recs = record_ok(
        &[&capture("rtp-pcap/examples/marseillaise-srtp.pcap")],
        out.path(),
    );
    assert_eq!(recs.len(), 1);
    let (folder, m) = &recs[0];
    let s = m.streams.first().expect("the stream");
    assert!(s.srtp && !s.decoded, "{s:?}");
    assert_eq!(m.packets, s.packets, "every packet kept");
    assert!(m.file("audio.wav").is_none() && !folder.join("audio.wav").exists());
}

#[test]
fn ssrc_change_mid_call_is_a_second_stream_in_the_same_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (m, files, _) = record_one(&call("RTP/AVP", 0, false, true), dir.path());
    assert!(files.contains(&"audio.wav".to_string()));
    let by_ssrc = |ssrc: u32| {
        m.streams
            .iter()
            .find(|s| s.ssrc == ssrc)
            .unwrap_or_else(|| panic!("stream {ssrc:#x}: {:?}", m.streams))
    };
    assert_eq!(m.streams.len(), 3);
    for (ssrc, packets) in [(0x1111, 50), (0x2222, 25), (0x3333, 25)] {
        let s = by_ssrc(ssrc);
        assert_eq!(
            (s.packets, s.lost, s.duplicates),
            (packets, 0, 0),
            "{ssrc:#x}"
        );
        assert!(s.decoded, "{ssrc:#x}");
    }
    assert_eq!(by_ssrc(0x2222).direction, by_ssrc(0x3333).direction);
    assert_eq!(by_ssrc(0x3333).src, by_ssrc(0x2222).src, "same 5-tuple");
    assert!(by_ssrc(0x3333).first_ns > by_ssrc(0x2222).last_ns);
}
