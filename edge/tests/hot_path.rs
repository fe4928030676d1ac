//! The recorder's hot path and its finisher thread, on generated G.711 calls: the packet thread
//! allocates nothing per RTP packet (counted by a per-thread counting global allocator), and
//! finishing calls on the background thread writes the same bytes as finishing inline, each
//! recording's `Started` before its `Finished`.
// A global allocator is an unsafe trait; this one only counts and forwards to the system's.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;

use tapfleet_callgen::GenOptions;
use tapfleet_edge::capture::PcapReader;
use tapfleet_edge::recorder::{Recorder, RecorderEvent, RecorderOptions};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // try_with: no panic while the thread's locals are being torn down.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards every call unchanged to `System`, which upholds the contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn capture(calls: u32, concurrency: u32, secs: f64) -> Vec<u8> {
    let opts = GenOptions {
        calls,
        concurrency,
        duration_s: secs,
        seed: 7,
        ..GenOptions::default()
    };
    let mut pcap = Vec::new();
    tapfleet_callgen::generate(&opts, &mut pcap).expect("generate");
    pcap
}

/// Packets and allocations of the packet thread recording `pcap` to the end.
fn record_counting(pcap: &[u8]) -> (u64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = allocations();
    let mut rec = Recorder::new(dir.path().to_path_buf(), RecorderOptions::default());
    let mut reader = PcapReader::new(pcap).expect("reader");
    let (mut n, mut events) = (0u64, 0usize);
    while let Some(pkt) = reader.next_raw().expect("read") {
        rec.process(&pkt).expect("process");
        events += rec.drain_events().count();
        n += 1;
    }
    rec.finish();
    events += rec.drain_events().count();
    assert_eq!(events, 40, "20 calls started and finished");
    assert!(rec.drain_failures().next().is_none());
    (n, allocations() - before)
}

#[test]
fn no_allocation_per_rtp_packet() {
    // The same 20 calls, 2 s and 8 s long: what the longer run allocates more is per packet.
    let (n_short, a_short) = record_counting(&capture(20, 20, 2.0));
    let (n_long, a_long) = record_counting(&capture(20, 20, 8.0));
    let packets = n_long - n_short;
    let allocs = a_long.saturating_sub(a_short);
    assert!(packets > 10_000, "{packets} more packets");
    // Buffers are per call, not per packet; ticks (every 100 ms of packet time) and a table
    // growing may allocate now and then: measured 14 for 12,000 packets.
    assert!(
        allocs * 200 < packets,
        "{allocs} allocations for {packets} more RTP packets"
    );
}

/// Every file under `dir`, by path relative to it.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        let name = p
            .strip_prefix(dir)
            .expect("prefix")
            .to_string_lossy()
            .into_owned();
        if p.is_dir() {
            for (k, v) in tree(&p) {
                out.insert(format!("{name}/{k}"), v);
            }
        } else {
            out.insert(name, std::fs::read(&p).expect("read"));
        }
    }
    out
}

#[test]
fn background_finishing_writes_the_same_bytes_and_orders_events() {
    // More calls than run at once: calls end (and are finished) while others are recorded.
    let pcap = capture(24, 6, 2.0);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut outcomes = Vec::new();
    for background in [false, true] {
        let out = dir.path().join(format!("bg-{background}"));
        let opts = RecorderOptions {
            background_finish: background,
            ..RecorderOptions::default()
        };
        let mut rec = Recorder::new(out.clone(), opts);
        let mut reader = PcapReader::new(pcap.as_slice()).expect("reader");
        let mut events = Vec::new();
        while let Some(pkt) = reader.next_raw().expect("read") {
            rec.process(&pkt).expect("process");
            events.extend(rec.drain_events());
        }
        rec.finish();
        events.extend(rec.drain_events());
        assert!(rec.drain_failures().next().is_none());
        assert_eq!(rec.finishing(), 0);
        let mut started = BTreeMap::new();
        let mut finished = Vec::new();
        for (i, e) in events.iter().enumerate() {
            match e {
                RecorderEvent::Started { recording_id, .. } => {
                    started.insert(recording_id.clone(), i);
                }
                RecorderEvent::Finished(f) => {
                    let s = started.get(&f.recording_id).copied();
                    assert!(
                        s.is_some_and(|s| s < i),
                        "{} finished before it started",
                        f.recording_id
                    );
                    // Finished means on disk with its manifest.
                    assert!(f.dir.join("manifest.json").is_file());
                    finished.push(f.recording_id.clone());
                }
            }
        }
        assert_eq!(started.len(), 24);
        assert_eq!(finished.len(), 24);
        outcomes.push(tree(&out));
    }
    assert_eq!(
        outcomes[0].len(),
        24 * 3,
        "call.pcap, audio.wav, manifest.json each"
    );
    assert!(
        outcomes[0] == outcomes[1],
        "background finishing wrote different files"
    );
}
