//! What the capture's health does to the recordings: a call longer than the maximum duration is
//! cut into chained parts, and packets the kernel dropped mark every active recording
//! incomplete. Pure bookkeeping over the recorder's calls: time comes in as an argument.
//!
//! Parts: at a tick where a call's current part has lasted `max_call_ns`, that part is finished
//! with end reason `max_duration` and a next part starts at the tick's time in a new folder, with
//! the same Call-ID, `part` + 1 and `previous_part` = the earlier part's recording id. Its id mixes
//! the part number into the digest (see the recorder's module doc), so every part has its own.
//! Later packets of the call go to the new part; its `call.pcap` has the first part's format.
//! A call already closing (BYE, CANCEL, final error seen) is not cut: it ends within its grace.

use sha2::{Digest, Sha256};

use super::{Recorder, RecorderEvent};
use crate::calls::{CallEnd, CallKey};

/// The recording id of part `part` of the call `call_id` that started at `call_start_ns`, the
/// part itself starting at `part_start_ns` (the id's time prefix).
pub(super) fn part_recording_id(
    edge_id: Option<&str>,
    call_id: &str,
    call_start_ns: i64,
    part: u32,
    part_start_ns: i64,
) -> String {
    let mut h = Sha256::new();
    h.update(edge_id.unwrap_or("").as_bytes());
    h.update([0]);
    h.update(call_id.as_bytes());
    h.update([0]);
    h.update(call_start_ns.to_be_bytes());
    h.update(part.to_be_bytes());
    let digest = h.finalize();
    let mut disc = [0u8; 8];
    disc.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    tapfleet_schemas::recording_id(part_start_ns, disc)
}

impl Recorder {
    /// The capture reports that the kernel (or the interface) dropped `n` packets since its last
    /// report, at `now_ns`: every recording active now may miss some of them, and its manifest
    /// will say how many were dropped while it was active.
    pub fn note_drops(&mut self, now_ns: i64, n: u64) {
        if n == 0 {
            return;
        }
        self.stats.capture_drops = self.stats.capture_drops.saturating_add(n);
        let active = self.calls.len() + self.orphan_recs.len();
        tracing::warn!(
            dropped = n,
            active_recordings = active,
            now_ns,
            "capture dropped packets"
        );
        for rec in self.calls.values_mut() {
            rec.note_drops(n);
        }
        for (_, rec) in self.orphan_recs.values_mut() {
            rec.note_drops(n);
        }
    }

    /// Cuts the calls whose current part has lasted the maximum duration at `now_ns`.
    pub(super) fn cut_long_calls(&mut self, now_ns: i64) {
        let max = self.opts.max_call_ns;
        if max <= 0 || self.calls.is_empty() {
            return;
        }
        let mut due: Vec<CallKey> = self
            .calls
            .iter()
            .filter(|(_, r)| now_ns.saturating_sub(r.start_ns()) >= max)
            .map(|(k, _)| *k)
            .collect();
        if due.is_empty() {
            return;
        }
        due.sort_unstable();
        for key in due {
            self.cut_call(key, now_ns);
        }
    }

    fn cut_call(&mut self, key: CallKey, now_ns: i64) {
        let Some(d) = self.tracker.dialog(key) else {
            return;
        };
        if d.end_reason.is_some() {
            return;
        }
        let mut part_dialog = d.clone();
        let Some(rec) = self.calls.remove(&key) else {
            return;
        };
        part_dialog.end_reason = Some(CallEnd::MaxDuration);
        part_dialog.last_ns = part_dialog.last_ns.min(now_ns);
        let part = rec.part.saturating_add(1);
        let id = part_recording_id(
            self.opts.edge_id.as_deref(),
            &part_dialog.call_id,
            part_dialog.start_ns,
            part,
            now_ns,
        );
        let dir = self.out_dir.join(&id);
        if self.finisher.is_pending(&id) {
            // Only if a part id repeated: its folder is reused once the earlier one is finished.
            self.wait_finished(Some(&id));
        }
        let next = rec.next_part(id.clone(), dir.clone(), now_ns);
        tracing::debug!(
            recording_id = %rec.id,
            next = %id,
            call_id = %part_dialog.call_id,
            part,
            "call cut at its maximum duration"
        );
        self.stats.calls_cut += 1;
        self.finish_recording(rec, part_dialog);
        match next {
            Ok(next) => {
                self.calls.insert(key, next);
                self.stats.calls_started += 1;
                self.events.push(RecorderEvent::Started {
                    recording_id: id,
                    dir,
                    start_ns: now_ns,
                });
            }
            Err(source) => {
                // The call goes on unrecorded; the failure is reported like any other.
                let _ = self.report_failure(id, dir, source);
            }
        }
        self.stats.active_calls = self.calls.len() as u64;
    }
}
