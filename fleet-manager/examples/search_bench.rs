//! Recordings search benchmark: fills a catalog (redb, the real `Store::insert_entries` path with
//! its search indexes) with N generated recordings, then times searches through `Store::search`
//! plus the JSON body, exactly what `GET /api/v1/recordings` runs (first page of 50, stable sort,
//! cursor), and prints p50/p95/max per query type, the bytes each table keeps per recording, the
//! build time and the DB size.
//!
//! ```text
//! cargo run --release -p tapfleet-fleet-manager --example search_bench -- [N] [DB_PATH]
//! ```
//! N defaults to 1,000,000; DB_PATH to a temporary file (an existing DB is reused as is, so a
//! 10 M catalog is generated once). Recordings arrive in start-time order (as edges send them),
//! 500,000 distinct callers, 100,000 callees, 20 edges, starts spread over 90 days; loaded in
//! batches of 100,000 per write transaction.

use std::time::Instant;

use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
use tapfleet_fleet_manager::catalog::{PartyEntry, RecordingEntry};
use tapfleet_fleet_manager::search::SearchQuery;
use tapfleet_fleet_manager::store::Store;
use tapfleet_schemas::{Manifest, RecordingKind, recording_id};

const CALLERS: u64 = 500_000;
const CALLEES: u64 = 100_000;
const EDGES: u64 = 20;
const T0_NS: i64 = 1_700_000_000_000_000_000;
const SPAN_NS: i64 = 90 * 86_400 * 1_000_000_000;
const BATCH: u64 = 100_000;

/// splitmix64: a deterministic generator, and a hash of `i` (`mix(i)`).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        mix(self.0)
    }
}

fn caller(n: u64) -> String {
    format!("+4930{:07}", n)
}

fn callee(n: u64) -> String {
    format!("0800{:06}", n)
}

fn edge(n: u64) -> String {
    format!("edge-{:02}", n % EDGES)
}

/// Recording `i` of `n`: start time rises with `i` (jitter of a second).
fn start_of(i: u64, n: u64) -> i64 {
    T0_NS
        + (i128::from(i) * i128::from(SPAN_NS) / i128::from(n.max(1))) as i64
        + (mix(i ^ 0x5555) % 1_000_000_000) as i64
}

fn call_id(i: u64) -> String {
    format!("{:016x}@bench", mix(i ^ 0xca11))
}

fn entry(i: u64, n: u64) -> RecordingEntry {
    let mut r = Rng(i.wrapping_mul(16));
    let start = start_of(i, n);
    let mut m = Manifest::new(recording_id(start, i.to_be_bytes()), RecordingKind::Call);
    m.start_ns = start;
    m.end_ns = start + (r.next() % 600_000_000_000) as i64;
    m.call_id = call_id(i);
    m.complete = !r.next().is_multiple_of(50);
    let mut e = RecordingEntry::from_manifest(&m, "default", &edge(r.next()));
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
        // What the handler does: search, then the JSON body.
        let (page, p) = store.search(&query).expect("search");
        let body = serde_json::to_vec(&serde_json::json!({
            "recordings": page,
            "next_cursor": p.next.map(|c| c.to_string()),
            "scan_truncated": p.scan_truncated,
        }))
        .expect("json");
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(body);
        hits += page.len();
    }
    println!(
        "{name:<44} runs {runs:>5}  p50 {:>7.3} ms  p95 {:>7.3} ms  max {:>7.3} ms  avg hits {:.1}",
        percentile(&mut ms, 0.5),
        percentile(&mut ms, 0.95),
        percentile(&mut ms, 1.0),
        hits as f64 / runs as f64
    );
}

/// Bytes each table keeps per recording (stored = keys + values; + B-tree metadata, + free
/// space inside its pages).
fn table_bytes(store: &Store, n: u64) -> anyhow::Result<()> {
    let tx = store.db().begin_read()?;
    let per = |x: u64| x as f64 / n.max(1) as f64;
    let mut total = (0, 0, 0);
    let mut row = |name: &str, s: redb::TableStats| {
        println!(
            "  {name:<16} stored {:>6.1} B/rec  metadata {:>5.1}  fragmented {:>6.1}  leaf pages {}",
            per(s.stored_bytes()),
            per(s.metadata_bytes()),
            per(s.fragmented_bytes()),
            s.leaf_pages()
        );
        total.0 += s.stored_bytes();
        total.1 += s.metadata_bytes();
        total.2 += s.fragmented_bytes();
    };
    let recs: TableDefinition<&str, &[u8]> = TableDefinition::new("recordings");
    row("recordings", tx.open_table(recs)?.stats()?);
    let time: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rec_idx_time");
    row("rec_idx_time", tx.open_table(time)?.stats()?);
    for name in ["rec_idx_number", "rec_idx_edge", "rec_idx_call"] {
        let d: TableDefinition<&[u8], ()> = TableDefinition::new(name);
        row(name, tx.open_table(d)?.stats()?);
    }
    println!(
        "  all search tables: stored {:.1} + metadata {:.1} + fragmented {:.1} = {:.1} B/rec",
        per(total.0),
        per(total.1),
        per(total.2),
        per(total.0 + total.1 + total.2)
    );
    Ok(())
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
        let mut i = 0;
        while i < n {
            let entries: Vec<RecordingEntry> =
                (i..(i + BATCH).min(n)).map(|k| entry(k, n)).collect();
            store.insert_entries(&entries)?;
            i += BATCH;
            if i.is_multiple_of(1_000_000) {
                eprintln!(
                    "  {i} recordings, {:.0} s, db {} MiB",
                    t.elapsed().as_secs_f64(),
                    std::fs::metadata(&path)?.len() >> 20
                );
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let size = std::fs::metadata(&path)?.len();
        println!(
            "generated {n} recordings in {secs:.1} s ({:.0}/s); db file {} MiB = {:.0} B/recording",
            n as f64 / secs,
            size >> 20,
            size as f64 / n as f64
        );
    } else {
        println!("reusing {}", path.display());
    }
    table_bytes(&store, n)?;
    let limit = 50;
    let hour = 3_600_000_000_000;
    let mut r = Rng(7);
    bench(&store, "exact caller number", 2000, |_| SearchQuery {
        number: Some(caller(r.next() % CALLERS)),
        limit,
        ..Default::default()
    });
    bench(&store, "exact callee number", 2000, |_| SearchQuery {
        number: Some(callee(r.next() % CALLEES)),
        limit,
        ..Default::default()
    });
    bench(&store, "number prefix, 10 numbers", 500, |_| {
        let c = caller(r.next() % CALLERS);
        SearchQuery {
            number: c.get(..c.len() - 1).map(str::to_owned),
            limit,
            ..Default::default()
        }
    });
    bench(&store, "number prefix, 100 numbers", 300, |_| {
        let c = caller(r.next() % CALLERS);
        SearchQuery {
            number: c.get(..c.len() - 2).map(str::to_owned),
            limit,
            ..Default::default()
        }
    });
    bench(&store, "number prefix, 1000 numbers", 300, |_| {
        let c = caller(r.next() % CALLERS);
        SearchQuery {
            number: c.get(..c.len() - 3).map(str::to_owned),
            limit,
            ..Default::default()
        }
    });
    bench(
        &store,
        "number prefix, 10000 numbers (time probe)",
        300,
        |_| {
            let c = callee(r.next() % CALLEES);
            SearchQuery {
                number: c.get(..c.len() - 4).map(str::to_owned),
                limit,
                ..Default::default()
            }
        },
    );
    bench(
        &store,
        "prefix 10000 numbers + max_mos 1.0 (budget)",
        30,
        |_| {
            let c = callee(r.next() % CALLEES);
            SearchQuery {
                number: c.get(..c.len() - 4).map(str::to_owned),
                max_mos: Some(1.0),
                limit,
                ..Default::default()
            }
        },
    );
    bench(
        &store,
        "exact caller + max_mos 3.0 + min_loss 2",
        1000,
        |_| SearchQuery {
            number: Some(caller(r.next() % CALLERS)),
            max_mos: Some(3.0),
            min_loss_pct: Some(2.0),
            limit,
            ..Default::default()
        },
    );
    bench(&store, "exact callee + max_mos 2.0", 1000, |_| {
        SearchQuery {
            number: Some(callee(r.next() % CALLEES)),
            max_mos: Some(2.0),
            limit,
            ..Default::default()
        }
    });
    bench(&store, "call-id", 2000, |_| SearchQuery {
        call_id: Some(call_id(r.next() % n)),
        limit,
        ..Default::default()
    });
    bench(&store, "newest page, no filter", 300, |_| SearchQuery {
        limit,
        ..Default::default()
    });
    bench(&store, "time range of 1 h", 1000, |_| {
        let from = T0_NS + (r.next() % (SPAN_NS as u64)) as i64;
        SearchQuery {
            from_ns: Some(from),
            to_ns: Some(from + hour),
            limit,
            ..Default::default()
        }
    });
    bench(&store, "time range 1 h, second page (cursor)", 300, |_| {
        let from = T0_NS + (r.next() % (SPAN_NS as u64)) as i64;
        let q = SearchQuery {
            from_ns: Some(from),
            to_ns: Some(from + hour),
            limit,
            ..Default::default()
        };
        let after = store.search_ids(&q).expect("search").next;
        SearchQuery { after, ..q }
    });
    bench(&store, "edge + time range of 1 day", 1000, |_| {
        let from = T0_NS + (r.next() % (SPAN_NS as u64)) as i64;
        SearchQuery {
            edge: Some(edge(r.next())),
            from_ns: Some(from),
            to_ns: Some(from + 24 * hour),
            limit,
            ..Default::default()
        }
    });
    bench(&store, "edge + max_mos 2.0", 300, |_| SearchQuery {
        edge: Some(edge(r.next())),
        max_mos: Some(2.0),
        limit,
        ..Default::default()
    });
    bench(
        &store,
        "rare: max_mos 1.0 + incomplete (budget)",
        30,
        |_| SearchQuery {
            max_mos: Some(1.0),
            complete: Some(false),
            limit,
            ..Default::default()
        },
    );
    Ok(())
}
