//! What an edge reports about itself: its retained [`ReportedState`] (also its MQTT Will, with
//! `online: false`) and periodic [`Telemetry`].

use serde::{Deserialize, Serialize};

use crate::codec::{SCHEMA_VERSION, message};

/// edge -> manager, retained. Published as the MQTT Will with `online: false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedState {
    pub v: u16,
    pub online: bool,
    /// Version of the config the edge applied (none before the first).
    pub config_version: Option<u64>,
    /// Why the last desired config was not applied.
    pub config_error: Option<String>,
    pub software_version: String,
    pub hostname: String,
    /// Unix milliseconds when this state was published.
    pub at_ms: i64,
}
message!(ReportedState, "ReportedState", 16 * 1024);

impl ReportedState {
    pub fn offline(software_version: String, hostname: String) -> Self {
        ReportedState {
            v: SCHEMA_VERSION,
            online: false,
            config_version: None,
            config_error: None,
            software_version,
            hostname,
            at_ms: 0,
        }
    }
}

/// edge -> manager every `telemetry_interval_secs`. Counters are totals since the edge started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Telemetry {
    pub v: u16,
    pub at_ms: i64,
    pub packets: u64,
    pub bytes: u64,
    pub kernel_drops: u64,
    pub interface_drops: u64,
    pub active_calls: u64,
    pub recordings: RecordingCounts,
    pub cache_used_bytes: u64,
    pub cache_capacity_bytes: u64,
    pub backlog_bytes: u64,
    /// Age of the oldest recording not yet stored, in seconds.
    pub backlog_oldest_secs: u64,
    pub upload_bytes_per_sec: u64,
    pub errors: u64,
    /// Local clock minus the broker's view of time, in milliseconds, when known.
    pub clock_offset_ms: Option<i64>,
    /// File transfers that failed (refused, stalled, digest mismatch) since the edge started.
    /// Added within v1 (absent: 0).
    pub transfer_failures: u64,
    /// Each live capture interface's counters (`kernel_drops`/`interface_drops` above are
    /// their sums since the edge started). Added within v1 (absent: none).
    pub interfaces: Vec<InterfaceCounters>,
    /// TCP segments of SIP over TLS (port 5061) seen since the edge started: counted, not
    /// recorded (their SIP is encrypted). Added within v1 (absent: 0).
    pub sip_tls_packets: u64,
}

/// One capture interface's libpcap counters, since its capture started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct InterfaceCounters {
    pub interface: String,
    /// Packets the kernel handed to the capture (`ps_recv`).
    pub received: u64,
    /// Packets dropped for lack of room in the kernel buffer (`ps_drop`).
    pub kernel_drops: u64,
    /// Packets the interface or its driver dropped (`ps_ifdrop`).
    pub interface_drops: u64,
}
message!(Telemetry, "Telemetry", 16 * 1024);

impl Telemetry {
    pub fn new(at_ms: i64) -> Self {
        Telemetry {
            v: SCHEMA_VERSION,
            at_ms,
            ..Default::default()
        }
    }
}

/// Recordings in the edge's cache, per state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RecordingCounts {
    pub recording: u64,
    pub finalized: u64,
    pub announced: u64,
    pub stored: u64,
    pub evicted: u64,
}
