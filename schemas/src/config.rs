//! Desired configuration: what the manager wants an edge to do. Published retained on the
//! edge's `config` topic; every change gets a new, higher `version`.
//!
//! Every field has a default so that a config naming only what it changes is complete.

use serde::{Deserialize, Serialize};

use crate::codec::{SCHEMA_VERSION, message};

/// manager -> edge, retained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredConfig {
    pub v: u16,
    /// Monotonically increasing per edge.
    pub version: u64,
    pub edge: EdgeConfig,
}
message!(DesiredConfig, "DesiredConfig", 64 * 1024);

impl DesiredConfig {
    pub fn new(version: u64, edge: EdgeConfig) -> Self {
        DesiredConfig {
            v: SCHEMA_VERSION,
            version,
            edge,
        }
    }
}

/// The effective configuration of one edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EdgeConfig {
    pub capture: CaptureConfig,
    pub cache: CacheConfig,
    pub storage: StoragePolicy,
    /// Seconds between two telemetry messages.
    pub telemetry_interval_secs: u32,
}

/// What and how the edge captures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptureConfig {
    /// Interfaces to capture on (`any` for all). Empty: whatever the command line says.
    pub interfaces: Vec<String>,
    /// A BPF filter, e.g. `udp or tcp`.
    pub bpf_filter: Option<String>,
    pub snaplen: u32,
    /// Kernel capture buffer size in bytes.
    pub buffer_bytes: u64,
    pub promiscuous: bool,
    /// A call with no packet for this long ends (RTP timeout).
    pub rtp_timeout_secs: u32,
    /// A call longer than this is cut and continues as a chained next part.
    pub max_call_secs: u32,
    /// The site's own networks, as CIDRs (`10.0.0.0/8`, `2001:db8:1::/48`; a bare address is one
    /// host): a call whose INVITE goes from one of them to elsewhere is `outbound`, from
    /// elsewhere into one `inbound`, between two of them `internal` (manifest `direction`).
    /// Empty (and no `trunk_networks`): every call's direction is `unknown`.
    pub local_networks: Vec<String>,
    /// SIP trunks, SBCs or carrier gateways that stand for the outside world even inside
    /// `local_networks` (e.g. the SBC's LAN address when the edge sees PBX <-> SBC traffic).
    /// With no `local_networks`, every address that is not a trunk is local.
    pub trunk_networks: Vec<String>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interfaces: Vec::new(),
            bpf_filter: None,
            snaplen: 65535,
            buffer_bytes: 64 * 1024 * 1024,
            promiscuous: true,
            rtp_timeout_secs: 60,
            max_call_secs: 4 * 3600,
            local_networks: Vec::new(),
            trunk_networks: Vec::new(),
        }
    }
}

/// The edge's local cache and when it uploads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    pub capacity_bytes: u64,
    /// Percent of capacity above which the cache alerts and applies its full policy.
    pub high_water_percent: u8,
    /// Start uploading when this many bytes are pending...
    pub upload_threshold_bytes: u64,
    /// ...or when the oldest pending recording is this old.
    pub upload_max_age_secs: u64,
    /// Upload bandwidth cap in bytes per second (none: unlimited).
    pub bandwidth_limit_bps: Option<u64>,
    /// When uploads may start, as UTC time-of-day windows (none: at any time).
    pub upload_windows: Vec<TimeWindow>,
    pub retention: Retention,
}

/// A daily window of UTC time, `[start, end)` in minutes since midnight; `end < start` wraps
/// past midnight (e.g. 22:00-06:00 is `{start_minute: 1320, end_minute: 360}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl TimeWindow {
    /// Whether the UTC minute of day `minute` (0..1440) is inside the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start_minute <= self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute)
        } else {
            minute >= self.start_minute || minute < self.end_minute
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            capacity_bytes: 10 * 1024 * 1024 * 1024,
            high_water_percent: 80,
            upload_threshold_bytes: 0,
            upload_max_age_secs: 0,
            bandwidth_limit_bps: None,
            upload_windows: Vec::new(),
            retention: Retention::default(),
        }
    }
}

/// What happens to a recording in the edge's cache once the manager confirmed it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Retention {
    /// Delete the local files at once.
    DeleteWhenStored,
    /// Keep them this many days.
    KeepDays { days: u32 },
    /// Keep them until the space is needed.
    #[default]
    UntilSpaceNeeded,
}

/// Where this edge's recordings are stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePolicy {
    /// Name of a target in the manager's config (`cloud` by default), or `edge-local`.
    pub target: String,
    /// Keep a copy in the edge's local storage as well.
    pub keep_local_copy: bool,
}

impl Default for StoragePolicy {
    fn default() -> Self {
        StoragePolicy {
            target: "cloud".to_owned(),
            keep_local_copy: false,
        }
    }
}
