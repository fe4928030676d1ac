//! The recordings catalog's own types (not the wire's): one [`RecordingEntry`] per recording id,
//! with where each file is stored. These are what `GET /api/v1/recordings` returns and what the
//! store keeps (as JSON) in its `recordings` table.
//!
//! Also the storage layout: `{tenant}/{edge}/{YYYY}/{MM}/{DD}/{recording_id}/{file}` with the
//! date of the recording's start (UTC).

use serde::{Deserialize, Serialize};
use tapfleet_schemas::{CallDirection, Manifest, Party, UtcDateTime};

/// Where a recording is in its life at the manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    /// The manifest is in the catalog; some files are not stored yet.
    Announced,
    /// Every file and `manifest.json` are stored (in a target, or in the edge's local storage
    /// for an `edge-local` storage policy).
    Stored,
    /// Every copy was deleted by a delete job (the entry stays: the catalog is the history).
    Deleted,
}

/// The pseudo-target name of a copy kept in an edge's local storage: `edge:<edge_id>`.
pub fn edge_target(edge_id: &str) -> String {
    format!("edge:{edge_id}")
}

/// The edge id of an `edge:<edge_id>` location, if it is one.
pub fn edge_of_target(target: &str) -> Option<&str> {
    target.strip_prefix("edge:")
}

/// One party of a call, as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyEntry {
    pub number: String,
    pub display_name: Option<String>,
    pub uri: String,
}

impl From<&Party> for PartyEntry {
    fn from(p: &Party) -> Self {
        PartyEntry {
            number: p.number.clone(),
            display_name: p.display_name.clone(),
            uri: p.uri.clone(),
        }
    }
}

/// A stored copy of a file: target name and path inside the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub target: String,
    pub path: String,
}

/// One file of a recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub name: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub content_type: String,
    pub locations: Vec<Location>,
}

/// A recording in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingEntry {
    pub recording_id: String,
    pub edge_id: String,
    pub tenant: String,
    pub call_id: String,
    pub caller: PartyEntry,
    pub callee: PartyEntry,
    /// RFC 3339 UTC.
    pub start: String,
    pub answer: Option<String>,
    pub end: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub state: RecordingState,
    pub files: Vec<FileRecord>,
    /// Where the manager wrote `manifest.json` (once every file is stored).
    #[serde(default)]
    pub manifest_locations: Vec<Location>,
    /// Under legal hold: no copy may be deleted (delete and move jobs are refused).
    #[serde(default)]
    pub legal_hold: bool,
    /// Where the next upload of this recording from its edge goes, when a job asked for a
    /// target other than the edge's storage policy (upload/fetch from an edge).
    #[serde(default)]
    pub upload_target: Option<String>,
    /// `end - start`, in milliseconds.
    #[serde(default)]
    pub duration_ms: i64,
    /// False when the edge knows the recording misses something (`incomplete` says what).
    #[serde(default = "yes")]
    pub complete: bool,
    #[serde(default)]
    pub incomplete: Vec<String>,
    /// The worst (lowest) MOS estimate of the recording's streams.
    #[serde(default)]
    pub mos: Option<f64>,
    /// The worst packet loss of the recording's streams, in percent.
    #[serde(default)]
    pub loss_pct: Option<f64>,
    /// Inbound, outbound, internal or unknown: the manifest's call direction (the edge's
    /// `capture.local_networks`). Entries cataloged before it existed read as unknown.
    #[serde(default)]
    pub direction: CallDirection,
}

fn yes() -> bool {
    true
}

/// The worst MOS and the worst loss (percent) of a manifest's streams.
pub fn quality(m: &Manifest) -> (Option<f64>, Option<f64>) {
    let mos = m
        .streams
        .iter()
        .filter_map(|s| s.mos)
        .filter(|v| v.is_finite())
        .reduce(f64::min);
    let loss = m
        .streams
        .iter()
        .filter(|s| s.packets > 0)
        .map(|s| {
            let lost = s.lost.max(0) as f64;
            100.0 * lost / (s.packets as f64 + lost)
        })
        .reduce(f64::max);
    (mos, loss)
}

impl RecordingEntry {
    /// A new, announced entry for a manifest received from `tenant`/`edge`.
    pub fn from_manifest(m: &Manifest, tenant: &str, edge: &str) -> Self {
        let t = |ns: i64| UtcDateTime::from_unix_ns(ns).rfc3339();
        let (mos, loss_pct) = quality(m);
        RecordingEntry {
            recording_id: m.recording_id.clone(),
            edge_id: edge.to_owned(),
            tenant: tenant.to_owned(),
            call_id: m.call_id.clone(),
            caller: (&m.caller).into(),
            callee: (&m.callee).into(),
            start: t(m.start_ns),
            answer: m.answer_ns.map(t),
            end: t(m.end_ns),
            start_ns: m.start_ns,
            end_ns: m.end_ns,
            state: RecordingState::Announced,
            files: m
                .files
                .iter()
                .map(|f| FileRecord {
                    name: f.name.clone(),
                    size: f.size,
                    sha256: f.sha256.to_hex(),
                    content_type: f.content_type.clone(),
                    locations: Vec::new(),
                })
                .collect(),
            manifest_locations: Vec::new(),
            legal_hold: false,
            upload_target: None,
            duration_ms: m.end_ns.saturating_sub(m.start_ns) / 1_000_000,
            complete: m.complete,
            incomplete: m.incomplete.clone(),
            mos,
            loss_pct,
            direction: m.direction,
        }
    }

    /// Every target holding a complete copy (every file and `manifest.json`), in the order the
    /// copies were made.
    pub fn complete_copies(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in &self.manifest_locations {
            if self.all_stored_in(&l.target) && !out.contains(&l.target) {
                out.push(l.target.clone());
            }
        }
        out
    }

    /// Every target holding at least one file of the recording.
    pub fn targets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let all = self
            .files
            .iter()
            .flat_map(|f| f.locations.iter())
            .chain(self.manifest_locations.iter());
        for l in all {
            if !out.contains(&l.target) {
                out.push(l.target.clone());
            }
        }
        out
    }

    /// Forgets every location in `target`; the state becomes `Deleted` when no copy is left.
    pub fn remove_target(&mut self, target: &str) {
        for f in &mut self.files {
            f.locations.retain(|l| l.target != target);
        }
        self.manifest_locations.retain(|l| l.target != target);
        if self.targets().is_empty() {
            self.state = RecordingState::Deleted;
        }
    }

    /// The file record named `name`.
    pub fn file(&self, name: &str) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Whether `name` has a copy in `target`.
    pub fn is_stored_in(&self, name: &str, target: &str) -> bool {
        self.file(name)
            .is_some_and(|f| f.locations.iter().any(|l| l.target == target))
    }

    /// Whether every file has a copy in `target`.
    pub fn all_stored_in(&self, target: &str) -> bool {
        self.files
            .iter()
            .all(|f| self.is_stored_in(&f.name, target))
    }

    /// Records a location of a file (idempotent). False if the file is not in the recording.
    pub fn add_location(&mut self, name: &str, loc: Location) -> bool {
        match self.files.iter_mut().find(|f| f.name == name) {
            Some(f) => {
                if !f.locations.contains(&loc) {
                    f.locations.push(loc);
                }
                true
            }
            None => false,
        }
    }
}

/// Whether a file name from a manifest is safe as one path component.
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name != "manifest.json"
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !name.starts_with('.')
}

/// Checks a manifest before it enters the catalog; the error is the refusal reason.
pub fn validate_manifest(m: &Manifest) -> Result<(), String> {
    if !tapfleet_schemas::is_recording_id(&m.recording_id) {
        return Err("recording_id is not a valid recording id".into());
    }
    let mut names = std::collections::HashSet::new();
    for f in &m.files {
        if !is_safe_file_name(&f.name) {
            return Err(format!("file name {:?} is not allowed", f.name));
        }
        if !names.insert(f.name.as_str()) {
            return Err(format!("file {:?} is listed twice", f.name));
        }
    }
    Ok(())
}

/// The folder of a recording in a target: `{tenant}/{edge}/{YYYY}/{MM}/{DD}/{recording_id}`.
pub fn recording_dir(tenant: &str, edge: &str, start_ns: i64, recording_id: &str) -> String {
    let d = UtcDateTime::from_unix_ns(start_ns);
    format!(
        "{tenant}/{edge}/{:04}/{:02}/{:02}/{recording_id}",
        d.year, d.month, d.day
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapfleet_schemas::{FileEntry, RecordingKind, Sha256};

    #[test]
    fn layout_uses_the_start_date() {
        assert_eq!(
            recording_dir(
                "default",
                "e1",
                1_709_210_096_000_000_000,
                "20240229T123456Z-00"
            ),
            "default/e1/2024/02/29/20240229T123456Z-00"
        );
    }

    #[test]
    fn the_call_direction_is_listed_and_old_entries_read_as_unknown() {
        let mut m = Manifest::new(
            "20240229T123456Z-deadbeef00010203".into(),
            RecordingKind::Call,
        );
        m.direction = CallDirection::Inbound;
        let e = RecordingEntry::from_manifest(&m, "t", "e1");
        let mut json = serde_json::to_value(&e).expect("json");
        assert_eq!(json["direction"], "inbound");
        json.as_object_mut().map(|o| o.remove("direction"));
        let old: RecordingEntry = serde_json::from_value(json).expect("an entry without it");
        assert_eq!(old.direction, CallDirection::Unknown);
    }

    #[test]
    fn unsafe_manifests_are_refused() {
        let mut m = Manifest::new(
            "20240229T123456Z-deadbeef00010203".into(),
            RecordingKind::Call,
        );
        let f = |name: &str| FileEntry {
            name: name.into(),
            size: 1,
            sha256: Sha256([0; 32]),
            content_type: String::new(),
        };
        m.files = vec![f("call.pcap")];
        assert!(validate_manifest(&m).is_ok());
        for bad in ["../x", "a/b", "", ".hidden", "manifest.json"] {
            m.files = vec![f(bad)];
            assert!(validate_manifest(&m).is_err(), "{bad:?}");
        }
        m.files = vec![f("a"), f("a")];
        assert!(validate_manifest(&m).is_err());
        m.files.clear();
        m.recording_id = "../../etc".into();
        assert!(validate_manifest(&m).is_err());
    }
}
