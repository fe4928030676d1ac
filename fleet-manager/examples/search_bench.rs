//! Recordings search benchmark: fills a catalog (redb, the real `Store::insert_entries` path with
//! its search indexes) with N generated recordings, then times searches through `Store::search`
//! (ids + loading the page's entries, as the API does) and prints p50/p99.
//!
//! ```text
//! cargo run --release -p tapfleet-fleet-manager --example search_bench -- [N] [DB_PATH]
//! ```
//! N defaults to 1,000,000; DB_PATH to a temporary file (an existing DB is reused as is, so a
//! 10 M catalog is generated once). Numbers: 500,000 distinct callers, 100,000 callees, 20 edges,
//! starts spread over 90 days.

use std::time::Instant;

use tapfleet_fleet_manager::catalog::{PartyEntry, RecordingEntry};
use tapfleet_fleet_manager::search::SearchQuery;
use tapfleet_fleet_manager::store::Store;
use tapfleet_schemas::{Manifest, RecordingKind, recording_id};

const CALLERS: u64 = 500_000;
const CALLEES: u64 = 100_000;
const T0_NS: i64 = 1_700_000_000_000_000_000;
const SPAN_NS: i64 = 90 * 86_400 * 1_000_000_000;

/// A deterministic generator (splitmix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn caller(n: u64) -> String {
    format!("+4930{:07}", n)
}

fn callee(n: u64) -> String {
    format!("0800{:06}", n)
}

fn entry(i: u64, r: &mut Rng) -> RecordingEntry {
    let start = T0_NS + (r.next() % SPAN_NS as u64) as i64;
    let mut m = Manifest::new(recording_id(start, i.to_be_bytes()), RecordingKind::Call);
    m.start_ns = start;
    m.end_ns = start + (r.next() % 600_000_000_000) as i64;
    m.call_id = format!("{:016x}@bench", r.next());
    m.complete = !r.next().is_multiple_of(50);
    let mut e = RecordingEntry::from_manifest(&m, "default", &format!("edge-{:02}", r.next() % 20));
    e.caller = PartyEntry {
        number: caller(r.next() % CALLERS),
        display_name: None,
        uri: String::new(),
    };
    e.callee = PartyEntry {
        number: callee(r.next() % CALLEES),
        display_name: None,
        uri: String::new(),
    };
    e.mos = Some(1.0 + (r.next() % 350) as f64 / 100.0);
    e.loss_pct = Some((r.next() % 1000) as f64 / 100.0);
    e
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

fn bench(store: &Store, name: &str, runs: usize, mut q: impl FnMut(usize) -> SearchQuery) {
    let mut ms = Vec::with_capacity(runs);
    let mut hits = 0usize;
    for i in 0..runs {
        let query = q(i);
        let t = Instant::now();
        let (page, _) = store.search(&query).expect("search");
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        hits += page.len();
    }
    println!(
        "{name:<44} runs {runs:>5}  p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  avg hits {:.1}",
        percentile(&mut ms, 0.5),
        percentile(&mut ms, 0.99),
        percentile(&mut ms, 1.0),
        hits as f64 / runs as f64
    );
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir()?;
    let path = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("bench.redb"));
    let fresh = !path.exists();
    let store = Store::open(&path)?;
    if fresh {
        let t = Instant::now();
        let mut r = Rng(42);
        let batch = 50_000u64;
        let mut i = 0;
        while i < n {
            let entries: Vec<RecordingEntry> =
                (i..(i + batch).min(n)).map(|k| entry(k, &mut r)).collect();
            store.insert_entries(&entries)?;
            i += batch;
            if i % 1_000_000 == 0 {
                eprintln!("  {i} recordings, {:.0} s", t.elapsed().as_secs_f64());
            }
        }
        println!(
            "generated {n} recordings in {:.1} s ({:.0}/s); db {} MiB",
            t.elapsed().as_secs_f64(),
            n as f64 / t.elapsed().as_secs_f64(),
            std::fs::metadata(&path)?.len() / (1 << 20)
        );
    } else {
        println!("reusing {}", path.display());
    }
    let mut r = Rng(7);
    let limit = 50;
    bench(&store, "exact caller number (limit 50)", 1000, |_| {
        SearchQuery {
            number: Some(caller(r.next() % CALLERS)),
            limit,
            ..Default::default()
        }
    });
    let mut r = Rng(8);
    bench(&store, "exact callee number (limit 50)", 1000, |_| {
        SearchQuery {
            number: Some(callee(r.next() % CALLEES)),
            limit,
            ..Default::default()
        }
    });
    let mut r = Rng(9);
    bench(&store, "number prefix, 10 numbers (limit 50)", 300, |_| {
        let c = caller(r.next() % CALLERS);
        SearchQuery {
            number: Some(c[..c.len() - 1].to_owned()),
            limit,
            ..Default::default()
        }
    });
    let mut r = Rng(10);
    bench(
        &store,
        "number prefix, 1000 numbers (limit 50)",
        100,
        |_| {
            let c = caller(r.next() % CALLERS);
            SearchQuery {
                number: Some(c[..c.len() - 3].to_owned()),
                limit,
                ..Default::default()
            }
        },
    );
    bench(&store, "newest page, no filter (limit 50)", 300, |_| {
        SearchQuery {
            limit,
            ..Default::default()
        }
    });
    let mut r = Rng(11);
    bench(&store, "edge + max_mos 2.0 (limit 50)", 300, |_| {
        SearchQuery {
            edge: Some(format!("edge-{:02}", r.next() % 20)),
            max_mos: Some(2.0),
            limit,
            ..Default::default()
        }
    });
    let mut r = Rng(12);
    bench(&store, "time window of 1 h (limit 50)", 300, |_| {
        let from = T0_NS + (r.next() % (SPAN_NS as u64)) as i64;
        SearchQuery {
            from_ns: Some(from),
            to_ns: Some(from + 3_600_000_000_000),
            limit,
            ..Default::default()
        }
    });
    Ok(())
}
