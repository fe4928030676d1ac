//! Cache policy, pure: given the cache's entries, its config and `now`, which recordings to
//! upload and which to evict. No IO; the service applies the decisions.

use tapfleet_schemas::{CacheConfig, Retention, TimeWindow};

use super::{Entry, State};

/// Whether the upload threshold is reached: pending bytes >= threshold, or the oldest pending
/// recording is older than the maximum age. A threshold of 0 uploads at once.
pub fn should_upload(
    cfg: &CacheConfig,
    pending_bytes: u64,
    oldest_pending_ms: Option<i64>,
    now_ms: i64,
) -> bool {
    let Some(oldest) = oldest_pending_ms else {
        return false;
    };
    if cfg.upload_threshold_bytes == 0 || pending_bytes >= cfg.upload_threshold_bytes {
        return true;
    }
    cfg.upload_max_age_secs > 0
        && now_ms.saturating_sub(oldest)
            >= i64::try_from(cfg.upload_max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Whether uploads may start at `now_ms` (Unix ms): no windows means at any time.
pub fn upload_window_open(windows: &[TimeWindow], now_ms: i64) -> bool {
    if windows.is_empty() {
        return true;
    }
    let minute = u16::try_from(now_ms.rem_euclid(86_400_000) / 60_000).unwrap_or(0);
    windows.iter().any(|w| w.contains(minute))
}

/// Ids of stored recordings whose local files retention says to delete now.
/// `used_bytes` is what the cache holds; space is "needed" above the high-water mark.
pub fn to_evict<'a>(
    cfg: &CacheConfig,
    entries: impl IntoIterator<Item = (&'a str, &'a Entry)>,
    used_bytes: u64,
    now_ms: i64,
) -> Vec<&'a str> {
    let high_water = cfg.capacity_bytes / 100 * u64::from(cfg.high_water_percent.min(100));
    let mut over = used_bytes.saturating_sub(high_water);
    let mut out = Vec::new();
    // Entries come in id order, which is start-time order: the oldest go first.
    for (id, e) in entries {
        if e.state != State::Stored {
            continue;
        }
        let evict = match cfg.retention {
            Retention::DeleteWhenStored => true,
            Retention::KeepDays { days } => {
                now_ms.saturating_sub(e.changed_ms) >= i64::from(days) * 86_400_000
            }
            Retention::UntilSpaceNeeded => over > 0,
        };
        if evict {
            over = over.saturating_sub(e.bytes());
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn entry(state: State, changed_ms: i64) -> Entry {
        Entry {
            state,
            created_ms: 0,
            changed_ms,
            manifest: None,
            stored_files: BTreeSet::new(),
        }
    }

    #[test]
    fn upload_threshold_by_bytes_or_age() {
        let mut cfg = CacheConfig::default();
        assert!(
            should_upload(&cfg, 1, Some(0), 0),
            "threshold 0 uploads at once"
        );
        assert!(!should_upload(&cfg, 0, None, 0), "nothing pending");
        cfg.upload_threshold_bytes = 1000;
        cfg.upload_max_age_secs = 60;
        assert!(!should_upload(&cfg, 999, Some(0), 59_999));
        assert!(should_upload(&cfg, 1000, Some(0), 1));
        assert!(should_upload(&cfg, 1, Some(0), 60_000));
    }

    #[test]
    fn upload_windows_by_utc_time_of_day() {
        let night = [TimeWindow {
            start_minute: 22 * 60,
            end_minute: 6 * 60,
        }];
        let at = |h: i64, m: i64| (h * 60 + m) * 60_000 + 3 * 86_400_000;
        assert!(upload_window_open(&[], at(12, 0)));
        assert!(upload_window_open(&night, at(23, 30)));
        assert!(upload_window_open(&night, at(0, 0)));
        assert!(upload_window_open(&night, at(5, 59)));
        assert!(!upload_window_open(&night, at(6, 0)));
        assert!(!upload_window_open(&night, at(21, 59)));
        let day = [TimeWindow {
            start_minute: 9 * 60,
            end_minute: 17 * 60,
        }];
        assert!(upload_window_open(&day, at(9, 0)));
        assert!(!upload_window_open(&day, at(17, 0)));
    }

    #[test]
    fn retention_never_evicts_unstored() {
        let cfg = CacheConfig {
            retention: Retention::DeleteWhenStored,
            ..CacheConfig::default()
        };
        let a = entry(State::Announced, 0);
        let s = entry(State::Stored, 0);
        let got = to_evict(&cfg, [("a", &a), ("s", &s)], 0, 0);
        assert_eq!(got, vec!["s"]);
        let keep = CacheConfig {
            retention: Retention::KeepDays { days: 1 },
            ..CacheConfig::default()
        };
        assert!(to_evict(&keep, [("s", &s)], 0, 86_399_999).is_empty());
        assert_eq!(to_evict(&keep, [("s", &s)], 0, 86_400_000), vec!["s"]);
        let space = CacheConfig::default();
        assert!(to_evict(&space, [("s", &s)], 0, 0).is_empty());
        assert_eq!(
            to_evict(&space, [("s", &s)], space.capacity_bytes, 0),
            vec!["s"]
        );
    }
}
