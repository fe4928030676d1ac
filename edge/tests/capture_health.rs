//! What the capture's health does to recordings, on a real capture (captures/sipp/sipp_calls.pcap:
//! five sequential SIPp calls of about 9 s each, G.711 both ways):
//! - a call longer than the maximum duration is cut into chained parts (`part`, `previous_part`,
//!   end reason `max_duration`) that together hold exactly the packets of the uncut recording;
//! - packets the kernel dropped while calls were active ([`Recorder::note_drops`]) mark those
//!   recordings, and only those, incomplete with the number dropped.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use common::{capture, tshark};
use tapfleet_edge::capture::PcapReader;
use tapfleet_edge::recorder::{Recorder, RecorderEvent, RecorderOptions};
use tapfleet_schemas::{EndReason, Manifest};

/// Records `file`; `hook(recorder, packet index, packet time)` runs before each packet.
fn record(
    file: &Path,
    out: &Path,
    opts: RecorderOptions,
    mut hook: impl FnMut(&mut Recorder, u64, i64),
) -> Vec<Manifest> {
    let mut rec = Recorder::new(out.to_path_buf(), opts);
    let mut reader = PcapReader::new(BufReader::new(File::open(file).expect("open capture")))
        .expect("a capture");
    let mut i = 0u64;
    while let Some(p) = reader.next_raw().expect("readable capture") {
        hook(&mut rec, i, p.ts_ns);
        rec.process(&p).expect("recording works");
        i += 1;
    }
    rec.finish();
    let mut v: Vec<Manifest> = rec
        .drain_events()
        .filter_map(|e| match e {
            RecorderEvent::Finished(f) => Some(f.manifest),
            RecorderEvent::Started { .. } => None,
        })
        .collect();
    assert_eq!(rec.drain_failures().count(), 0);
    v.sort_by_key(|m| (m.call_id.clone(), m.part));
    v
}

/// (src, dst, ssrc) -> packets over a set of recordings.
fn stream_packets<'a>(
    ms: impl Iterator<Item = &'a Manifest>,
) -> HashMap<(String, String, u32), u64> {
    let mut m = HashMap::new();
    for s in ms.flat_map(|m| &m.streams) {
        *m.entry((s.src.clone(), s.dst.clone(), s.ssrc)).or_default() += s.packets;
    }
    m
}

#[test]
fn long_calls_are_cut_into_chained_parts_holding_every_packet() {
    let file = capture("sipp/sipp_calls.pcap");
    let tmp = tempfile::tempdir().expect("tempdir");
    let whole = record(
        &file,
        &tmp.path().join("whole"),
        RecorderOptions::default(),
        |_, _, _| {},
    );
    assert_eq!(whole.len(), 5);
    let max_ns = 3_000_000_000;
    let opts = RecorderOptions {
        max_call_ns: max_ns,
        ..RecorderOptions::default()
    };
    let cut_dir = tmp.path().join("cut");
    let parts = record(&file, &cut_dir, opts, |_, _, _| {});
    for w in &whole {
        assert!(
            w.end_ns - w.start_ns > 2 * max_ns,
            "the calls are long enough to cut twice"
        );
        let mine: Vec<&Manifest> = parts.iter().filter(|m| m.call_id == w.call_id).collect();
        assert!(mine.len() >= 3, "{}: {} parts", w.call_id, mine.len());
        for (i, m) in mine.iter().enumerate() {
            assert_eq!(m.part as usize, i + 1);
            assert_eq!((&m.caller, &m.callee), (&w.caller, &w.callee));
            // Cut at a recorder tick: within 100 ms of packet time past the maximum.
            assert!(m.end_ns - m.start_ns <= max_ns + 100_000_000, "{m:?}");
            match i {
                0 => {
                    assert_eq!(m.previous_part, None);
                    assert_eq!(m.start_ns, w.start_ns);
                }
                _ => {
                    let prev = mine[i - 1];
                    assert_eq!(m.previous_part.as_deref(), Some(prev.recording_id.as_str()));
                    assert!(m.start_ns >= prev.end_ns);
                    assert_ne!(m.recording_id, prev.recording_id);
                }
            }
            if i + 1 < mine.len() {
                assert_eq!(m.end_reason, EndReason::MaxDuration);
                assert!(m.complete, "a cut part misses nothing: {:?}", m.incomplete);
            } else {
                assert_eq!(m.end_reason, w.end_reason);
                assert_eq!(m.end_ns, w.end_ns);
            }
        }
        // Together the parts hold exactly the uncut recording's packets, stream by stream.
        assert_eq!(
            mine.iter().map(|m| m.packets).sum::<u64>(),
            w.packets,
            "{}",
            w.call_id
        );
        assert_eq!(
            stream_packets(mine.iter().copied()),
            stream_packets(std::iter::once(w)),
            "{}",
            w.call_id
        );
    }
    // Each part's call.pcap is a capture of its own: tshark reads exactly its packets.
    let second = parts.iter().find(|m| m.part == 2).expect("a second part");
    let pcap = cut_dir.join(&second.recording_id).join("call.pcap");
    let frames = tshark(&[
        "-r",
        &pcap.to_string_lossy(),
        "-T",
        "fields",
        "-e",
        "frame.number",
    ]);
    assert_eq!(frames.lines().count() as u64, second.packets);
}

#[test]
fn kernel_drops_mark_only_the_recordings_active_then_incomplete() {
    let file = capture("sipp/sipp_calls.pcap");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut active_at_drop = 0;
    let mut drop_ns = 0;
    let ms = record(
        &file,
        tmp.path(),
        RecorderOptions::default(),
        |rec, i, ts| {
            // Packet 600 is inside the first call, after its answer.
            if i == 600 {
                active_at_drop = rec.active_calls();
                drop_ns = ts;
                rec.note_drops(ts, 7);
                rec.note_drops(ts, 0);
                assert_eq!(rec.stats().capture_drops, 7);
            }
        },
    );
    assert_eq!(ms.len(), 5);
    assert!(active_at_drop >= 1);
    let hit: Vec<&Manifest> = ms.iter().filter(|m| !m.complete).collect();
    assert_eq!(hit.len(), active_at_drop);
    for m in &ms {
        let during = m.start_ns <= drop_ns && drop_ns <= m.end_ns;
        assert_eq!(!m.complete, during, "{}: {:?}", m.call_id, m.incomplete);
        if during {
            assert_eq!(m.incomplete.len(), 1, "{:?}", m.incomplete);
            assert!(
                m.incomplete[0].contains("kernel dropped 7 captured packets"),
                "{:?}",
                m.incomplete
            );
        }
    }
}
