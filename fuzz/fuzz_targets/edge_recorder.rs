//! Fuzz target: a whole [`Recorder`] fed arbitrary packets (SIP over UDP and TCP, RTP, orphan
//! streams, IP fragments, every link type), writing into a temporary folder that is removed
//! after each input. Input: records `[mode][dt][len:2][...]`; mode & 3 == 0 is a raw
//! frame of a link type chosen by mode >> 2; otherwise the record starts with
//! `[src][dst][sport:2][dport:2]` and its rest is the payload of a synthesized IPv4 UDP (1, 3)
//! or TCP (2) packet between a few hosts, so SIP and RTP reach the call logic quickly. Packet
//! time advances by dt * 10 ms. Nothing may panic; IO errors are impossible here, so
//! `process` must succeed; every started recording must finish.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use tapfleet_edge::capture::{RawPacket, TsPrecision};
use tapfleet_edge::packet::linktype;
use tapfleet_edge::recorder::{Recorder, RecorderEvent, RecorderOptions};

const LINKTYPES: [u16; 6] = [
    linktype::ETHERNET,
    linktype::RAW,
    linktype::LINUX_SLL,
    linktype::LINUX_SLL2,
    linktype::NULL,
    linktype::IPV6,
];

/// A folder per fuzzing process, in memory when the machine has /dev/shm (the recorder fsyncs
/// every finished recording, which on a disk would make each input take milliseconds).
fn out_dir() -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("tapfleet-fuzz-recorder-{}", std::process::id()))
}

fn ipv4(src: u8, dst: u8, tcp: bool, sport: u16, dport: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let thl = if tcp { 20 } else { 8 };
    let total = (20 + thl + payload.len()).min(65535);
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64]);
    p.push(if tcp { 6 } else { 17 });
    p.extend_from_slice(&[0, 0, 10, 0, 0, src % 4, 10, 0, 0, dst % 4]);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    if tcp {
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        let ulen = (8 + payload.len()).min(65535);
        p.extend_from_slice(&[(ulen >> 8) as u8, ulen as u8, 0, 0]);
    }
    p.extend_from_slice(payload);
    p
}

fuzz_target!(|data: &[u8]| {
    let dir = out_dir();
    let mut rec = Recorder::new(dir.clone(), RecorderOptions::default());
    let mut rest = data;
    let mut ts = 1_700_000_000_000_000_000i64;
    let mut tcp_seq = 0u32;
    let mut started = 0usize;
    let mut finished = 0usize;
    while let [mode, dt, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        ts += i64::from(*dt) * 10_000_000;
        let (lt, frame) = match mode & 3 {
            0 => (LINKTYPES[usize::from(mode >> 2) % LINKTYPES.len()], body.to_vec()),
            m => {
                let [src, dst, s0, s1, d0, d1, payload @ ..] = body else {
                    continue;
                };
                let tcp = m == 2;
                let sport = u16::from_be_bytes([*s0, *s1]);
                let dport = u16::from_be_bytes([*d0, *d1]);
                let f = ipv4(*src, *dst, tcp, sport, dport, tcp_seq, payload);
                tcp_seq = tcp_seq.wrapping_add(payload.len() as u32);
                (linktype::RAW, f)
            }
        };
        let pkt = RawPacket {
            ts_ns: ts,
            orig_len: frame.len() as u32,
            linktype: lt,
            ts_precision: TsPrecision::Micro,
            data: &frame,
            classic: None,
        };
        if let Err(e) = rec.process(&pkt) {
            panic!("process failed: {e}");
        }
        for ev in rec.drain_events() {
            match ev {
                RecorderEvent::Started { .. } => started += 1,
                RecorderEvent::Finished(_) => finished += 1,
            }
        }
    }
    rec.finish();
    for ev in rec.drain_events() {
        match ev {
            RecorderEvent::Started { .. } => started += 1,
            RecorderEvent::Finished(_) => finished += 1,
        }
    }
    let failures: Vec<_> = rec.drain_failures().collect();
    assert!(failures.is_empty(), "recordings failed: {failures:?}");
    assert_eq!(started, finished, "every started recording finishes");
    assert_eq!(rec.active_calls(), 0);
    let _ = std::fs::remove_dir_all(&dir);
});
