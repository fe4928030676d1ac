//! Recordings this edge holds for others: files the manager downloaded into the edge's local
//! storage (a job `to = edge:<this edge>`, or another edge's storage policy `edge:<this edge>`).
//! They are not this edge's recordings: never announced, never uploaded on the cache policy,
//! never evicted; only a job uploads (fetch back) or deletes them.
//!
//! Layout under the cache root:
//! ```text
//! held/<recording-id>/<file>                  complete, verified files (synced, then renamed)
//! held/.incoming/<recording-id>/<file>.part   a download in progress (kept across restarts:
//!                                             its length is where the download resumes)
//! ```
//! Index: the `held` table, recording id -> CBOR [`HeldEntry`] (each file's size and SHA-256).
//!
//! Invariants: a file is in the index only after its bytes hashed to the offered SHA-256, were
//! synced and renamed into `held/<id>/` and the folder synced; the `DownloadStored` reply is
//! sent only after the index committed it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tapfleet_schemas::{Sha256, is_recording_id};

use super::{Cache, CacheError};

const HELD: TableDefinition<&str, &[u8]> = TableDefinition::new("held");

/// One file of a held recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldFileEntry {
    pub size: u64,
    pub sha256: Sha256,
}

/// A recording held for others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldEntry {
    /// Unix ms of the first file held.
    pub created_ms: i64,
    pub files: BTreeMap<String, HeldFileEntry>,
}

impl HeldEntry {
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }
}

/// Whether `name` is safe as one path component of a held recording.
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl Cache {
    /// `held/`: recordings held for others.
    pub fn held_root(&self) -> PathBuf {
        self.root.join("held")
    }

    /// The folder of a held recording.
    pub fn held_dir(&self, id: &str) -> Result<PathBuf, CacheError> {
        if !is_recording_id(id) {
            return Err(CacheError::BadId(id.to_owned()));
        }
        Ok(self.held_root().join(id))
    }

    /// Where a download of `file` of `id` is written until it is verified.
    pub fn incoming_path(&self, id: &str, file: &str) -> Result<PathBuf, CacheError> {
        if !is_recording_id(id) {
            return Err(CacheError::BadId(id.to_owned()));
        }
        if !is_safe_file_name(file) {
            return Err(CacheError::BadId(file.to_owned()));
        }
        Ok(self
            .held_root()
            .join(".incoming")
            .join(id)
            .join(format!("{file}.part")))
    }

    /// A held recording's index entry.
    pub fn held(&self, id: &str) -> Result<Option<HeldEntry>, CacheError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(HELD) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match table.get(id)? {
            Some(v) => {
                ciborium::from_reader(v.value())
                    .map(Some)
                    .map_err(|e| CacheError::Corrupt {
                        id: id.to_owned(),
                        reason: e.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    /// Records a verified file in place (after it was synced and renamed into `held/<id>/`).
    pub fn hold_file(
        &self,
        id: &str,
        file: &str,
        size: u64,
        sha256: Sha256,
        now_ms: i64,
    ) -> Result<(), CacheError> {
        self.held_dir(id)?;
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(HELD)?;
            let mut e: HeldEntry = match table.get(id)? {
                Some(v) => ciborium::from_reader(v.value()).map_err(|e| CacheError::Corrupt {
                    id: id.to_owned(),
                    reason: e.to_string(),
                })?,
                None => HeldEntry {
                    created_ms: now_ms,
                    files: BTreeMap::new(),
                },
            };
            e.files
                .insert(file.to_owned(), HeldFileEntry { size, sha256 });
            let mut buf = Vec::new();
            ciborium::into_writer(&e, &mut buf).map_err(|err| CacheError::Corrupt {
                id: id.to_owned(),
                reason: err.to_string(),
            })?;
            table.insert(id, buf.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Bytes held for others: every indexed held file plus the partial downloads in
    /// `held/.incoming/` (on disk already). Counted in the cache's usage; never evicted.
    pub fn held_bytes(&self) -> Result<u64, CacheError> {
        let mut total = 0u64;
        let txn = self.db.begin_read()?;
        match txn.open_table(HELD) {
            Ok(table) => {
                for row in table.iter()? {
                    let (k, v) = row?;
                    let e: HeldEntry =
                        ciborium::from_reader(v.value()).map_err(|e| CacheError::Corrupt {
                            id: k.value().to_owned(),
                            reason: e.to_string(),
                        })?;
                    total = total.saturating_add(e.bytes());
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(total.saturating_add(partial_bytes(&self.held_root().join(".incoming"))))
    }

    /// Deletes a held recording's files, then its index entry.
    pub fn drop_held(&self, id: &str) -> Result<(), CacheError> {
        let dir = self.held_dir(id)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CacheError::Io { path: dir, source }),
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(HELD)?;
            table.remove(id)?;
        }
        txn.commit()?;
        Ok(())
    }
}

/// Sum of the file sizes in `incoming/<id>/` (0 when there is none; unreadable entries count 0:
/// a gauge, not a decision that could lose data).
fn partial_bytes(incoming: &std::path::Path) -> u64 {
    let Ok(ids) = std::fs::read_dir(incoming) else {
        return 0;
    };
    ids.flatten()
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flat_map(|files| files.flatten())
        .filter_map(|f| f.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "20240229T123456Z-deadbeef00010203";

    #[test]
    fn held_files_are_indexed_and_dropped() -> Result<(), CacheError> {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let c = Cache::open(dir.path())?;
            assert_eq!(c.held(ID)?, None);
            c.hold_file(ID, "call.pcap", 10, Sha256([1; 32]), 5)?;
            c.hold_file(ID, "manifest.json", 3, Sha256([2; 32]), 6)?;
        }
        let c = Cache::open(dir.path())?;
        let e = c.held(ID)?.expect("held");
        assert_eq!((e.created_ms, e.bytes(), e.files.len()), (5, 13, 2));
        // Held bytes and a partial download count as cache usage.
        let part = c.incoming_path(ID, "audio.wav")?;
        std::fs::create_dir_all(part.parent().expect("parent")).expect("mkdir");
        std::fs::write(&part, [0u8; 7]).expect("partial");
        assert_eq!(c.held_bytes()?, 20);
        let s = c.summary()?;
        assert_eq!((s.held_bytes, s.used_bytes), (20, 20));
        std::fs::remove_file(&part).expect("rm partial");
        assert!(c.incoming_path(ID, "../x").is_err());
        assert!(c.incoming_path("../x", "a").is_err());
        std::fs::create_dir_all(c.held_dir(ID)?).expect("mkdir");
        c.drop_held(ID)?;
        assert!(!c.held_dir(ID)?.exists());
        assert_eq!(c.held(ID)?, None);
        assert_eq!(c.summary()?.used_bytes, 0);
        Ok(())
    }

    #[test]
    fn held_bytes_fill_the_cache_but_only_own_stored_recordings_are_evicted()
    -> Result<(), CacheError> {
        use super::super::policy::to_evict;
        use tapfleet_schemas::{CacheConfig, FileEntry, Manifest, RecordingKind};
        const OWN: &str = "20240229T120000Z-deadbeef00010204";
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Cache::open(dir.path())?;
        let cfg = CacheConfig {
            capacity_bytes: 1000,
            high_water_percent: 80,
            ..CacheConfig::default()
        };
        c.begin(OWN, 1)?;
        let mut m = Manifest::new(OWN.to_owned(), RecordingKind::Call);
        m.files.push(FileEntry {
            name: "call.pcap".to_owned(),
            size: 100,
            sha256: Sha256([3; 32]),
            content_type: "x".to_owned(),
        });
        c.finalize(m, 2)?;
        c.mark_announced(OWN, 3)?;
        c.mark_file_stored(OWN, "call.pcap", 4)?;
        c.hold_file(ID, "call.pcap", 600, Sha256([1; 32]), 5)?;
        let s = c.summary()?;
        assert_eq!((s.used_bytes, s.held_bytes), (700, 600));
        let entries = c.entries()?;
        let by_id = || entries.iter().map(|(id, e)| (id.as_str(), e));
        assert!(
            to_evict(&cfg, by_id(), s.used_bytes, 10).is_empty(),
            "below 80 %"
        );
        c.hold_file(ID, "audio.wav", 200, Sha256([2; 32]), 6)?;
        let s = c.summary()?;
        assert_eq!(
            s.used_bytes, 900,
            "held bytes count toward the high-water mark"
        );
        assert_eq!(to_evict(&cfg, by_id(), s.used_bytes, 10), vec![OWN]);
        c.evict(OWN, 11)?;
        let s = c.summary()?;
        assert_eq!(
            (s.used_bytes, s.held_bytes),
            (800, 800),
            "the held recording stays"
        );
        assert!(c.held(ID)?.is_some());
        Ok(())
    }
}
