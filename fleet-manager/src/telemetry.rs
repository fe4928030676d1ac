//! The edges' recent telemetry, in memory: the latest sample of each edge (the dashboard's live
//! counters) and a 24-hour history with one sample per minute (its charts). Lost on restart by
//! design: the edges send telemetry every few seconds, so the picture is whole again within a
//! minute; nothing here is a record anyone relies on.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use tapfleet_schemas::Telemetry;

/// How far back the history goes.
pub const HISTORY_MS: i64 = 24 * 3600 * 1000;
/// One history sample per this many milliseconds (the newest is replaced within a bucket).
pub const BUCKET_MS: i64 = 60_000;

/// One telemetry sample as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// Latest sample and history per edge.
#[derive(Debug, Default)]
pub struct TelemetryLog {
    inner: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl TelemetryLog {
    /// Records a sample received at `now_ms`.
    pub fn record(&self, edge: &str, t: &Telemetry, now_ms: i64) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        let q = m.entry(edge.to_owned()).or_default();
        let s = Sample::of(t, now_ms);
        match q.back_mut() {
            Some(last) if last.at_ms.div_euclid(BUCKET_MS) == now_ms.div_euclid(BUCKET_MS) => {
                *last = s
            }
            _ => q.push_back(s),
        }
        while q
            .front()
            .is_some_and(|f| f.at_ms < now_ms.saturating_sub(HISTORY_MS))
        {
            q.pop_front();
        }
    }

    /// The newest sample of an edge.
    pub fn latest(&self, edge: &str) -> Option<Sample> {
        self.inner.lock().ok()?.get(edge)?.back().cloned()
    }

    /// The samples of an edge since `since_ms`, oldest first.
    pub fn history(&self, edge: &str, since_ms: i64) -> Vec<Sample> {
        self.inner
            .lock()
            .ok()
            .and_then(|m| {
                m.get(edge)
                    .map(|q| q.iter().filter(|s| s.at_ms >= since_ms).cloned().collect())
            })
            .unwrap_or_default()
    }
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
}
