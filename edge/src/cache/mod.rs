//! The edge's local cache: recording folders on disk plus a redb index of their states.
//!
//! Layout under the cache root:
//! ```text
//! index.redb                     recording id -> CBOR `Entry` (state, manifest, stored files)
//! recordings/<recording-id>/     call.pcap, audio.wav, manifest.json (written by the recorder)
//! held/<recording-id>/           recordings held for other edges (see [`held`])
//! ```
//! Life of a recording: `Recording` (the recorder is writing) -> `Finalized` (files synced and
//! hashed, manifest.json written; the manifest is in the outbox) -> `Announced` (the manager
//! acknowledged the manifest) -> `Stored` (the manager confirmed every file in its target with the
//! matching SHA-256) -> `Evicted` (local files deleted per retention).
//!
//! Invariants:
//! - The recorder syncs a recording's files before the index commits `Finalized`, so an index entry
//!   never points at files that a crash could still lose.
//! - A recording's local files are deleted only in `Stored` state (never before the manager
//!   confirmed it), and the index commits `Evicted` after the files are gone.
//! - The outbox is the set of `Finalized` entries: manifests are re-sent until acknowledged.

pub mod held;
pub mod policy;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tapfleet_schemas::{Manifest, RecordingCounts, is_recording_id};

const RECORDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("recordings");

/// Where a recording is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Recording,
    Finalized,
    Announced,
    Stored,
    Evicted,
}

/// One recording in the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub state: State,
    /// Unix ms when the recording entered the cache.
    pub created_ms: i64,
    /// Unix ms of the last state change.
    pub changed_ms: i64,
    /// Present from `Finalized` on.
    pub manifest: Option<Manifest>,
    /// Files the manager confirmed stored.
    pub stored_files: BTreeSet<String>,
}

impl Entry {
    /// Bytes of the recording's files (known once finalized).
    pub fn bytes(&self) -> u64 {
        self.manifest.as_ref().map_or(0, Manifest::total_bytes)
    }
}

/// Errors of the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache index: {0}")]
    Index(String),
    #[error("cache entry {id} is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("cache file IO at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0:?} is not a recording id")]
    BadId(String),
    #[error("no recording {0} in the cache")]
    Unknown(String),
}

macro_rules! index_err {
    ($($t:ty),*) => {$(
        impl From<$t> for CacheError {
            fn from(e: $t) -> Self {
                CacheError::Index(e.to_string())
            }
        }
    )*};
}
index_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The cache: index + recording folders.
pub struct Cache {
    db: Database,
    root: PathBuf,
    recordings_dir: PathBuf,
}

impl Cache {
    /// Opens (or creates) the cache under `root`.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        let recordings_dir = root.join("recordings");
        std::fs::create_dir_all(&recordings_dir).map_err(|source| CacheError::Io {
            path: recordings_dir.clone(),
            source,
        })?;
        let db = Database::create(root.join("index.redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(RECORDINGS)?;
        txn.commit()?;
        Ok(Cache {
            db,
            root: root.to_path_buf(),
            recordings_dir,
        })
    }

    /// The folder recordings are written into (one sub-folder per recording id).
    pub fn recordings_dir(&self) -> &Path {
        &self.recordings_dir
    }

    /// The folder of one recording.
    pub fn dir_of(&self, id: &str) -> Result<PathBuf, CacheError> {
        if !is_recording_id(id) {
            return Err(CacheError::BadId(id.to_owned()));
        }
        Ok(self.recordings_dir.join(id))
    }

    /// Reads one entry.
    pub fn get(&self, id: &str) -> Result<Option<Entry>, CacheError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RECORDINGS)?;
        match table.get(id)? {
            Some(v) => decode_entry(id, v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// All entries, by recording id (= by start time).
    pub fn entries(&self) -> Result<Vec<(String, Entry)>, CacheError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RECORDINGS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let id = k.value().to_owned();
            let entry = decode_entry(&id, v.value())?;
            out.push((id, entry));
        }
        Ok(out)
    }

    /// Entries in one state.
    pub fn in_state(&self, state: State) -> Result<Vec<(String, Entry)>, CacheError> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|(_, e)| e.state == state)
            .collect())
    }

    /// A new recording has started.
    pub fn begin(&self, id: &str, now_ms: i64) -> Result<(), CacheError> {
        self.dir_of(id)?;
        self.update(id, |old| match old {
            Some(e) => Some(e),
            None => Some(Entry {
                state: State::Recording,
                created_ms: now_ms,
                changed_ms: now_ms,
                manifest: None,
                stored_files: BTreeSet::new(),
            }),
        })
    }

    /// The recorder finished a recording and synced its files: it joins the outbox.
    pub fn finalize(&self, manifest: Manifest, now_ms: i64) -> Result<(), CacheError> {
        let id = manifest.recording_id.clone();
        self.dir_of(&id)?;
        self.update(&id, |old| {
            let mut e = old.unwrap_or(Entry {
                state: State::Recording,
                created_ms: now_ms,
                changed_ms: now_ms,
                manifest: None,
                stored_files: BTreeSet::new(),
            });
            if e.state == State::Recording {
                e.state = State::Finalized;
                e.changed_ms = now_ms;
                e.manifest = Some(manifest);
            }
            Some(e)
        })
    }

    /// The manager acknowledged the manifest. Returns whether the state changed.
    pub fn mark_announced(&self, id: &str, now_ms: i64) -> Result<bool, CacheError> {
        let mut changed = false;
        self.update(id, |old| {
            let mut e = old?;
            if e.state == State::Finalized {
                e.state = State::Announced;
                e.changed_ms = now_ms;
                changed = true;
            }
            Some(e)
        })?;
        Ok(changed)
    }

    /// The manager confirmed one file stored. Returns true when the whole recording is stored.
    pub fn mark_file_stored(&self, id: &str, file: &str, now_ms: i64) -> Result<bool, CacheError> {
        let mut all = false;
        self.update(id, |old| {
            let mut e = old?;
            if matches!(e.state, State::Finalized | State::Announced) {
                e.stored_files.insert(file.to_owned());
                let files = e
                    .manifest
                    .as_ref()
                    .map(|m| m.files.as_slice())
                    .unwrap_or(&[]);
                if files.iter().all(|f| e.stored_files.contains(&f.name)) {
                    e.state = State::Stored;
                    e.changed_ms = now_ms;
                }
            }
            all = e.state == State::Stored;
            Some(e)
        })?;
        Ok(all)
    }

    /// Deletes a stored recording's local files, then records `Evicted`.
    pub fn evict(&self, id: &str, now_ms: i64) -> Result<(), CacheError> {
        let entry = self
            .get(id)?
            .ok_or_else(|| CacheError::Unknown(id.to_owned()))?;
        if entry.state != State::Stored {
            return Ok(()); // never delete what the manager has not confirmed
        }
        let dir = self.dir_of(id)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CacheError::Io { path: dir, source }),
        }
        self.update(id, |old| {
            let mut e = old?;
            e.state = State::Evicted;
            e.changed_ms = now_ms;
            Some(e)
        })
    }

    /// Removes the index entry of a recording that never got a packet (state `recording` only).
    pub fn forget_recording(&self, id: &str) -> Result<(), CacheError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(RECORDINGS)?;
            let state = match table.get(id)? {
                Some(v) => Some(decode_entry(id, v.value())?.state),
                None => None,
            };
            if state == Some(State::Recording) {
                table.remove(id)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Counts per state, the bytes on disk (this edge's recordings, recordings held for others
    /// and their partial downloads) and the bytes not yet stored.
    pub fn summary(&self) -> Result<Summary, CacheError> {
        let held_bytes = self.held_bytes()?;
        let mut s = Summary {
            used_bytes: held_bytes,
            held_bytes,
            ..Summary::default()
        };
        for (_, e) in self.entries()? {
            let c = &mut s.counts;
            match e.state {
                State::Recording => c.recording += 1,
                State::Finalized => c.finalized += 1,
                State::Announced => c.announced += 1,
                State::Stored => c.stored += 1,
                State::Evicted => c.evicted += 1,
            }
            if e.state != State::Evicted {
                s.used_bytes += e.bytes();
            }
            if matches!(e.state, State::Finalized | State::Announced) {
                s.backlog_bytes += e.bytes();
                s.backlog_oldest_ms = Some(
                    s.backlog_oldest_ms
                        .map_or(e.created_ms, |o: i64| o.min(e.created_ms)),
                );
            }
        }
        Ok(s)
    }

    /// Reads, changes and writes one entry in one transaction. `f` returns the new entry (or None
    /// to leave the index unchanged).
    fn update(
        &self,
        id: &str,
        f: impl FnOnce(Option<Entry>) -> Option<Entry>,
    ) -> Result<(), CacheError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(RECORDINGS)?;
            let old = match table.get(id)? {
                Some(v) => Some(decode_entry(id, v.value())?),
                None => None,
            };
            if let Some(new) = f(old) {
                let mut buf = Vec::new();
                ciborium::into_writer(&new, &mut buf).map_err(|e| CacheError::Corrupt {
                    id: id.to_owned(),
                    reason: e.to_string(),
                })?;
                table.insert(id, buf.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// What the cache holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub counts: RecordingCounts,
    /// Everything the cache occupies, `held_bytes` included: what capacity, high-water mark,
    /// telemetry and the free-space check of a download count.
    pub used_bytes: u64,
    /// Recordings held for others and partial downloads (never evicted; in `used_bytes`).
    pub held_bytes: u64,
    pub backlog_bytes: u64,
    pub backlog_oldest_ms: Option<i64>,
}

fn decode_entry(id: &str, bytes: &[u8]) -> Result<Entry, CacheError> {
    ciborium::from_reader(bytes).map_err(|e| CacheError::Corrupt {
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapfleet_schemas::{FileEntry, RecordingKind, Sha256};

    fn manifest(id: &str) -> Manifest {
        let mut m = Manifest::new(id.to_owned(), RecordingKind::Call);
        for name in ["call.pcap", "audio.wav"] {
            m.files.push(FileEntry {
                name: name.to_owned(),
                size: 100,
                sha256: Sha256([1; 32]),
                content_type: "x".to_owned(),
            });
        }
        m
    }

    const ID: &str = "20240229T123456Z-deadbeef00010203";

    #[test]
    fn a_recording_walks_its_states_and_survives_reopen() -> Result<(), CacheError> {
        let dir = tempfile::tempdir().map_err(|source| CacheError::Io {
            path: PathBuf::new(),
            source,
        })?;
        {
            let c = Cache::open(dir.path())?;
            c.begin(ID, 1)?;
            assert_eq!(c.get(ID)?.map(|e| e.state), Some(State::Recording));
            // Evicting before stored never deletes.
            std::fs::create_dir_all(c.dir_of(ID)?).ok();
            c.evict(ID, 2)?;
            assert!(c.dir_of(ID)?.exists());
            c.finalize(manifest(ID), 3)?;
            assert_eq!(c.in_state(State::Finalized)?.len(), 1);
            assert_eq!(c.summary()?.backlog_bytes, 200);
            assert!(c.mark_announced(ID, 4)?);
            assert!(!c.mark_announced(ID, 4)?);
        }
        let c = Cache::open(dir.path())?;
        assert_eq!(c.get(ID)?.map(|e| e.state), Some(State::Announced));
        assert!(!c.mark_file_stored(ID, "call.pcap", 5)?);
        assert!(c.mark_file_stored(ID, "audio.wav", 6)?);
        assert!(c.mark_file_stored(ID, "audio.wav", 6)?, "idempotent");
        c.evict(ID, 7)?;
        assert!(!c.dir_of(ID)?.exists());
        assert_eq!(c.get(ID)?.map(|e| e.state), Some(State::Evicted));
        assert_eq!(c.summary()?.counts.evicted, 1);
        Ok(())
    }

    #[test]
    fn ids_that_are_not_recording_ids_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Cache::open(dir.path()).expect("open");
        assert!(matches!(c.begin("../x", 0), Err(CacheError::BadId(_))));
    }
}
