//! Events for integrations: what the manager publishes on `tapfleet/v1/tenants/{tenant}/events`
//! (alerts and notable changes; QoS 1, not retained). Integrations subscribe; nothing in tapfleet
//! depends on them being received.

use serde::{Deserialize, Serialize};

use crate::codec::{SCHEMA_VERSION, message};

/// manager -> integrations on the tenant's `events` topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub v: u16,
    /// Unix milliseconds when the manager noticed it.
    pub at_ms: i64,
    /// The edge it is about.
    pub edge_id: String,
    pub body: EventBody,
}
message!(Event, "Event", 16 * 1024);

impl Event {
    pub fn new(at_ms: i64, edge_id: String, body: EventBody) -> Self {
        Event {
            v: SCHEMA_VERSION,
            at_ms,
            edge_id,
            body,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// Every file of a recording and its `manifest.json` are stored in `target`.
    RecordingStored {
        recording_id: String,
        target: String,
    },
    /// Alert: a rule of the manager fired for this edge (`rule`: `offline`, `no_traffic`,
    /// `drops`, `cache_full`, `backlog_age`, `transfer_failures`, `clock_skew`; more may come).
    AlertRaised {
        rule: String,
        /// `warning` or `critical`.
        severity: String,
        message: String,
        /// The measured value and the threshold it broke (units per rule, see `message`).
        value: i64,
        threshold: i64,
    },
    /// The condition of an alert is over.
    AlertCleared {
        rule: String,
        message: String,
        value: i64,
    },
}
