//! Start-up reconciliation of the cache index with the recording folders on disk, after a crash
//! or a power cut. Nothing recorded is dropped silently:
//!
//! - an entry still `recording` (the process died while the call was going on), or a folder the
//!   index does not know (it died before the index committed `recording`):
//!   - with a whole `manifest.json` whose files are all there, it is finalized as written;
//!   - otherwise its `call.pcap` is recorded again, up to the last whole packet, by the same
//!     recorder (same recording id, fresh `audio.wav` and manifest), and finalized with
//!     `complete: false` and the reason in `incomplete`;
//!   - a folder without a single whole packet is removed and reported.
//! - leftovers of an interrupted recovery (`.recover-*`) are removed first.

use std::path::Path;

use anyhow::Context;
use tapfleet_schemas::{Manifest, is_recording_id, manifest_json};

use crate::cache::{Cache, State};
use crate::capture::{Next, PacketSource, PcapReader};
use crate::recorder::{Recorder, RecorderEvent, RecorderOptions};

/// What reconciliation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Finalized from a whole manifest.json found on disk.
    pub finalized: u64,
    /// Recorded again from a partial call.pcap, marked incomplete.
    pub recovered: u64,
    /// Folders without an index entry that were adopted (counted in the two above too).
    pub adopted: u64,
    /// Folders without any whole packet, removed.
    pub removed_empty: u64,
    /// Recordings that could not be recovered (left in place, reported).
    pub failed: u64,
}

/// The reason recorded in a recovered manifest's `incomplete` list.
pub const RECOVERED_REASON: &str =
    "the edge stopped while recording: recovered from call.pcap up to the last whole packet";

/// Reconciles `cache` with its folders. `opts` must carry the edge id so ids come out the same.
pub fn reconcile(cache: &Cache, opts: &RecorderOptions, now_ms: i64) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let root = cache.recordings_dir().to_path_buf();
    let mut on_disk = Vec::new();
    for e in std::fs::read_dir(&root).with_context(|| format!("listing {}", root.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".recover-") {
            std::fs::remove_dir_all(e.path()).ok();
        } else if is_recording_id(&name) && e.path().is_dir() {
            on_disk.push(name);
        }
    }
    let mut todo: Vec<(String, bool)> = cache
        .in_state(State::Recording)?
        .into_iter()
        .map(|(id, _)| (id, false))
        .collect();
    for id in on_disk {
        if cache.get(&id)?.is_none() {
            todo.push((id, true));
        }
    }
    for (id, adopted) in todo {
        match reconcile_one(cache, &id, opts, now_ms) {
            Ok(Outcome::Finalized) => report.finalized += 1,
            Ok(Outcome::Recovered) => report.recovered += 1,
            Ok(Outcome::Empty) => {
                report.removed_empty += 1;
                tracing::warn!(recording = %id, "recording had no whole packet: removed");
                continue;
            }
            Err(e) => {
                report.failed += 1;
                tracing::error!(recording = %id, error = %format!("{e:#}"), "recording could not be recovered; left in place");
                continue;
            }
        }
        if adopted {
            report.adopted += 1;
        }
        tracing::warn!(recording = %id, adopted, "recording left over by an earlier run was finalized");
    }
    Ok(report)
}

enum Outcome {
    Finalized,
    Recovered,
    Empty,
}

fn reconcile_one(
    cache: &Cache,
    id: &str,
    opts: &RecorderOptions,
    now_ms: i64,
) -> anyhow::Result<Outcome> {
    let dir = cache.dir_of(id)?;
    if let Some(m) = whole_manifest(&dir, id) {
        cache.begin(id, now_ms)?;
        cache.finalize(m, now_ms)?;
        return Ok(Outcome::Finalized);
    }
    let pcap = dir.join("call.pcap");
    if !pcap.exists() {
        cache.forget_recording(id)?;
        std::fs::remove_dir_all(&dir).ok();
        return Ok(Outcome::Empty);
    }
    let tmp = cache.recordings_dir().join(format!(".recover-{id}"));
    std::fs::remove_dir_all(&tmp).ok();
    let mut recorder = Recorder::new(tmp.clone(), opts.clone());
    let file = std::fs::File::open(&pcap).with_context(|| format!("{}", pcap.display()))?;
    let mut packets = 0u64;
    // A crash leaves at most a partial last record: reading stops there (or at a partial header).
    if let Ok(mut reader) = PcapReader::new(std::io::BufReader::new(file)) {
        while let Ok(Next::Packet(p)) = reader.next_packet() {
            packets += 1;
            recorder.process(&p)?;
        }
    }
    recorder.finish();
    let finished: Vec<Manifest> = recorder
        .drain_events()
        .filter_map(|e| match e {
            RecorderEvent::Finished(f) => Some(f.manifest),
            RecorderEvent::Started { .. } => None,
        })
        .collect();
    let Some(mut m) = finished.into_iter().find(|m| m.recording_id == id) else {
        std::fs::remove_dir_all(&tmp).ok();
        if packets == 0 {
            cache.forget_recording(id)?;
            std::fs::remove_dir_all(&dir).ok();
            return Ok(Outcome::Empty);
        }
        anyhow::bail!("{packets} packets recorded again, but not as recording {id}");
    };
    let new_dir = tmp.join(id);
    for f in &m.files {
        std::fs::rename(new_dir.join(&f.name), dir.join(&f.name))
            .with_context(|| format!("moving recovered {}", f.name))?;
    }
    m.complete = false;
    m.incomplete.push(RECOVERED_REASON.to_owned());
    super::write_private_atomic(&dir.join("manifest.json"), &manifest_json(&m))?;
    std::fs::remove_dir_all(&tmp).ok();
    cache.begin(id, now_ms)?;
    cache.finalize(m, now_ms)?;
    Ok(Outcome::Recovered)
}

/// The folder's manifest.json, if it is whole and every file it lists is there at its size.
fn whole_manifest(dir: &Path, id: &str) -> Option<Manifest> {
    let bytes = std::fs::read(dir.join("manifest.json")).ok()?;
    let m: Manifest = serde_json::from_slice(&bytes).ok()?;
    let all_there = m
        .files
        .iter()
        .all(|f| std::fs::metadata(dir.join(&f.name)).is_ok_and(|md| md.len() == f.size));
    (m.recording_id == id && all_there).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sipp_capture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures/sipp/sipp_calls.pcap")
    }

    /// Records the sipp capture into a cache the way the service does, returning the manifests.
    fn record_into(cache: &Cache, opts: &RecorderOptions) -> Vec<Manifest> {
        let mut rec = Recorder::new(cache.recordings_dir().to_path_buf(), opts.clone());
        let f = std::fs::File::open(sipp_capture()).expect("sipp capture beside the repo");
        let mut r = PcapReader::new(std::io::BufReader::new(f)).expect("pcap");
        while let Ok(Next::Packet(p)) = r.next_packet() {
            rec.process(&p).expect("record");
        }
        rec.finish();
        rec.drain_events()
            .filter_map(|e| match e {
                RecorderEvent::Finished(f) => Some(f.manifest),
                RecorderEvent::Started { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_recording_cut_by_a_crash_is_recovered_as_incomplete() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(tmp.path()).expect("cache");
        let opts = RecorderOptions {
            edge_id: Some("edge-1".to_owned()),
            ..RecorderOptions::default()
        };
        let manifests = record_into(&cache, &opts);
        assert_eq!(manifests.len(), 5);
        // Crash simulation: index says `recording`; call.pcap cut mid-record, no wav, no manifest.
        let cut = &manifests[0];
        let dir = cache.dir_of(&cut.recording_id).expect("dir");
        cache.begin(&cut.recording_id, 1).expect("begin");
        let pcap = std::fs::read(dir.join("call.pcap")).expect("pcap");
        std::fs::write(dir.join("call.pcap"), &pcap[..pcap.len() / 2 + 7]).expect("cut");
        std::fs::remove_file(dir.join("audio.wav")).ok();
        std::fs::remove_file(dir.join("manifest.json")).expect("rm manifest");
        // A folder the index never heard of, but whole: adopted as it is.
        let whole = &manifests[1];
        // An index entry with nothing on disk at all.
        let ghost = "20240101T000000Z-0000000000000000";
        cache.begin(ghost, 1).expect("begin");

        let report = reconcile(&cache, &opts, 2).expect("reconcile");
        assert_eq!(report.recovered, 1, "{report:?}");
        assert_eq!(report.finalized, 4, "{report:?}");
        assert_eq!(report.adopted, 4, "{report:?}");
        assert_eq!(report.removed_empty, 1, "{report:?}");
        assert_eq!(report.failed, 0, "{report:?}");

        let e = cache.get(&cut.recording_id).expect("get").expect("entry");
        assert_eq!(e.state, State::Finalized);
        let m = e.manifest.expect("manifest");
        assert!(!m.complete);
        assert_eq!(
            m.incomplete.last().map(String::as_str),
            Some(RECOVERED_REASON)
        );
        assert!(
            m.packets > 0 && m.packets < cut.packets,
            "{} of {}",
            m.packets,
            cut.packets
        );
        assert_eq!(m.call_id, cut.call_id);
        for f in &m.files {
            let bytes = std::fs::read(dir.join(&f.name)).expect("file");
            assert_eq!(bytes.len() as u64, f.size, "{}", f.name);
        }
        let on_disk: Manifest =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
                .expect("json");
        assert_eq!(on_disk, m);
        let w = cache.get(&whole.recording_id).expect("get").expect("entry");
        assert_eq!(w.manifest.as_ref(), Some(whole));
        assert!(cache.get(ghost).expect("get").is_none());
        // Reconciling again changes nothing.
        assert_eq!(
            reconcile(&cache, &opts, 3).expect("again"),
            Report::default()
        );
    }
}
