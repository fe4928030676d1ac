//! The edges' recent telemetry: the latest sample of each edge (the dashboard's live counters)
//! and a 24-hour history with one sample per minute (its charts), served from memory and kept in
//! the manager's redb (`telemetry` table: (edge id, minute start in Unix ms) -> [`Sample`] JSON),
//! so a restart keeps the charts.
//!
//! [`TelemetryLog`] is the pure part (samples and `now` in; it remembers which minutes changed).
//! [`load`] fills it from the table at start; [`persist`] writes the changed minutes in one
//! transaction and prunes what is older than [`HISTORY_MS`]; `serve` runs it every
//! [`PERSIST_INTERVAL`] and once at shutdown, so a crash loses at most that much history (one
//! commit a minute, whatever the number of edges). Bounds: at most one row per edge and minute
//! of the last 24 h (1440 per edge, ~0.5 KiB each).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tapfleet_schemas::Telemetry;

use crate::store::{Store, StoreError};

/// How far back the history goes.
pub const HISTORY_MS: i64 = 24 * 3600 * 1000;
/// One history sample per this many milliseconds (the newest is replaced within a bucket).
pub const BUCKET_MS: i64 = 60_000;
/// How often `serve` writes the changed minutes to the store.
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(60);

/// (edge id, start of the minute in Unix ms) -> [`Sample`] JSON.
const TELEMETRY: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("telemetry");

/// One telemetry sample as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When the manager received it (Unix ms).
    pub at_ms: i64,
    pub active_calls: u64,
    /// Kernel + interface drops since the edge started.
    pub drops: u64,
    pub cache_used_bytes: u64,
    pub cache_capacity_bytes: u64,
    pub backlog_bytes: u64,
    pub backlog_oldest_secs: u64,
    pub upload_bytes_per_sec: u64,
    pub packets: u64,
    pub errors: u64,
    pub bytes: u64,
    pub kernel_drops: u64,
    pub interface_drops: u64,
    pub recordings: tapfleet_schemas::RecordingCounts,
    pub transfer_failures: u64,
    /// The edge's clock minus the manager's (its own measure, else its sample time against the
    /// receive time, which includes the transit delay).
    pub clock_offset_ms: Option<i64>,
}

impl Sample {
    pub fn of(t: &Telemetry, at_ms: i64) -> Self {
        Sample {
            at_ms,
            active_calls: t.active_calls,
            drops: t.kernel_drops.saturating_add(t.interface_drops),
            cache_used_bytes: t.cache_used_bytes,
            cache_capacity_bytes: t.cache_capacity_bytes,
            backlog_bytes: t.backlog_bytes,
            backlog_oldest_secs: t.backlog_oldest_secs,
            upload_bytes_per_sec: t.upload_bytes_per_sec,
            packets: t.packets,
            errors: t.errors,
            bytes: t.bytes,
            kernel_drops: t.kernel_drops,
            interface_drops: t.interface_drops,
            recordings: t.recordings.clone(),
            transfer_failures: t.transfer_failures,
            clock_offset_ms: t
                .clock_offset_ms
                .or((t.at_ms != 0).then(|| t.at_ms.saturating_sub(at_ms))),
        }
    }
}

fn bucket(at_ms: i64) -> i64 {
    at_ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

#[derive(Debug, Default)]
struct Inner {
    history: HashMap<String, VecDeque<Sample>>,
    /// (edge, minute) whose sample changed since the last [`TelemetryLog::take_dirty`].
    dirty: HashSet<(String, i64)>,
}

/// Latest sample and history per edge.
#[derive(Debug, Default)]
pub struct TelemetryLog {
    inner: Mutex<Inner>,
}

impl TelemetryLog {
    /// Records a sample received at `now_ms`.
    pub fn record(&self, edge: &str, t: &Telemetry, now_ms: i64) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        let Inner { history, dirty } = &mut *m;
        let q = history.entry(edge.to_owned()).or_default();
        let s = Sample::of(t, now_ms);
        match q.back_mut() {
            Some(last) if bucket(last.at_ms) == bucket(now_ms) => *last = s,
            _ => q.push_back(s),
        }
        dirty.insert((edge.to_owned(), bucket(now_ms)));
        while q
            .front()
            .is_some_and(|f| f.at_ms < now_ms.saturating_sub(HISTORY_MS))
        {
            q.pop_front();
        }
    }

    /// Puts back samples read from the store (oldest first per edge); samples already in memory
    /// for the same minute win. Not marked changed.
    pub fn restore(&self, edge: &str, samples: impl IntoIterator<Item = Sample>) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        let q = m.history.entry(edge.to_owned()).or_default();
        let mut merged: Vec<Sample> = samples.into_iter().collect();
        merged.retain(|s| !q.iter().any(|x| bucket(x.at_ms) == bucket(s.at_ms)));
        merged.extend(q.drain(..));
        merged.sort_by_key(|s| s.at_ms);
        q.extend(merged);
    }

    /// The samples of the minutes that changed since the last call, with their edge and minute.
    pub fn take_dirty(&self) -> Vec<(String, i64, Sample)> {
        let Ok(mut m) = self.inner.lock() else {
            return Vec::new();
        };
        let dirty = std::mem::take(&mut m.dirty);
        dirty
            .into_iter()
            .filter_map(|(edge, minute)| {
                let s = m
                    .history
                    .get(&edge)?
                    .iter()
                    .rev()
                    .find(|s| bucket(s.at_ms) == minute)?
                    .clone();
                Some((edge, minute, s))
            })
            .collect()
    }

    /// Marks minutes changed again (their write failed).
    fn mark_dirty(&self, keys: impl IntoIterator<Item = (String, i64)>) {
        if let Ok(mut m) = self.inner.lock() {
            m.dirty.extend(keys);
        }
    }

    /// Drops samples older than [`HISTORY_MS`] before `now_ms`, and edges left with none.
    pub fn prune(&self, now_ms: i64) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        let cutoff = now_ms.saturating_sub(HISTORY_MS);
        m.history.retain(|_, q| {
            while q.front().is_some_and(|f| f.at_ms < cutoff) {
                q.pop_front();
            }
            !q.is_empty()
        });
    }

    /// The edges with a history.
    pub fn edges(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|m| m.history.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The newest sample of an edge.
    pub fn latest(&self, edge: &str) -> Option<Sample> {
        self.inner.lock().ok()?.history.get(edge)?.back().cloned()
    }

    /// The samples of an edge since `since_ms`, oldest first.
    pub fn history(&self, edge: &str, since_ms: i64) -> Vec<Sample> {
        self.inner
            .lock()
            .ok()
            .and_then(|m| {
                m.history
                    .get(edge)
                    .map(|q| q.iter().filter(|s| s.at_ms >= since_ms).cloned().collect())
            })
            .unwrap_or_default()
    }
}

// ---- persistence

fn dbr<T, E: Into<redb::Error>>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Db(e.into()))
}

/// Creates the table if needed and loads the last [`HISTORY_MS`] before `now_ms` into the
/// store's log. A row that does not decode is skipped (logged), not fatal.
pub fn load(store: &Store, now_ms: i64) -> Result<usize, StoreError> {
    {
        let tx = dbr(store.db().begin_write())?;
        dbr(tx.open_table(TELEMETRY))?;
        dbr(tx.commit())?;
    }
    let cutoff = now_ms.saturating_sub(HISTORY_MS);
    let tx = dbr(store.db().begin_read())?;
    let t = dbr(tx.open_table(TELEMETRY))?;
    let mut by_edge: HashMap<String, Vec<Sample>> = HashMap::new();
    let mut bad = 0u64;
    for row in dbr(t.iter())? {
        let (k, v) = dbr(row)?;
        let (edge, minute) = k.value();
        // Every edge of the table gets an entry, so `persist` prunes its old rows.
        let samples = by_edge.entry(edge.to_owned()).or_default();
        if minute < bucket(cutoff) {
            continue;
        }
        match serde_json::from_slice::<Sample>(v.value()) {
            Ok(s) if s.at_ms >= cutoff => samples.push(s),
            Ok(_) => {}
            Err(_) => bad += 1,
        }
    }
    if bad > 0 {
        tracing::warn!(rows = bad, "telemetry rows that do not decode skipped");
    }
    let n = by_edge.values().map(Vec::len).sum();
    for (edge, samples) in by_edge {
        store.telemetry.restore(&edge, samples);
    }
    Ok(n)
}

/// Writes the minutes changed since the last call and deletes rows older than [`HISTORY_MS`]
/// before `now_ms`, in one transaction; returns the rows written. On failure the minutes stay
/// marked for the next call.
pub fn persist(store: &Store, now_ms: i64) -> Result<usize, StoreError> {
    let dirty = store.telemetry.take_dirty();
    let keys: Vec<(String, i64)> = dirty.iter().map(|(e, m, _)| (e.clone(), *m)).collect();
    let r = write(store, &dirty, now_ms);
    if r.is_err() {
        store.telemetry.mark_dirty(keys);
    }
    r
}

fn write(store: &Store, dirty: &[(String, i64, Sample)], now_ms: i64) -> Result<usize, StoreError> {
    // Rows of the minute the cutoff falls in go too, so every row left has its sample in
    // memory (and its edge is pruned here until it has none).
    let cutoff = bucket(now_ms.saturating_sub(HISTORY_MS)) + BUCKET_MS;
    let tx = dbr(store.db().begin_write())?;
    {
        let mut t = dbr(tx.open_table(TELEMETRY))?;
        for (edge, minute, s) in dirty {
            let json = serde_json::to_vec(s).map_err(|e| StoreError::Encode(e.to_string()))?;
            dbr(t.insert((edge.as_str(), *minute), json.as_slice()))?;
        }
        // Every edge of the table is in memory (`load` registers them all); an edge whose
        // history is empty is forgotten only after its rows are gone.
        for edge in store.telemetry.edges() {
            let e = edge.as_str();
            dbr(t.retain_in((e, i64::MIN)..(e, cutoff), |_, _| false))?;
        }
    }
    dbr(tx.commit())?;
    store.telemetry.prune(now_ms);
    Ok(dirty.len())
}

/// Runs [`persist`] every [`PERSIST_INTERVAL`] until `stop` turns true (`serve` persists once
/// more after the dispatcher stopped).
pub fn spawn_persist(
    store: std::sync::Arc<Store>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PERSIST_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let s = store.clone();
            match tokio::task::spawn_blocking(move || persist(&s, crate::fleet::now_ms())).await {
                Ok(Ok(n)) => tracing::debug!(rows = n, "telemetry history persisted"),
                Ok(Err(e)) => tracing::warn!(error = %e, "telemetry history not persisted"),
                Err(e) => tracing::warn!(error = %e, "telemetry persist task failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_per_minute_for_a_day() {
        let log = TelemetryLog::default();
        let mut t = Telemetry::new(0);
        for i in 0..(26 * 60 * 6) {
            t.active_calls = i;
            log.record("e1", &t, i as i64 * 10_000);
        }
        let now = (26 * 60 * 6 - 1) as i64 * 10_000;
        assert_eq!(
            log.latest("e1").map(|s| s.active_calls),
            Some(26 * 60 * 6 - 1)
        );
        let h = log.history("e1", 0);
        assert!(h.len() <= 24 * 60 + 1, "{}", h.len());
        assert!(h.first().is_some_and(|s| s.at_ms >= now - HISTORY_MS));
        assert!(
            h.windows(2)
                .all(|w| w[1].at_ms - w[0].at_ms >= BUCKET_MS - 10_000)
        );
        assert!(log.latest("e2").is_none());
    }

    #[test]
    fn the_history_survives_a_restart_and_old_minutes_are_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("manager.redb");
        // Samples every 10 s for 90 whole minutes, ending 10 s before the minute of `now`.
        let now = crate::fleet::now_ms();
        let t0 = bucket(now) - 90 * 60_000;
        let mut t = Telemetry::new(0);
        let (before, n_before) = {
            let store = Store::open(&path).expect("store");
            for i in 0..(90 * 6) {
                t.active_calls = i;
                t.packets = 1000 * i;
                store.telemetry.record("e1", &t, t0 + i as i64 * 10_000);
                if i % 2 == 0 {
                    store.telemetry.record("e2", &t, t0 + i as i64 * 10_000);
                }
                if i == 300 {
                    // A persist mid-way: the minutes written again later are overwritten.
                    assert!(persist(&store, now).expect("persist") > 0);
                }
            }
            let written = persist(&store, now).expect("persist");
            // Minutes 50 to 89 (50 had only its first sample at the first persist).
            assert_eq!(written, 2 * 40);
            assert_eq!(persist(&store, now).expect("persist"), 0, "nothing changed");
            let h = store.telemetry.history("e1", 0);
            (h, store.telemetry.history("e2", 0).len())
        };
        assert_eq!(before.len(), 90);
        let store = Store::open(&path).expect("store reopened");
        assert_eq!(store.telemetry.history("e1", 0), before);
        assert_eq!(store.telemetry.history("e2", 0).len(), n_before);
        assert_eq!(
            store.telemetry.latest("e1").map(|s| s.active_calls),
            Some(90 * 6 - 1)
        );
        // A new sample after the restart joins the restored history.
        t.active_calls = 7;
        store.telemetry.record("e1", &t, now);
        assert_eq!(store.telemetry.history("e1", 0).len(), 91);
        assert_eq!(
            store.telemetry.latest("e1").map(|s| s.active_calls),
            Some(7)
        );
        persist(&store, now).expect("persist");

        // 24 h later (as far as the cutoff goes) the first half hour is gone from the table
        // and from memory, and an edge with nothing left is forgotten.
        let later = t0 + HISTORY_MS + 30 * 60_000;
        persist(&store, later).expect("prune");
        let kept = store.telemetry.history("e1", 0);
        assert!(kept.iter().all(|s| s.at_ms >= later - HISTORY_MS));
        assert!((58..=61).contains(&kept.len()), "{}", kept.len());
        drop(store);
        let store = Store::open(&path).expect("store reopened");
        let rows = {
            let tx = store.db().begin_read().expect("read");
            let t = tx.open_table(TELEMETRY).expect("table");
            t.iter().expect("iter").count()
        };
        // Loaded at `now` (nothing expired yet by the clock), the table holds only what the
        // prune left: e1's last hour + the sample at `now`, e2's last hour.
        assert!(rows <= 2 * 61 + 1, "{rows}");
        // (The minute the cutoff fell in went from the table, not from memory.)
        let cut = bucket(later - HISTORY_MS) + BUCKET_MS;
        let expected: Vec<Sample> = kept.into_iter().filter(|s| s.at_ms >= cut).collect();
        assert_eq!(store.telemetry.history("e1", 0), expected);
        persist(&store, now + 2 * HISTORY_MS).expect("prune all");
        assert!(store.telemetry.edges().is_empty());
        drop(store);
        let store = Store::open(&path).expect("store reopened");
        assert!(store.telemetry.edges().is_empty());
    }
}
