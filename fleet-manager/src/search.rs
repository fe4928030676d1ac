//! Recordings search: secondary indexes in the manager's redb and the query that walks them.
//!
//! Every index key is `PREFIX \0 INV_START(8, big endian) RECORDING_ID`, where `INV_START` orders
//! start times newest first, so within one prefix the keys are already in the API's sort order
//! (start time descending, then recording id ascending) and a cursor is just a position in it.
//! - `rec_idx_time`: prefix empty; value = [`Summary`] (compact binary, ~57 bytes), the fields
//!   filters look at.
//! - `rec_idx_number`: prefix = the normalized caller number and, again, the callee number.
//! - `rec_idx_edge`: prefix = edge id.   - `rec_idx_call`: prefix = SIP Call-ID.
//!
//! The query planner picks one index: Call-ID (exact), else number, else edge, else time. A
//! number prefix may name one number or thousands: the planner lists the distinct numbers under
//! it in growing rounds and, between rounds, walks the time index for as many rows as the numbers
//! listed so far would cost. A broad prefix fills its page from the time index after a few hundred
//! rows; a narrow one completes its list and walks each number, only after the rows the time walk
//! already checked (so no work is thrown away); past 2,000 numbers the time walk goes on alone.
//! The key range applies the time range and the cursor; the other filters are checked on the
//! summary, which is only read when such a filter is set (a plain number, edge or Call-ID search
//! reads the walked index alone). A request scans at most [`SCAN_BUDGET`] time index rows (the
//! number walk is bounded by its 2,000 numbers instead); when that runs out the page comes back
//! short with a cursor to continue (`scan_truncated`), so no query can take the server down.
//!
//! Numbers are normalized ([`normalize_number`]): lowercase, only `0-9 a-z * #` kept, so
//! `+49 30 123` and `4930123` are the same number.

use std::collections::BTreeSet;

use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use crate::catalog::RecordingEntry;
use crate::store::{Store, StoreError};

const IDX_TIME: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rec_idx_time");
const IDX_NUMBER: TableDefinition<&[u8], ()> = TableDefinition::new("rec_idx_number");
const IDX_EDGE: TableDefinition<&[u8], ()> = TableDefinition::new("rec_idx_edge");
const IDX_CALL: TableDefinition<&[u8], ()> = TableDefinition::new("rec_idx_call");

/// The most index rows one search request reads (about 35 ms of summary checks on the benchmark
/// machine).
pub const SCAN_BUDGET: usize = 100_000;
/// The planner's limits (see the module doc); tests run every path with small ones.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Time index rows one request reads at most ([`SCAN_BUDGET`]).
    scan_budget: usize,
    /// The first round of listing the distinct numbers under a prefix (each next round: 4 times).
    first_numbers: usize,
    /// Time index rows walked per number listed, between rounds.
    probe_rows_per_number: usize,
    /// Above this many distinct numbers the number walk is given up: the time index is walked
    /// on alone (to the scan budget).
    max_numbers: usize,
}

/// Walking one number (two seeks and its rows) costs about as much as checking 8 summaries.
const PLAN: Plan = Plan {
    scan_budget: SCAN_BUDGET,
    first_numbers: 64,
    probe_rows_per_number: 8,
    max_numbers: 2_000,
};
/// The largest page.
pub const MAX_LIMIT: usize = 1000;

fn dbr<T, E: Into<redb::Error>>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Db(e.into()))
}

/// What the filters look at, kept in the time index as a compact binary value (see
/// [`Summary::encode`]; a JSON summary cost about three times the bytes and a parse per row).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub caller: String,
    pub callee: String,
    pub edge: String,
    pub duration_ms: i64,
    pub mos: Option<f64>,
    pub loss_pct: Option<f64>,
    pub complete: bool,
}

/// The first byte of an encoded summary (the layout's version).
const SUMMARY_V1: u8 = 1;
/// Text fields are kept up to this many bytes: numbers are matched by prefixes of at most 64
/// bytes and edges compared with ids of at most 128, so a longer tail never changes a result.
const SUMMARY_TEXT_MAX: usize = 255;

impl Summary {
    pub fn of(e: &RecordingEntry) -> Self {
        Summary {
            caller: normalize_number(&e.caller.number),
            callee: normalize_number(&e.callee.number),
            edge: e.edge_id.clone(),
            duration_ms: e.duration_ms,
            mos: e.mos,
            loss_pct: e.loss_pct,
            complete: e.complete,
        }
    }

    /// `1, flags (1 complete, 2 mos, 4 loss), duration i64 LE, [mos f64 LE], [loss f64 LE],
    /// then edge, caller, callee as (len u8, bytes)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(
            2 + 8 + 16 + 3 + self.edge.len() + self.caller.len() + self.callee.len(),
        );
        let flags = u8::from(self.complete)
            | (u8::from(self.mos.is_some()) << 1)
            | (u8::from(self.loss_pct.is_some()) << 2);
        v.push(SUMMARY_V1);
        v.push(flags);
        v.extend_from_slice(&self.duration_ms.to_le_bytes());
        for x in [self.mos, self.loss_pct].into_iter().flatten() {
            v.extend_from_slice(&x.to_le_bytes());
        }
        for t in [&self.edge, &self.caller, &self.callee] {
            let b = t.as_bytes();
            let b = b.get(..SUMMARY_TEXT_MAX).unwrap_or(b);
            v.push(b.len() as u8);
            v.extend_from_slice(b);
        }
        v
    }
}

/// An encoded [`Summary`], read in place (no allocation per scanned row).
#[derive(Debug, Clone, Copy, PartialEq)]
struct SummaryView<'a> {
    caller: &'a [u8],
    callee: &'a [u8],
    edge: &'a [u8],
    duration_ms: i64,
    mos: Option<f64>,
    loss_pct: Option<f64>,
    complete: bool,
}

impl<'a> SummaryView<'a> {
    fn decode(b: &'a [u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt {
            what: "search summary",
            reason: "truncated or unknown layout".into(),
        };
        let mut r = b;
        let mut take = |n: usize| -> Result<&'a [u8], StoreError> {
            let (h, t) = r.split_at_checked(n).ok_or_else(bad)?;
            r = t;
            Ok(h)
        };
        let f64_at = |x: &[u8]| x.try_into().map(f64::from_le_bytes).map_err(|_| bad());
        let head = take(2)?;
        let (Some(&SUMMARY_V1), Some(&flags)) = (head.first(), head.get(1)) else {
            return Err(bad());
        };
        let duration_ms = take(8)?
            .try_into()
            .map(i64::from_le_bytes)
            .map_err(|_| bad())?;
        let mos = if flags & 2 != 0 {
            Some(f64_at(take(8)?)?)
        } else {
            None
        };
        let loss_pct = if flags & 4 != 0 {
            Some(f64_at(take(8)?)?)
        } else {
            None
        };
        let mut text = || -> Result<&'a [u8], StoreError> {
            let n = take(1)?.first().copied().ok_or_else(bad)?;
            take(usize::from(n))
        };
        let edge = text()?;
        let caller = text()?;
        let callee = text()?;
        Ok(SummaryView {
            caller,
            callee,
            edge,
            duration_ms,
            mos,
            loss_pct,
            complete: flags & 1 != 0,
        })
    }
}

/// A number as the index keeps it: lowercase `0-9 a-z * #` only.
pub fn normalize_number(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            let c = c.to_ascii_lowercase();
            (c.is_ascii_alphanumeric() || c == '*' || c == '#').then_some(c)
        })
        .collect()
}

/// Start times, newest first, as an ascending u64.
fn inv(start_ns: i64) -> u64 {
    !((start_ns as u64) ^ (1 << 63))
}

fn uninv(v: u64) -> i64 {
    ((!v) ^ (1 << 63)) as i64
}

/// `prefix \0 inv(start) id`. Prefixes never hold `\0` (numbers are normalized; ids checked).
pub fn key(prefix: &str, start_ns: i64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 9 + id.len());
    k.extend(prefix.bytes().filter(|b| *b != 0));
    k.push(0);
    k.extend_from_slice(&inv(start_ns).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// Splits a key into (prefix, start_ns, id).
fn split_key(k: &[u8]) -> Option<(&[u8], i64, &str)> {
    let z = k.iter().position(|b| *b == 0)?;
    let inv_bytes: [u8; 8] = k.get(z + 1..z + 9)?.try_into().ok()?;
    let id = std::str::from_utf8(k.get(z + 9..)?).ok()?;
    Some((k.get(..z)?, uninv(u64::from_be_bytes(inv_bytes)), id))
}

fn prefixes(e: &RecordingEntry) -> (Vec<String>, String, String) {
    let mut numbers = vec![normalize_number(&e.caller.number)];
    let callee = normalize_number(&e.callee.number);
    if callee != numbers[0] {
        numbers.push(callee);
    }
    numbers.retain(|n| !n.is_empty());
    (numbers, e.edge_id.clone(), e.call_id.replace('\0', ""))
}

/// Adds a recording to every index (inside the caller's write transaction).
pub fn index(tx: &WriteTransaction, e: &RecordingEntry) -> Result<(), StoreError> {
    let summary = Summary::of(e).encode();
    let (numbers, edge, call) = prefixes(e);
    let id = e.recording_id.as_str();
    dbr(dbr(tx.open_table(IDX_TIME))?
        .insert(key("", e.start_ns, id).as_slice(), summary.as_slice()))?;
    let mut t = dbr(tx.open_table(IDX_NUMBER))?;
    for n in &numbers {
        dbr(t.insert(key(n, e.start_ns, id).as_slice(), ()))?;
    }
    dbr(dbr(tx.open_table(IDX_EDGE))?.insert(key(&edge, e.start_ns, id).as_slice(), ()))?;
    if !call.is_empty() {
        dbr(dbr(tx.open_table(IDX_CALL))?.insert(key(&call, e.start_ns, id).as_slice(), ()))?;
    }
    Ok(())
}

/// Removes a recording from every index (for code that deletes catalog entries).
pub fn unindex(tx: &WriteTransaction, e: &RecordingEntry) -> Result<(), StoreError> {
    let (numbers, edge, call) = prefixes(e);
    let id = e.recording_id.as_str();
    dbr(dbr(tx.open_table(IDX_TIME))?.remove(key("", e.start_ns, id).as_slice()))?;
    let mut t = dbr(tx.open_table(IDX_NUMBER))?;
    for n in &numbers {
        dbr(t.remove(key(n, e.start_ns, id).as_slice()))?;
    }
    dbr(dbr(tx.open_table(IDX_EDGE))?.remove(key(&edge, e.start_ns, id).as_slice()))?;
    dbr(dbr(tx.open_table(IDX_CALL))?.remove(key(&call, e.start_ns, id).as_slice()))?;
    Ok(())
}

/// Creates the index tables; returns whether the time index is empty (needs a rebuild). Indexes
/// of an older layout (JSON summaries) are dropped here, so the store rebuilds them.
pub fn create_tables(tx: &WriteTransaction) -> Result<bool, StoreError> {
    let old_layout = {
        let t = dbr(tx.open_table(IDX_TIME))?;
        let first = dbr(t.first())?;
        first.is_some_and(|(_, v)| v.value().first() != Some(&SUMMARY_V1))
    };
    if old_layout {
        dbr(tx.delete_table(IDX_TIME))?;
        dbr(tx.delete_table(IDX_NUMBER))?;
        dbr(tx.delete_table(IDX_EDGE))?;
        dbr(tx.delete_table(IDX_CALL))?;
    }
    let empty = dbr(dbr(tx.open_table(IDX_TIME))?.is_empty())?;
    dbr(tx.open_table(IDX_NUMBER))?;
    dbr(tx.open_table(IDX_EDGE))?;
    dbr(tx.open_table(IDX_CALL))?;
    Ok(empty)
}

/// A position in the sort order: (start_ns, recording id). Text form `START_NS.ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub start_ns: i64,
    pub id: String,
}

impl Cursor {
    pub fn parse(s: &str) -> Option<Cursor> {
        let (a, b) = s.split_once('.')?;
        let start_ns = a.parse().ok()?;
        (!b.is_empty() && b.len() <= 128 && !b.contains('\0')).then(|| Cursor {
            start_ns,
            id: b.to_owned(),
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.start_ns, self.id)
    }
}

/// A search. Times: `from_ns <= start < to_ns`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    /// A number prefix, matched against the caller and the callee (normalized).
    pub number: Option<String>,
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
    pub edge: Option<String>,
    pub min_duration_ms: Option<i64>,
    pub max_duration_ms: Option<i64>,
    /// Recordings whose worst MOS is at most this.
    pub max_mos: Option<f64>,
    /// Recordings whose worst loss is at least this (percent).
    pub min_loss_pct: Option<f64>,
    pub complete: Option<bool>,
    pub call_id: Option<String>,
    pub limit: usize,
    pub after: Option<Cursor>,
}

impl SearchQuery {
    /// Whether a row must be checked against its summary: a filter other than the number, the
    /// time range and what the walked index itself matches (its prefix, the time in its key).
    fn needs_summary(&self, index_matches_edge: bool) -> bool {
        (self.edge.is_some() && !index_matches_edge)
            || self.min_duration_ms.is_some()
            || self.max_duration_ms.is_some()
            || self.max_mos.is_some()
            || self.min_loss_pct.is_some()
            || self.complete.is_some()
    }

    fn accepts(&self, s: &SummaryView<'_>, start_ns: i64, number: Option<&str>) -> bool {
        if let Some(n) = number.map(str::as_bytes)
            && !(s.caller.starts_with(n) || s.callee.starts_with(n))
        {
            return false;
        }
        if self.from_ns.is_some_and(|f| start_ns < f) || self.to_ns.is_some_and(|t| start_ns >= t) {
            return false;
        }
        if self.edge.as_ref().is_some_and(|e| e.as_bytes() != s.edge) {
            return false;
        }
        if self.min_duration_ms.is_some_and(|d| s.duration_ms < d)
            || self.max_duration_ms.is_some_and(|d| s.duration_ms > d)
        {
            return false;
        }
        if self.max_mos.is_some_and(|m| !s.mos.is_some_and(|v| v <= m)) {
            return false;
        }
        if self
            .min_loss_pct
            .is_some_and(|m| !s.loss_pct.is_some_and(|v| v >= m))
        {
            return false;
        }
        self.complete.is_none_or(|c| c == s.complete)
    }
}

/// One page of results (recording ids in sort order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub ids: Vec<String>,
    /// Where the next page starts; none at the end.
    pub next: Option<Cursor>,
    /// The scan budget ran out before the page was full (more may match after `next`).
    pub scan_truncated: bool,
}

/// The key range of one prefix for a query: (first key, end key exclusive).
fn bounds(prefix: &str, q: &SearchQuery) -> (Vec<u8>, Vec<u8>) {
    let mut lo = key(
        prefix,
        q.to_ns.map_or(i64::MAX, |t| t.saturating_sub(1)),
        "",
    );
    if let Some(c) = &q.after {
        let mut ck = key(prefix, c.start_ns, &c.id);
        ck.push(0); // strictly after the cursor
        if ck > lo {
            lo = ck;
        }
    }
    let hi = match q.from_ns {
        Some(f) if inv(f) < u64::MAX => key(prefix, uninv(inv(f) + 1), ""),
        _ => {
            let mut k: Vec<u8> = prefix.bytes().collect();
            k.push(1);
            k
        }
    };
    (lo, hi)
}

struct Scan {
    /// (inv start, id) of the best matches so far, at most `want`.
    found: BTreeSet<(u64, String)>,
    want: usize,
    /// Rows left to read; `None`: unbounded (the number walk, which is not in global order).
    budget: Option<usize>,
    /// The last row checked, set when the budget ran out: every row up to it was checked.
    stopped_at: Option<(i64, String)>,
    last_checked: Option<(i64, String)>,
}

impl Scan {
    /// Counts one row; false when the budget is spent (and records where).
    fn take(&mut self, start_ns: i64, id: &str) -> bool {
        if let Some(b) = self.budget.as_mut() {
            if *b == 0 {
                self.stopped_at = self.last_checked.take();
                return false;
            }
            *b -= 1;
            self.last_checked = Some((start_ns, id.to_owned()));
        }
        true
    }
}

impl Scan {
    fn full_worst(&self) -> Option<&(u64, String)> {
        if self.found.len() >= self.want {
            self.found.last()
        } else {
            None
        }
    }

    fn add(&mut self, start_ns: i64, id: &str) {
        self.found.insert((inv(start_ns), id.to_owned()));
        if self.found.len() > self.want {
            self.found.pop_last();
        }
    }
}

/// The distinct numbers under a prefix, listed in rounds (one seek each, in key order).
struct Numbers {
    prefix: Vec<u8>,
    /// Where the next distinct number's keys start or after.
    next: Vec<u8>,
    found: Vec<String>,
    complete: bool,
}

impl Numbers {
    fn new(prefix: &str) -> Self {
        Numbers {
            prefix: prefix.as_bytes().to_vec(),
            next: prefix.as_bytes().to_vec(),
            found: Vec::new(),
            complete: false,
        }
    }

    /// Lists on until more than `upto` are known; true when every number is (at most `upto`).
    fn list(
        &mut self,
        t: &redb::ReadOnlyTable<&[u8], ()>,
        upto: usize,
    ) -> Result<bool, StoreError> {
        while !self.complete && self.found.len() <= upto {
            let num = {
                let mut r = dbr(t.range(self.next.as_slice()..))?;
                match r.next() {
                    Some(row) => {
                        let (k, _) = dbr(row)?;
                        match split_key(k.value()) {
                            Some((p, _, _)) if p.starts_with(&self.prefix) => Some(p.to_vec()),
                            _ => None,
                        }
                    }
                    None => None,
                }
            };
            let Some(mut num) = num else {
                self.complete = true;
                break;
            };
            self.found.push(String::from_utf8_lossy(&num).into_owned());
            // Past every key of this number (`num \0 ...`), before any longer number.
            num.push(1);
            self.next = num;
        }
        Ok(self.complete)
    }
}

impl Store {
    /// Rebuilds the indexes from the `recordings` table (a database from before the indexes).
    pub fn rebuild_search_index(&self) -> Result<usize, StoreError> {
        let entries = self.recordings()?;
        let tx = dbr(self.db().begin_write())?;
        for e in &entries {
            index(&tx, e)?;
        }
        dbr(tx.commit())?;
        Ok(entries.len())
    }

    /// Runs a search; returns the page of ids.
    pub fn search_ids(&self, q: &SearchQuery) -> Result<Page, StoreError> {
        self.search_ids_planned(q, PLAN)
    }

    fn search_ids_planned(&self, q: &SearchQuery, plan: Plan) -> Result<Page, StoreError> {
        let plan = Plan {
            scan_budget: plan.scan_budget.max(1),
            ..plan
        };
        let tx = dbr(self.db().begin_read())?;
        let time = dbr(tx.open_table(IDX_TIME))?;
        let want = q.limit.clamp(1, MAX_LIMIT) + 1;
        let mut scan = Scan {
            found: BTreeSet::new(),
            want,
            budget: Some(plan.scan_budget),
            stopped_at: None,
            last_checked: None,
        };
        let number = q
            .number
            .as_deref()
            .map(normalize_number)
            .filter(|n| !n.is_empty());
        // Whether the row's summary passes the filters (a row without one is stale: skipped).
        let summary_accepts =
            |start_ns: i64, id: &str, number: Option<&str>| -> Result<bool, StoreError> {
                match dbr(time.get(key("", start_ns, id).as_slice()))? {
                    Some(v) => Ok(q.accepts(&SummaryView::decode(v.value())?, start_ns, number)),
                    None => Ok(false),
                }
            };
        // One exact prefix of a `()` index, within `wq`'s key range (time range and cursor); the
        // summary is only read when `check`.
        let walk_exact = |table: &redb::ReadOnlyTable<&[u8], ()>,
                          prefix: &str,
                          scan: &mut Scan,
                          wq: &SearchQuery,
                          number: Option<&str>,
                          check: bool|
         -> Result<(), StoreError> {
            let (lo, hi) = bounds(prefix, wq);
            for row in dbr(table.range(lo.as_slice()..hi.as_slice()))? {
                let (k, _) = dbr(row)?;
                let Some((_, start_ns, id)) = split_key(k.value()) else {
                    continue;
                };
                if let Some(w) = scan.full_worst()
                    && (inv(start_ns), id) >= (w.0, w.1.as_str())
                {
                    break;
                }
                if !scan.take(start_ns, id) {
                    break;
                }
                if !check || summary_accepts(start_ns, id, number)? {
                    scan.add(start_ns, id);
                }
            }
            Ok(())
        };
        // The time index within `wq`'s key range, in sort order, every summary checked; stops
        // when the page is full or when the budget runs out (`scan.stopped_at`).
        let walk_time = |scan: &mut Scan, wq: &SearchQuery| -> Result<(), StoreError> {
            let (lo, hi) = bounds("", wq);
            for row in dbr(time.range(lo.as_slice()..hi.as_slice()))? {
                let (k, v) = dbr(row)?;
                let Some((_, start_ns, id)) = split_key(k.value()) else {
                    continue;
                };
                if scan.found.len() >= want {
                    break;
                }
                if !scan.take(start_ns, id) {
                    break;
                }
                if q.accepts(
                    &SummaryView::decode(v.value())?,
                    start_ns,
                    number.as_deref(),
                ) {
                    scan.add(start_ns, id);
                }
            }
            Ok(())
        };
        if let Some(call) = &q.call_id {
            let t = dbr(tx.open_table(IDX_CALL))?;
            let check = number.is_some() || q.needs_summary(false);
            walk_exact(&t, call, &mut scan, q, number.as_deref(), check)?;
        } else if let Some(n) = &number {
            // Two plans race, neither losing its work: the distinct numbers under the prefix are
            // listed in growing rounds, and between rounds the time index is walked for as many
            // rows as the numbers listed so far would cost. A broad prefix (many numbers, many
            // matches) fills its page from the time index early; once the list is complete, the
            // number walk covers only what lies after the rows the time walk checked.
            let t = dbr(tx.open_table(IDX_NUMBER))?;
            let check = q.needs_summary(false);
            let mut numbers = Numbers::new(n);
            // The query after the last row the time walk checked (none: nothing checked yet).
            let mut rest: Option<SearchQuery> = None;
            let mut probed = 0usize;
            let mut round = plan.first_numbers.max(1);
            loop {
                if numbers.list(&t, round)? {
                    let wq = rest.as_ref().unwrap_or(q);
                    scan.budget = None;
                    for num in &numbers.found {
                        walk_exact(&t, num, &mut scan, wq, None, check)?;
                    }
                    break;
                }
                let wq = rest.as_ref().unwrap_or(q);
                let left = plan.scan_budget.saturating_sub(probed);
                let rows = round.saturating_mul(plan.probe_rows_per_number).max(1);
                if round >= plan.max_numbers || left <= rows {
                    // Too many numbers: the time walk goes on alone, to the end of the budget.
                    scan.budget = Some(left);
                    walk_time(&mut scan, wq)?;
                    break;
                }
                scan.budget = Some(rows);
                walk_time(&mut scan, wq)?;
                probed += rows;
                let Some((start_ns, id)) = scan.stopped_at.take() else {
                    break; // the page is full or the time range ends: exact
                };
                scan.last_checked = Some((start_ns, id.clone()));
                rest = Some(SearchQuery {
                    after: Some(Cursor { start_ns, id }),
                    ..q.clone()
                });
                round = round.saturating_mul(4).min(plan.max_numbers);
            }
        } else if let Some(edge) = &q.edge {
            let t = dbr(tx.open_table(IDX_EDGE))?;
            walk_exact(&t, edge, &mut scan, q, None, q.needs_summary(true))?;
        } else {
            walk_time(&mut scan, q)?;
        }
        let limit = want - 1;
        let mut ids: Vec<(i64, String)> = scan
            .found
            .into_iter()
            .map(|(i, id)| (uninv(i), id))
            .collect();
        let mut page = Page::default();
        if let Some((start_ns, id)) = scan.stopped_at {
            // Every row up to the stop point was checked and the page is not full: go on from it.
            page.next = Some(Cursor { start_ns, id });
            page.scan_truncated = true;
        } else if ids.len() > limit {
            ids.truncate(limit);
            page.next = ids.last().map(|(s, i)| Cursor {
                start_ns: *s,
                id: i.clone(),
            });
        }
        page.ids = ids.into_iter().map(|(_, i)| i).collect();
        Ok(page)
    }

    /// Runs a search and loads the entries of the page.
    pub fn search(&self, q: &SearchQuery) -> Result<(Vec<RecordingEntry>, Page), StoreError> {
        let page = self.search_ids(q)?;
        let mut out = Vec::with_capacity(page.ids.len());
        for id in &page.ids {
            if let Some(e) = self.recording(id)? {
                out.push(e);
            }
        }
        Ok((out, page))
    }
}

/// Parses `YYYY-MM-DDTHH:MM[:SS[.fff]]Z` (or `+00:00`) or Unix milliseconds into Unix ns.
pub fn parse_time(s: &str) -> Option<i64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok()?.checked_mul(1_000_000);
    }
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let mo: i64 = d.next()?.parse().ok()?;
    let da: i64 = d.next()?.parse().ok()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let se: i64 = t.next().map_or(Some(0), |x| x.parse().ok())?;
    if d.next().is_some()
        || t.next().is_some()
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
        || h > 23
        || mi > 59
        || se > 60
        || frac.len() > 9
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut ns_frac: i64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        ns_frac += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    let secs = civil_secs(y, mo, da) + h * 3600 + mi * 60 + se;
    secs.checked_mul(1_000_000_000)?.checked_add(ns_frac)
}

/// Unix seconds at midnight (UTC) of a proleptic Gregorian date (Howard Hinnant's
/// days_from_civil); `mo` in 1..=12.
pub(crate) fn civil_secs(y: i64, mo: i64, d: i64) -> i64 {
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PartyEntry;
    use tapfleet_schemas::{Manifest, RecordingKind};

    fn entry(i: u32, caller: &str, callee: &str, edge: &str, start_s: i64) -> RecordingEntry {
        let mut m = Manifest::new(format!("20240101T000000Z-{i:016x}"), RecordingKind::Call);
        m.start_ns = start_s * 1_000_000_000;
        m.end_ns = m.start_ns + i64::from(i % 7) * 10_000_000_000;
        m.call_id = format!("call-{i}");
        let mut e = RecordingEntry::from_manifest(&m, "t", edge);
        e.caller = PartyEntry {
            number: caller.into(),
            display_name: None,
            uri: String::new(),
        };
        e.callee = PartyEntry {
            number: callee.into(),
            display_name: None,
            uri: String::new(),
        };
        e.complete = !i.is_multiple_of(5);
        e.mos = Some(1.0 + f64::from(i % 4));
        e
    }

    fn store(n: u32) -> (tempfile::TempDir, Store, Vec<RecordingEntry>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("m.redb")).expect("open");
        let all: Vec<RecordingEntry> = (0..n)
            .map(|i| {
                entry(
                    i,
                    &format!("+49 30 {:04}", i % 13),
                    &format!("0800{}", i % 3),
                    if i % 2 == 0 { "e1" } else { "e2" },
                    1_700_000_000 + i64::from(i / 3), // ties of three on start time
                )
            })
            .collect();
        s.insert_entries(&all).expect("insert");
        (dir, s, all)
    }

    /// The reference: filter everything, sort by (start desc, id asc).
    fn brute(all: &[RecordingEntry], q: &SearchQuery) -> Vec<String> {
        let n = q.number.as_deref().map(normalize_number);
        let mut v: Vec<&RecordingEntry> = all
            .iter()
            .filter(|e| {
                let b = Summary::of(e).encode();
                let v = SummaryView::decode(&b).expect("own encoding");
                q.accepts(&v, e.start_ns, n.as_deref())
            })
            .filter(|e| q.call_id.as_ref().is_none_or(|c| *c == e.call_id))
            .collect();
        v.sort_by(|a, b| {
            b.start_ns
                .cmp(&a.start_ns)
                .then(a.recording_id.cmp(&b.recording_id))
        });
        v.into_iter().map(|e| e.recording_id.clone()).collect()
    }

    fn all_pages(s: &Store, q: SearchQuery) -> Vec<String> {
        all_pages_planned(s, q, PLAN)
    }

    fn all_pages_planned(s: &Store, mut q: SearchQuery, plan: Plan) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let p = s.search_ids_planned(&q, plan).expect("search");
            out.extend(p.ids);
            match p.next {
                Some(c) => q.after = Some(c),
                None => return out,
            }
        }
    }

    #[test]
    fn every_planner_path_pages_like_a_full_scan() {
        let (_d, s, all) = store(500);
        let queries = [
            SearchQuery::default(),
            SearchQuery {
                number: Some("+4930 0001".into()),
                ..Default::default()
            },
            SearchQuery {
                number: Some("49".into()),
                min_duration_ms: Some(20_000),
                ..Default::default()
            },
            SearchQuery {
                number: Some("08002".into()),
                complete: Some(false),
                ..Default::default()
            },
            SearchQuery {
                edge: Some("e2".into()),
                max_mos: Some(2.0),
                from_ns: Some(1_700_000_050 * 1_000_000_000),
                to_ns: Some(1_700_000_100 * 1_000_000_000),
                ..Default::default()
            },
            SearchQuery {
                call_id: Some("call-77".into()),
                ..Default::default()
            },
            SearchQuery {
                number: Some("999".into()),
                ..Default::default()
            },
            SearchQuery {
                edge: Some("e1".into()),
                from_ns: Some(1_700_000_020 * 1_000_000_000),
                to_ns: Some(1_700_000_140 * 1_000_000_000),
                ..Default::default()
            },
            SearchQuery {
                number: Some("0800".into()),
                edge: Some("e2".into()),
                ..Default::default()
            },
            SearchQuery {
                call_id: Some("call-78".into()),
                number: Some("0800".into()),
                ..Default::default()
            },
            SearchQuery {
                call_id: Some("call-79".into()),
                number: Some("0800".into()),
                ..Default::default()
            },
        ];
        let small = Plan {
            scan_budget: 20,
            first_numbers: 2,
            probe_rows_per_number: 2,
            max_numbers: 6,
        };
        for q in queries {
            let expected = brute(&all, &q);
            for limit in [1, 7, 50, 1000] {
                let got = all_pages(&s, SearchQuery { limit, ..q.clone() });
                assert_eq!(got, expected, "{q:?} limit {limit}");
                let got = all_pages_planned(&s, SearchQuery { limit, ..q.clone() }, small);
                assert_eq!(got, expected, "{q:?} limit {limit} {small:?}");
            }
        }
    }

    /// Number prefixes naming many numbers, through every step of the number plan: the time
    /// probe filling the page, the number walk after the probed rows, the time walk past the
    /// largest list; with the real plan and with small ones that take each step on little data.
    #[test]
    fn number_prefix_plans_page_like_a_full_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("m.redb")).expect("open");
        // 600 distinct callers scattered over 5550000-5559999, so a prefix's rows are spread in time.
        let all: Vec<RecordingEntry> = (0..600u32)
            .map(|i| {
                entry(
                    i,
                    &format!("+555 {:04}", (i * 7919) % 10_000),
                    &format!("0800{}", i % 3),
                    if i % 2 == 0 { "e1" } else { "e2" },
                    1_700_000_000 + i64::from(i / 3),
                )
            })
            .collect();
        s.insert_entries(&all).expect("insert");
        let plans = [
            PLAN,
            Plan {
                scan_budget: 1000,
                first_numbers: 1,
                probe_rows_per_number: 1,
                max_numbers: 8,
            },
            Plan {
                scan_budget: 1000,
                first_numbers: 2,
                probe_rows_per_number: 3,
                max_numbers: 100,
            },
            Plan {
                scan_budget: 1000,
                first_numbers: 4,
                probe_rows_per_number: 2,
                max_numbers: 1000,
            },
            // The budget runs out in the probes and in the time walk after them.
            Plan {
                scan_budget: 25,
                first_numbers: 2,
                probe_rows_per_number: 4,
                max_numbers: 30,
            },
        ];
        let queries = [
            SearchQuery {
                number: Some("555".into()),
                ..Default::default()
            },
            SearchQuery {
                number: Some("5551".into()),
                ..Default::default()
            },
            SearchQuery {
                number: Some("5552".into()),
                complete: Some(false),
                ..Default::default()
            },
            SearchQuery {
                number: Some("555".into()),
                max_mos: Some(1.0),
                from_ns: Some(1_700_000_030 * 1_000_000_000),
                to_ns: Some(1_700_000_170 * 1_000_000_000),
                ..Default::default()
            },
            SearchQuery {
                number: Some("55".into()),
                edge: Some("e2".into()),
                ..Default::default()
            },
        ];
        for q in queries {
            let expected = brute(&all, &q);
            assert!(expected.len() > 10, "{q:?} matches {}", expected.len());
            for plan in plans {
                for limit in [3, 50, 1000] {
                    let got = all_pages_planned(&s, SearchQuery { limit, ..q.clone() }, plan);
                    assert_eq!(got, expected, "{q:?} limit {limit} {plan:?}");
                }
            }
        }
        let rare = SearchQuery {
            number: Some("555".into()),
            max_mos: Some(1.0),
            complete: Some(false),
            limit: 50,
            ..Default::default()
        };
        let first = s.search_ids_planned(&rare, plans[4]).expect("search");
        assert!(first.scan_truncated && first.next.is_some(), "{first:?}");
    }

    #[test]
    fn rebuild_matches_insert() {
        let (_d, s, all) = store(50);
        assert_eq!(s.rebuild_search_index().expect("rebuild"), 50);
        let q = SearchQuery {
            number: Some("0800".into()),
            limit: 1000,
            ..Default::default()
        };
        assert_eq!(all_pages(&s, q.clone()), brute(&all, &q));
    }

    #[test]
    fn an_index_of_the_json_layout_is_rebuilt_at_open() {
        let (dir, s, all) = store(60);
        {
            // What a database from before the binary summaries holds.
            let tx = s.db().begin_write().expect("tx");
            tx.delete_table(IDX_TIME).expect("drop");
            {
                let mut t = tx.open_table(IDX_TIME).expect("time");
                let e = &all[0];
                let json = br#"{"caller":"x","callee":"y","edge":"e1","duration_ms":0,"mos":null,"loss_pct":null,"complete":true}"#;
                t.insert(
                    key("", e.start_ns, &e.recording_id).as_slice(),
                    json.as_slice(),
                )
                .expect("insert");
            }
            tx.commit().expect("commit");
        }
        drop(s);
        let s = Store::open(&dir.path().join("m.redb")).expect("reopen");
        let q = SearchQuery {
            max_mos: Some(2.0),
            limit: 7,
            ..Default::default()
        };
        assert_eq!(all_pages(&s, q.clone()), brute(&all, &q));
    }

    #[test]
    fn summaries_round_trip_and_refuse_garbage() {
        let mut sum = Summary {
            caller: "4930123".into(),
            callee: "9".repeat(300),
            edge: "edge-1".into(),
            duration_ms: -5,
            mos: None,
            loss_pct: Some(0.25),
            complete: false,
        };
        let b = sum.encode();
        let v = SummaryView::decode(&b).expect("decode");
        assert_eq!(v.caller, b"4930123");
        assert_eq!(v.callee.len(), SUMMARY_TEXT_MAX);
        assert_eq!(v.edge, b"edge-1");
        assert_eq!(
            (v.duration_ms, v.mos, v.loss_pct, v.complete),
            (-5, None, Some(0.25), false)
        );
        sum.mos = Some(3.5);
        sum.complete = true;
        let b = sum.encode();
        assert_eq!(SummaryView::decode(&b).expect("decode").mos, Some(3.5));
        for n in 0..b.len() {
            assert!(SummaryView::decode(&b[..n]).is_err(), "truncated at {n}");
        }
        assert!(SummaryView::decode(b"{\"caller\":\"1\"}").is_err());
    }

    #[test]
    fn cursors_and_times_parse() {
        let c = Cursor::parse("-5.20240101T000000Z-00").expect("cursor");
        assert_eq!(c.start_ns, -5);
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        assert!(Cursor::parse("x.y").is_none() && Cursor::parse("5.").is_none());
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(
            parse_time("2024-02-29T12:34:56.5Z"),
            Some(1_709_210_096_500_000_000)
        );
        assert_eq!(parse_time("1709210096000"), Some(1_709_210_096_000_000_000));
        for bad in [
            "",
            "2024-13-01T00:00:00Z",
            "2024-02-29 12:00:00",
            "yesterday",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert!(inv(5) < inv(4) && inv(-1) > inv(0));
        assert_eq!(uninv(inv(-77)), -77);
    }
}
