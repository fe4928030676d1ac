//! Alert rules, pure: telemetry samples, presence changes and clock ticks go in (with `now`),
//! [`Change`]s (an alert raised or cleared) come out. Persistence and delivery (events topic,
//! webhook, API, metrics) are in [`crate::alerting`].
//!
//! Rules (thresholds in the manager config's `[alerts]`, defaults in [`AlertConfig`]), each at most
//! once active per edge, cleared with hysteresis so a value hovering at a threshold does not flap:
//! - `offline`: the edge's state says offline (its MQTT Will); cleared when it is online again;
//! - `no_traffic`: an interface that had traffic saw no new packet for `no_traffic_secs` (per
//!   interface when the telemetry lists interfaces, else the edge's total); one alert per edge
//!   naming the quiet interfaces, cleared when every interface that had traffic has it again;
//! - `drops`: the kernel or interface dropped packets since the previous sample; cleared after
//!   `drops_clear_secs` without a new drop;
//! - `cache_full`: the cache is at or above `cache_percent`; cleared 5 points below;
//! - `backlog_age`: the oldest recording not yet stored is older than `backlog_max_age_secs`;
//!   cleared at 90 % of it;
//! - `transfer_failures`: `transfer_failures` failed transfers within
//!   `transfer_failures_window_secs`; cleared after a window without one;
//! - `clock_skew`: the edge's clock is off by more than `clock_skew_ms` (its own
//!   `clock_offset_ms`, else its sample's time against the manager's); cleared at half of it.
//!
//! Counters that go down (an edge restarted) start a new baseline instead of alerting.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use tapfleet_schemas::Telemetry;

/// The `[alerts]` table of the manager config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    pub no_traffic_secs: u64,
    pub drops_clear_secs: u64,
    pub cache_percent: u8,
    pub backlog_max_age_secs: u64,
    pub transfer_failures: u64,
    pub transfer_failures_window_secs: u64,
    pub clock_skew_ms: i64,
    /// Where alerts are POSTed as JSON; none: no webhook.
    pub webhook: Option<WebhookConfig>,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            no_traffic_secs: 300,
            drops_clear_secs: 300,
            cache_percent: 80,
            backlog_max_age_secs: 3600,
            transfer_failures: 3,
            transfer_failures_window_secs: 600,
            clock_skew_ms: 2000,
            webhook: None,
        }
    }
}

/// `[alerts.webhook]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Limit of one attempt.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Attempts after the first (backoff 0.5 s doubling).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// An `https://` URL is verified against the system's roots and, if set, the certificates
    /// of this PEM file (a private CA).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

impl AlertConfig {
    /// Checks what serde cannot: the webhook URL's scheme.
    pub fn check(&self) -> Result<(), String> {
        if let Some(w) = &self.webhook
            && !w.url.starts_with("http://")
            && !w.url.starts_with("https://")
        {
            return Err(format!(
                "alerts.webhook.url: {:?} is not an http:// or https:// URL",
                w.url
            ));
        }
        if self.cache_percent == 0 || self.cache_percent > 100 {
            return Err(format!(
                "alerts.cache_percent: must be between 1 and 100 (is {})",
                self.cache_percent
            ));
        }
        Ok(())
    }
}

fn default_timeout() -> u64 {
    5
}

fn default_retries() -> u32 {
    3
}

/// An alert rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Offline,
    NoTraffic,
    Drops,
    CacheFull,
    BacklogAge,
    TransferFailures,
    ClockSkew,
}

impl Rule {
    pub const ALL: [Rule; 7] = [
        Rule::Offline,
        Rule::NoTraffic,
        Rule::Drops,
        Rule::CacheFull,
        Rule::BacklogAge,
        Rule::TransferFailures,
        Rule::ClockSkew,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::Offline => "offline",
            Rule::NoTraffic => "no_traffic",
            Rule::Drops => "drops",
            Rule::CacheFull => "cache_full",
            Rule::BacklogAge => "backlog_age",
            Rule::TransferFailures => "transfer_failures",
            Rule::ClockSkew => "clock_skew",
        }
    }

    pub const fn severity(self) -> &'static str {
        match self {
            Rule::Offline | Rule::CacheFull | Rule::BacklogAge => "critical",
            _ => "warning",
        }
    }
}

/// One alert of one edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub edge_id: String,
    pub rule: Rule,
    pub severity: String,
    pub message: String,
    /// The measured value that broke the threshold (units in the message).
    pub value: i64,
    pub threshold: i64,
    pub raised_ms: i64,
    pub cleared_ms: Option<i64>,
    pub clear_message: Option<String>,
}

/// What an observation changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Raised(Alert),
    /// The alert as it was raised, now with `cleared_ms` and `clear_message`.
    Cleared(Alert),
}

#[derive(Debug, Default)]
struct Watch {
    online: bool,
    packets: u64,
    /// When packets last grew; none: no traffic seen yet.
    last_traffic_ms: Option<i64>,
    /// Per captured interface: (packets received, when they last grew; none: no traffic yet).
    interfaces: BTreeMap<String, (u64, Option<i64>)>,
    drops: u64,
    last_drop_ms: Option<i64>,
    failures: u64,
    /// (when, how many) failures within the window.
    failure_times: VecDeque<(i64, u64)>,
    active: BTreeMap<Rule, Alert>,
}

/// The rules' memory of every edge.
#[derive(Debug, Default)]
pub struct Engine {
    pub cfg: AlertConfig,
    edges: HashMap<String, Watch>,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The capture sources that had traffic and have been quiet for at least `secs`, with how long:
/// each listed interface, or the edge as a whole (`all interfaces`) when none is listed.
fn quiet(w: &Watch, secs: u64, now_ms: i64) -> Vec<(String, i64)> {
    let quiet_for = |last: Option<i64>| {
        last.map(|l| now_ms.saturating_sub(l) / 1000)
            .filter(|s| *s >= i(secs))
    };
    if w.interfaces.is_empty() {
        return quiet_for(w.last_traffic_ms)
            .map(|s| vec![("all interfaces".to_owned(), s)])
            .unwrap_or_default();
    }
    w.interfaces
        .iter()
        .filter_map(|(name, (_, last))| quiet_for(*last).map(|s| (name.clone(), s)))
        .collect()
}

/// Growth of a counter since `prev` (a counter that went down restarted from 0).
fn growth(prev: u64, now: u64) -> u64 {
    if now >= prev { now - prev } else { now }
}

impl Engine {
    pub fn new(cfg: AlertConfig) -> Self {
        Engine {
            cfg,
            edges: HashMap::new(),
        }
    }

    /// Takes back alerts that were active before a restart, so they can clear.
    pub fn restore(&mut self, active: impl IntoIterator<Item = Alert>) {
        for a in active {
            let w = self.edges.entry(a.edge_id.clone()).or_default();
            w.online = a.rule != Rule::Offline;
            w.active.insert(a.rule, a);
        }
    }

    /// Active alerts, by edge then rule.
    pub fn active(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self
            .edges
            .values()
            .flat_map(|w| w.active.values().cloned())
            .collect();
        v.sort_by(|a, b| (&a.edge_id, a.rule).cmp(&(&b.edge_id, b.rule)));
        v
    }

    /// The edge went online or offline.
    pub fn presence(&mut self, edge: &str, online: bool, now_ms: i64) -> Vec<Change> {
        let w = self.edges.entry(edge.to_owned()).or_default();
        w.online = online;
        let mut out = Vec::new();
        if online {
            // Traffic is measured afresh from now.
            if w.last_traffic_ms.is_some() {
                w.last_traffic_ms = Some(now_ms);
            }
            for (_, last) in w.interfaces.values_mut() {
                if last.is_some() {
                    *last = Some(now_ms);
                }
            }
            clear(
                w,
                Rule::Offline,
                now_ms,
                "online again".to_owned(),
                1,
                &mut out,
            );
        } else {
            raise(
                w,
                edge,
                Rule::Offline,
                now_ms,
                "edge offline (its connection to the broker ended)".to_owned(),
                0,
                1,
                &mut out,
            );
        }
        out
    }

    /// A telemetry sample received at `now_ms`.
    pub fn telemetry(&mut self, edge: &str, t: &Telemetry, now_ms: i64) -> Vec<Change> {
        let cfg = self.cfg.clone();
        let w = self.edges.entry(edge.to_owned()).or_default();
        let mut out = Vec::new();
        w.online = true;

        if growth(w.packets, t.packets) > 0 {
            w.last_traffic_ms = Some(now_ms);
        }
        w.packets = t.packets;
        for c in &t.interfaces {
            let e = w.interfaces.entry(c.interface.clone()).or_insert((0, None));
            if growth(e.0, c.received) > 0 {
                e.1 = Some(now_ms);
            }
            e.0 = c.received;
        }
        if w.active.contains_key(&Rule::NoTraffic)
            && quiet(w, cfg.no_traffic_secs, now_ms).is_empty()
        {
            clear(
                w,
                Rule::NoTraffic,
                now_ms,
                "traffic again".to_owned(),
                0,
                &mut out,
            );
        }

        let drops = t.kernel_drops.saturating_add(t.interface_drops);
        let new_drops = growth(w.drops, drops);
        w.drops = drops;
        if new_drops > 0 {
            w.last_drop_ms = Some(now_ms);
            raise(
                w,
                edge,
                Rule::Drops,
                now_ms,
                format!(
                    "{new_drops} packets dropped (kernel {}, interface {} in total)",
                    t.kernel_drops, t.interface_drops
                ),
                i(new_drops),
                0,
                &mut out,
            );
        }

        if t.cache_capacity_bytes > 0 {
            let pct = i(u64::try_from(
                u128::from(t.cache_used_bytes) * 100 / u128::from(t.cache_capacity_bytes),
            )
            .unwrap_or(u64::MAX));
            let limit = i64::from(cfg.cache_percent);
            if pct >= limit {
                raise(
                    w,
                    edge,
                    Rule::CacheFull,
                    now_ms,
                    format!(
                        "cache {pct} % full ({} of {} bytes)",
                        t.cache_used_bytes, t.cache_capacity_bytes
                    ),
                    pct,
                    limit,
                    &mut out,
                );
            } else if pct < limit - 5 {
                clear(
                    w,
                    Rule::CacheFull,
                    now_ms,
                    format!("cache {pct} % full"),
                    pct,
                    &mut out,
                );
            }
        }

        let age = i(t.backlog_oldest_secs);
        let max_age = i(cfg.backlog_max_age_secs);
        if age > max_age {
            raise(
                w,
                edge,
                Rule::BacklogAge,
                now_ms,
                format!(
                    "oldest recording not yet stored is {age} s old ({} bytes waiting)",
                    t.backlog_bytes
                ),
                age,
                max_age,
                &mut out,
            );
        } else if age <= max_age * 9 / 10 {
            clear(
                w,
                Rule::BacklogAge,
                now_ms,
                format!("backlog {age} s old"),
                age,
                &mut out,
            );
        }

        let failed = growth(w.failures, t.transfer_failures);
        w.failures = t.transfer_failures;
        if failed > 0 {
            w.failure_times.push_back((now_ms, failed));
        }

        if t.at_ms != 0 || t.clock_offset_ms.is_some() {
            let offset = t.clock_offset_ms.unwrap_or(t.at_ms.saturating_sub(now_ms));
            if offset.saturating_abs() > cfg.clock_skew_ms {
                raise(
                    w,
                    edge,
                    Rule::ClockSkew,
                    now_ms,
                    format!("edge clock off by {offset} ms"),
                    offset,
                    cfg.clock_skew_ms,
                    &mut out,
                );
            } else if offset.saturating_abs() <= cfg.clock_skew_ms / 2 {
                clear(
                    w,
                    Rule::ClockSkew,
                    now_ms,
                    format!("clock offset {offset} ms"),
                    offset,
                    &mut out,
                );
            }
        }
        out.extend(self.timed(edge, now_ms));
        out
    }

    /// Rules that fire or clear with time alone (no traffic, drops and failures windows).
    pub fn tick(&mut self, now_ms: i64) -> Vec<Change> {
        let edges: Vec<String> = self.edges.keys().cloned().collect();
        edges.iter().flat_map(|e| self.timed(e, now_ms)).collect()
    }

    fn timed(&mut self, edge: &str, now_ms: i64) -> Vec<Change> {
        let cfg = &self.cfg;
        let Some(w) = self.edges.get_mut(edge) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let silent = quiet(w, cfg.no_traffic_secs, now_ms);
        if w.online && !silent.is_empty() {
            let quiet_s = silent.iter().map(|(_, s)| *s).min().unwrap_or(0);
            let what = silent
                .iter()
                .map(|(name, s)| format!("{name} for {s} s"))
                .collect::<Vec<_>>()
                .join(", ");
            raise(
                w,
                edge,
                Rule::NoTraffic,
                now_ms,
                format!("no packet captured: {what}"),
                quiet_s,
                i(cfg.no_traffic_secs),
                &mut out,
            );
        }
        if w.last_drop_ms.is_some_and(|l| {
            now_ms.saturating_sub(l) >= i(cfg.drops_clear_secs).saturating_mul(1000)
        }) {
            clear(
                w,
                Rule::Drops,
                now_ms,
                format!("no drop for {} s", cfg.drops_clear_secs),
                0,
                &mut out,
            );
        }
        let window_ms = i(cfg.transfer_failures_window_secs).saturating_mul(1000);
        while w
            .failure_times
            .front()
            .is_some_and(|(at, _)| now_ms.saturating_sub(*at) > window_ms)
        {
            w.failure_times.pop_front();
        }
        let recent: u64 = w.failure_times.iter().map(|(_, n)| n).sum();
        if recent >= cfg.transfer_failures.max(1) {
            raise(
                w,
                edge,
                Rule::TransferFailures,
                now_ms,
                format!(
                    "{recent} file transfers failed within {} s",
                    cfg.transfer_failures_window_secs
                ),
                i(recent),
                i(cfg.transfer_failures),
                &mut out,
            );
        } else if recent == 0 {
            clear(
                w,
                Rule::TransferFailures,
                now_ms,
                format!(
                    "no failed transfer for {} s",
                    cfg.transfer_failures_window_secs
                ),
                0,
                &mut out,
            );
        }
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn raise(
    w: &mut Watch,
    edge: &str,
    rule: Rule,
    now_ms: i64,
    message: String,
    value: i64,
    threshold: i64,
    out: &mut Vec<Change>,
) {
    if w.active.contains_key(&rule) {
        return;
    }
    let a = Alert {
        edge_id: edge.to_owned(),
        rule,
        severity: rule.severity().to_owned(),
        message,
        value,
        threshold,
        raised_ms: now_ms,
        cleared_ms: None,
        clear_message: None,
    };
    w.active.insert(rule, a.clone());
    out.push(Change::Raised(a));
}

fn clear(
    w: &mut Watch,
    rule: Rule,
    now_ms: i64,
    message: String,
    value: i64,
    out: &mut Vec<Change>,
) {
    if let Some(mut a) = w.active.remove(&rule) {
        a.cleared_ms = Some(now_ms);
        a.clear_message = Some(message);
        a.value = value;
        out.push(Change::Cleared(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, packets: u64) -> Telemetry {
        let mut t = Telemetry::new(at_ms);
        t.packets = packets;
        t.cache_capacity_bytes = 1000;
        t
    }

    fn rules(c: &[Change]) -> Vec<(bool, Rule)> {
        c.iter()
            .map(|c| match c {
                Change::Raised(a) => (true, a.rule),
                Change::Cleared(a) => (false, a.rule),
            })
            .collect()
    }

    #[test]
    fn offline_is_raised_once_and_cleared() {
        let mut e = Engine::default();
        assert_eq!(
            rules(&e.presence("e1", false, 10)),
            vec![(true, Rule::Offline)]
        );
        assert!(e.presence("e1", false, 20).is_empty(), "raised once");
        assert_eq!(e.active().len(), 1);
        assert_eq!(
            rules(&e.presence("e1", true, 30)),
            vec![(false, Rule::Offline)]
        );
        assert!(e.active().is_empty());
    }

    #[test]
    fn no_traffic_names_the_quiet_interface_while_another_is_busy() {
        let mut e = Engine::new(AlertConfig {
            no_traffic_secs: 60,
            ..AlertConfig::default()
        });
        let with = |at: i64, eth0: u64, eth1: u64| {
            let mut t = sample(at, eth0 + eth1);
            t.interfaces = vec![
                tapfleet_schemas::InterfaceCounters {
                    interface: "eth0".into(),
                    received: eth0,
                    ..Default::default()
                },
                tapfleet_schemas::InterfaceCounters {
                    interface: "eth1".into(),
                    received: eth1,
                    ..Default::default()
                },
            ];
            t
        };
        // eth1 never had traffic: it is never reported quiet.
        assert!(e.telemetry("e1", &with(0, 10, 0), 0).is_empty());
        assert!(e.telemetry("e1", &with(30_000, 20, 0), 30_000).is_empty());
        // eth0 goes quiet while the edge's total would still grow with eth1's traffic.
        assert!(e.telemetry("e1", &with(40_000, 20, 5), 40_000).is_empty());
        let raised = e.telemetry("e1", &with(100_000, 20, 50), 100_000);
        assert_eq!(rules(&raised), vec![(true, Rule::NoTraffic)]);
        match &raised[0] {
            Change::Raised(a) => {
                assert!(a.message.contains("eth0"), "{}", a.message);
                assert!(!a.message.contains("eth1"), "{}", a.message);
            }
            Change::Cleared(_) => unreachable!(),
        }
        // eth0 has traffic again: cleared.
        assert_eq!(
            rules(&e.telemetry("e1", &with(110_000, 21, 60), 110_000)),
            vec![(false, Rule::NoTraffic)]
        );
    }

    #[test]
    fn no_traffic_only_after_traffic_and_clears_with_packets() {
        let mut e = Engine::new(AlertConfig {
            no_traffic_secs: 60,
            ..AlertConfig::default()
        });
        // Never any traffic: no alert, however long.
        assert!(e.telemetry("e1", &sample(0, 0), 0).is_empty());
        assert!(e.tick(1_000_000).is_empty());
        assert!(
            e.telemetry("e1", &sample(1_000_000, 5), 1_000_000)
                .is_empty()
        );
        assert!(e.tick(1_059_000).is_empty());
        assert_eq!(rules(&e.tick(1_060_000)), vec![(true, Rule::NoTraffic)]);
        assert!(e.tick(1_070_000).is_empty());
        assert_eq!(
            rules(&e.telemetry("e1", &sample(1_080_000, 6), 1_080_000)),
            vec![(false, Rule::NoTraffic)]
        );
        // An offline edge is "offline", not "no traffic".
        e.presence("e1", false, 1_090_000);
        assert!(e.tick(2_000_000).is_empty());
    }

    #[test]
    fn cache_and_backlog_have_hysteresis() {
        let mut e = Engine::default();
        let mut t = sample(1, 0);
        t.cache_used_bytes = 800;
        assert_eq!(
            rules(&e.telemetry("e", &t, 1)),
            vec![(true, Rule::CacheFull)]
        );
        t.cache_used_bytes = 770; // below 80 %, not below 75 %
        assert!(e.telemetry("e", &t, 2).is_empty());
        t.cache_used_bytes = 740;
        assert_eq!(
            rules(&e.telemetry("e", &t, 3)),
            vec![(false, Rule::CacheFull)]
        );
        t.backlog_oldest_secs = 3601;
        assert_eq!(
            rules(&e.telemetry("e", &t, 4)),
            vec![(true, Rule::BacklogAge)]
        );
        t.backlog_oldest_secs = 3500;
        assert!(e.telemetry("e", &t, 5).is_empty());
        t.backlog_oldest_secs = 3000;
        assert_eq!(
            rules(&e.telemetry("e", &t, 6)),
            vec![(false, Rule::BacklogAge)]
        );
    }

    #[test]
    fn drops_failures_and_skew() {
        let mut e = Engine::new(AlertConfig {
            drops_clear_secs: 10,
            transfer_failures: 2,
            transfer_failures_window_secs: 60,
            ..AlertConfig::default()
        });
        let mut t = sample(1000, 0);
        t.clock_offset_ms = Some(0); // clocks agree (skew is tested below)
        assert!(e.telemetry("e", &t, 1000).is_empty());
        t.kernel_drops = 3;
        let c = e.telemetry("e", &t, 2000);
        assert_eq!(rules(&c), vec![(true, Rule::Drops)]);
        let Change::Raised(a) = &c[0] else { panic!() };
        assert_eq!(a.value, 3);
        assert!(e.tick(11_000).is_empty());
        assert_eq!(rules(&e.tick(12_000)), vec![(false, Rule::Drops)]);
        // An edge restart (counter down) is a new baseline, not a drop.
        t.kernel_drops = 0;
        assert!(e.telemetry("e", &t, 13_000).is_empty());

        t.transfer_failures = 1;
        assert!(e.telemetry("e", &t, 14_000).is_empty());
        t.transfer_failures = 2;
        assert_eq!(
            rules(&e.telemetry("e", &t, 15_000)),
            vec![(true, Rule::TransferFailures)]
        );
        assert!(e.tick(70_000).is_empty(), "one failure still in the window");
        assert_eq!(
            rules(&e.tick(76_000)),
            vec![(false, Rule::TransferFailures)]
        );

        let mut t = sample(100_000 + 5000, 0); // 5 s ahead of the manager
        assert_eq!(
            rules(&e.telemetry("e", &t, 100_000)),
            vec![(true, Rule::ClockSkew)]
        );
        t.at_ms = 200_000 + 1500;
        assert!(e.telemetry("e", &t, 200_000).is_empty(), "hysteresis");
        t.clock_offset_ms = Some(-100);
        assert_eq!(
            rules(&e.telemetry("e", &t, 300_000)),
            vec![(false, Rule::ClockSkew)]
        );
    }

    #[test]
    fn thresholds_come_from_the_manager_config() {
        let c: crate::targets::ManagerConfig = toml::from_str(
            "[alerts]\nno_traffic_secs = 60\n[alerts.webhook]\nurl = \"http://h/x\"\n",
        )
        .expect("parses");
        assert_eq!(c.alerts.no_traffic_secs, 60);
        assert_eq!(c.alerts.cache_percent, 80, "default kept");
        let w = c.alerts.webhook.expect("webhook");
        assert_eq!(
            (w.url.as_str(), w.timeout_secs, w.retries),
            ("http://h/x", 5, 3)
        );
        assert!(toml::from_str::<crate::targets::ManagerConfig>("[alerts]\nbogus = 1\n").is_err());
        let bad = AlertConfig {
            webhook: Some(WebhookConfig {
                url: "ftp://x".into(),
                timeout_secs: 1,
                retries: 0,
                ca_file: None,
            }),
            ..AlertConfig::default()
        };
        assert!(
            bad.check()
                .is_err_and(|e| e.starts_with("alerts.webhook.url"))
        );
        assert!(AlertConfig::default().check().is_ok());
    }

    #[test]
    fn restored_alerts_clear() {
        let mut e = Engine::default();
        let a = match e.presence("e", false, 1).remove(0) {
            Change::Raised(a) => a,
            c => panic!("{c:?}"),
        };
        let mut e2 = Engine::default();
        e2.restore([a]);
        assert_eq!(e2.active().len(), 1);
        assert_eq!(
            rules(&e2.presence("e", true, 2)),
            vec![(false, Rule::Offline)]
        );
    }
}
