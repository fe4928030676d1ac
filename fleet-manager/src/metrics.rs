//! The manager's counters, shown as Prometheus text on `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident : $help:literal),* $(,)?) => {
        /// Counters since the manager started.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(pub $name: AtomicU64,)*
            /// Active alerts per rule (gauges; [`crate::alerting`]).
            pub alerts_active: crate::alerting::ActiveGauges,
        }

        impl Metrics {
            /// Prometheus text exposition format.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(
                    let _ = writeln!(out, "# HELP tapfleet_manager_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE tapfleet_manager_{} counter", stringify!($name));
                    let _ = writeln!(out, "tapfleet_manager_{} {}", stringify!($name), self.$name.load(Ordering::Relaxed));
                )*
                out.push_str(&self.alerts_active.render());
                out
            }
        }
    };
}

counters! {
    manifests_received_total: "Manifests received (new and duplicate).",
    manifest_duplicates_total: "Manifests received again for a recording already in the catalog.",
    manifests_refused_total: "Manifests refused.",
    bytes_stored_total: "File bytes written to targets by completed transfers.",
    transfers_ok_total: "Files stored with a matching SHA-256.",
    transfers_failed_total: "Transfers failed (digest mismatch, target error, overrun, refused offer).",
    chunks_received_total: "Transfer chunks received.",
    chunks_duplicate_total: "Chunks whose bytes were already received.",
    chunks_gap_total: "Chunks past the next expected byte (dropped, sender rewinds).",
    mover_queue_dropped_total: "Chunks and offers dropped because their target's mover queue was full (the edge sends them again).",
    decode_errors_total: "MQTT payloads that did not decode.",
    unknown_edge_messages_total: "Messages on the topic of an edge that is not enrolled.",
    enrollments_accepted_total: "Enrollments accepted.",
    enrollments_refused_total: "Enrollments refused.",
    mqtt_connects_total: "CONNACKs received by the manager's MQTT client.",
    alerts_raised_total: "Alerts raised (every rule; see tapfleet_manager_alerts_active).",
    webhook_deliveries_total: "Alert raises and clears delivered to the webhook.",
    webhook_failures_total: "Alert raises and clears the webhook did not take (after retries) or that did not fit its queue.",
}

/// Adds one.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n`.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}
