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
        assert!(c.incoming_path(ID, "../x").is_err());
        assert!(c.incoming_path("../x", "a").is_err());
        std::fs::create_dir_all(c.held_dir(ID)?).expect("mkdir");
        c.drop_held(ID)?;
        assert!(!c.held_dir(ID)?.exists());
        assert_eq!(c.held(ID)?, None);
        Ok(())
    }
}
