//! Which files are in flight to the manager (pure: no IO, times are whatever the caller passes).
//!
//! At most 1 + [`MAX_FINISHING`] files per edge: the `current` one (offered, or its chunks
//! being sent) and up to [`MAX_FINISHING`] `finishing` (every chunk acknowledged, waiting for the
//! manager's `Stored` while it fsyncs and catalogs them). The next file is offered as soon as the
//! current one is all acknowledged and fewer than [`MAX_FINISHING`] files are finishing, so the
//! manager's commits of files N-2..N overlap the transfer of file N+1 (one slow fsync does not
//! stall the transfer); the unacked bytes stay those of the current file only (the upload task's
//! window). Each file still counts as stored only on its own `Stored` ack (the core commits
//! that, not this type).

use std::collections::VecDeque;

/// Files all sent and waiting for the manager's `Stored` at once.
pub const MAX_FINISHING: usize = 3;

/// One file in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot<T> {
    pub recording_id: String,
    pub file: String,
    /// When it was offered.
    pub offered_at: T,
    /// Set by the manager's `Accept`.
    pub transfer_id: Option<u64>,
    /// When every chunk was acknowledged (the wait for `Stored` starts).
    pub acked_at: Option<T>,
}

/// What to do after a file left the in-flight set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    /// It was the file being sent: the upload task must stop sending it.
    pub cancel_upload: bool,
}

/// The files in flight.
#[derive(Debug, Clone)]
pub struct InFlight<T> {
    current: Option<Slot<T>>,
    /// Oldest first.
    finishing: VecDeque<Slot<T>>,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        InFlight {
            current: None,
            finishing: VecDeque::new(),
        }
    }
}

impl<T> InFlight<T> {
    /// A new file may be offered now.
    #[cfg(test)]
    pub fn can_offer(&self) -> bool {
        self.current.is_none()
    }

    /// The file offered or being sent.
    pub fn current(&self) -> Option<&Slot<T>> {
        self.current.as_ref()
    }

    /// How many files are in flight (0..=1 + MAX_FINISHING).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        usize::from(self.current.is_some()) + self.finishing.len()
    }

    /// The file is in flight (offered, being sent or waiting for `Stored`).
    pub fn contains(&self, recording_id: &str, file: &str) -> bool {
        self.current
            .iter()
            .chain(&self.finishing)
            .any(|s| s.recording_id == recording_id && s.file == file)
    }

    /// A file was offered. Returns false (and changes nothing) when one is current already.
    pub fn offered(&mut self, recording_id: String, file: String, now: T) -> bool {
        if self.current.is_some() {
            return false;
        }
        self.current = Some(Slot {
            recording_id,
            file,
            offered_at: now,
            transfer_id: None,
            acked_at: None,
        });
        true
    }

    /// The manager accepted the current file. Returns false for a stale accept.
    pub fn accepted(&mut self, recording_id: &str, file: &str, transfer_id: u64) -> bool {
        match self.current.as_mut() {
            Some(c) if c.recording_id == recording_id && c.file == file => {
                c.transfer_id = Some(transfer_id);
                true
            }
            _ => false,
        }
    }

    /// Every chunk of a transfer acknowledged. Returns true when the next file may be offered.
    pub fn all_acked(&mut self, transfer_id: u64, now: T) -> bool {
        match self.current.as_mut() {
            Some(c) if c.transfer_id == Some(transfer_id) => c.acked_at = Some(now),
            _ => return false,
        }
        self.promote()
    }

    /// The manager stored a file: it leaves the set (if it was in it).
    pub fn stored(&mut self, recording_id: &str, file: &str) -> Option<Left> {
        let left = self.remove(recording_id, file);
        self.promote();
        left
    }

    /// The file failed (transfer failed, upload failed): it leaves the set to be offered again.
    pub fn failed(&mut self, recording_id: &str, file: &str) -> Option<Left> {
        let left = self.remove(recording_id, file);
        self.promote();
        left
    }

    /// The oldest file waiting for `Stored`, if any.
    pub fn finishing(&self) -> Option<&Slot<T>> {
        self.finishing.front()
    }

    /// The key of the file with this transfer id, if in flight.
    pub fn by_transfer(&self, transfer_id: u64) -> Option<(String, String)> {
        self.current
            .iter()
            .chain(&self.finishing)
            .find(|s| s.transfer_id == Some(transfer_id))
            .map(|s| (s.recording_id.clone(), s.file.clone()))
    }

    /// Everything leaves (a reconnect: the manager may have lost it all), oldest first.
    pub fn drain(&mut self) -> Vec<(String, String)> {
        let current = self.current.take();
        self.finishing
            .drain(..)
            .chain(current)
            .map(|s| (s.recording_id, s.file))
            .collect()
    }

    fn remove(&mut self, recording_id: &str, file: &str) -> Option<Left> {
        let is = |s: &Slot<T>| s.recording_id == recording_id && s.file == file;
        if let Some(i) = self.finishing.iter().position(is) {
            self.finishing.remove(i);
            Some(Left {
                cancel_upload: false,
            })
        } else if self.current.as_ref().is_some_and(is) {
            let c = self.current.take();
            Some(Left {
                cancel_upload: c.is_none_or(|c| c.acked_at.is_none()),
            })
        } else {
            None
        }
    }

    /// Moves an all-acknowledged current file to finishing when there is room. True when the
    /// current slot is free afterwards.
    fn promote(&mut self) -> bool {
        if self.finishing.len() < MAX_FINISHING
            && self.current.as_ref().is_some_and(|c| c.acked_at.is_some())
            && let Some(c) = self.current.take()
        {
            self.finishing.push_back(c);
        }
        self.current.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn k(i: u8) -> (String, String) {
        ("r".to_owned(), format!("f{i}"))
    }

    #[test]
    fn next_file_is_offered_once_the_current_one_is_all_acked() {
        let mut f = InFlight::default();
        assert!(f.offered("r".into(), "a".into(), 0));
        assert!(!f.offered("r".into(), "b".into(), 0));
        assert!(f.accepted("r", "a", 1));
        assert!(f.all_acked(1, 0));
        assert!(f.can_offer() && f.contains("r", "a"));
        // Files all acked while the earlier ones still commit: up to MAX_FINISHING of them.
        let names: Vec<String> = (0..MAX_FINISHING).map(|i| format!("f{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let tid = 2 + i as u64;
            assert!(f.offered("r".into(), name.clone(), 1));
            assert!(f.accepted("r", name, tid));
            let free = f.all_acked(tid, 1);
            // The last one finds finishing full (a + the others): it waits, nothing new is offered.
            assert_eq!(free, i + 1 < MAX_FINISHING, "{name}");
        }
        assert!(!f.can_offer());
        assert_eq!(f.len(), 1 + MAX_FINISHING);
        assert_eq!(
            f.stored("r", "a"),
            Some(Left {
                cancel_upload: false
            })
        );
        // a's slot went to the waiting file.
        assert!(f.can_offer() && !f.contains("r", "a"));
        assert_eq!(f.len(), MAX_FINISHING);
        let mut left = f.drain();
        left.sort();
        let want: Vec<(String, String)> =
            names.iter().map(|n| ("r".to_owned(), n.clone())).collect();
        assert_eq!(left, want);
        assert_eq!(f.len(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Offer,
        Accept,
        AllAcked,
        Stored(bool),
        Failed(bool),
        Drain,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Offer),
            Just(Op::Accept),
            Just(Op::AllAcked),
            any::<bool>().prop_map(Op::Stored),
            any::<bool>().prop_map(Op::Failed),
            Just(Op::Drain),
        ]
    }

    proptest! {
        /// Whatever the order of events: at most 1 + MAX_FINISHING files in flight, at most one not yet all
        /// acknowledged (the only one with unacked bytes), a file leaves only on its own
        /// stored/failed/drain, and a stored file never comes back.
        #[test]
        fn few_in_flight_and_each_leaves_on_its_own_ack(ops in proptest::collection::vec(op(), 0..60)) {
            let mut f: InFlight<u32> = InFlight::default();
            let mut next = 0u8;
            let mut in_flight: Vec<(String, String)> = Vec::new();
            let mut stored: Vec<(String, String)> = Vec::new();
            for (t, o) in ops.into_iter().enumerate() {
                match o {
                    Op::Offer => {
                        let key = k(next);
                        let could = f.can_offer();
                        prop_assert_eq!(f.offered(key.0.clone(), key.1.clone(), t as u32), could);
                        if could {
                            in_flight.push(key);
                            next += 1;
                        }
                    }
                    Op::Accept => {
                        if let Some(c) = f.current().cloned() {
                            let tid = u64::from(next) * 10 + c.file.len() as u64;
                            prop_assert!(f.accepted(&c.recording_id, &c.file, tid));
                            prop_assert_eq!(f.by_transfer(tid), Some((c.recording_id, c.file)));
                        }
                    }
                    Op::AllAcked => {
                        if let Some(tid) = f.current().and_then(|c| c.transfer_id) {
                            let was = f.len();
                            let free = f.all_acked(tid, t as u32);
                            prop_assert_eq!(free, f.can_offer());
                            prop_assert_eq!(f.len(), was);
                        }
                    }
                    Op::Stored(oldest) | Op::Failed(oldest) => {
                        let pick = if oldest { in_flight.first() } else { in_flight.last() }.cloned();
                        if let Some(key) = pick {
                            let left = if matches!(o, Op::Stored(_)) {
                                stored.push(key.clone());
                                f.stored(&key.0, &key.1)
                            } else {
                                f.failed(&key.0, &key.1)
                            };
                            prop_assert!(left.is_some());
                            in_flight.retain(|x| *x != key);
                        }
                        // Acks for files not in flight change nothing.
                        let len = f.len();
                        prop_assert_eq!(f.stored("r", "nope"), None);
                        prop_assert_eq!(f.len(), len);
                    }
                    Op::Drain => {
                        let mut d = f.drain();
                        d.sort();
                        in_flight.sort();
                        prop_assert_eq!(&d, &in_flight);
                        in_flight.clear();
                    }
                }
                prop_assert!(f.len() <= 1 + MAX_FINISHING);
                prop_assert_eq!(f.len(), in_flight.len());
                for key in &in_flight {
                    prop_assert!(f.contains(&key.0, &key.1));
                }
                for key in &stored {
                    prop_assert!(!f.contains(&key.0, &key.1));
                }
                // Only the current file may have unacked bytes; a finishing one never does.
                for fin in &f.finishing {
                    prop_assert!(fin.acked_at.is_some());
                }
                prop_assert!(f.current.is_some() || f.can_offer());
                // A current file all acked stays current only while finishing is full.
                if f.current.as_ref().is_some_and(|c| c.acked_at.is_some()) {
                    prop_assert_eq!(f.finishing.len(), MAX_FINISHING);
                }
            }
        }
    }
}
