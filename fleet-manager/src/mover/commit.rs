//! Verified, atomic object writes into any target: the one write path of the mover (files,
//! empty files, `manifest.json`) and of the target tests.
//!
//! An [`AtomicWriter`] hashes every byte it writes; [`AtomicWriter::commit`] makes the object
//! visible at its final path only if the SHA-256 matches, and otherwise aborts so that nothing
//! is visible there. How "visible only when complete" is reached depends on the service
//! ([`CommitMode`]):
//! - [`CommitMode::Direct`]: the service itself publishes an object only when it is complete —
//!   S3/Azure/GCS (single PUT or multipart complete; an aborted multipart upload leaves
//!   nothing). The writer targets the final path.
//! - Local fs targets bypass OpenDAL for writes: [`crate::mover::direct`] writes with
//!   `O_DIRECT` into the target's temporary folder and renames on commit (reads, listing and
//!   deletes still go through the operator).
//! - [`CommitMode::TempRename`]: services whose writes land in place (SFTP) or whose PUT may
//!   not be atomic on every server (WebDAV): the writer targets a hidden sibling
//!   `.NAME.RANDOM.part`, which is renamed (SFTP posix-rename, WebDAV MOVE) onto the final path
//!   at commit and deleted on abort. A crash can leave such `.part` files behind, never a half
//!   object at a final path.
//!
//! [`AtomicWriter::open_prehashed`] is for a caller that already hashes exactly the bytes it
//! writes (the mover's transfer state machine): the writer then does not hash them a second
//! time, and the caller compares digests before [`AtomicWriter::commit`].
//!
//! Writes are buffered into [`WRITE_CHUNK`] parts (S3 needs parts of at least 5 MiB). Services
//! that take an object in one request only (WebDAV) get the whole size as their buffer, so
//! they hold the file in memory until commit.

use bytes::Bytes;
use opendal::{Operator, Writer};
use sha2::Digest;
use tapfleet_schemas::Sha256;

use super::direct::DirectFile;
use crate::targets::Target;

/// Size of the parts written to a target.
pub const WRITE_CHUNK: usize = 8 * 1024 * 1024;

/// How a service is made to publish only complete objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Write the final path; the service publishes on close only.
    Direct,
    /// Write a hidden temporary sibling and rename it at commit.
    TempRename,
}

/// The commit mode of an operator's service.
pub fn commit_mode(op: &Operator) -> CommitMode {
    let info = op.info();
    match info.scheme() {
        "fs" | "s3" | "azblob" | "gcs" | "oss" | "cos" | "obs" | "memory" => CommitMode::Direct,
        _ if info.capability().rename => CommitMode::TempRename,
        _ => CommitMode::Direct,
    }
}

/// Why a write did not commit. Nothing is visible at the final path after any of these.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("target write failed: {0}")]
    Write(opendal::Error),
    #[error("target file: {0}")]
    File(std::io::Error),
    #[error("target commit failed: {0}")]
    Commit(opendal::Error),
    #[error("sha256 mismatch: received {actual} but {expected} was expected")]
    Mismatch { expected: Sha256, actual: Sha256 },
    #[error("random temporary name: {0}")]
    Random(String),
}

/// Where the bytes go.
enum Sink {
    Dal(Writer),
    File(DirectFile),
}

/// One object being written: hashed as it goes, published by [`AtomicWriter::commit`].
pub struct AtomicWriter {
    op: Operator,
    path: String,
    tmp: Option<String>,
    sink: Sink,
    /// `None` when the caller hashes what it writes ([`AtomicWriter::open_prehashed`]).
    hasher: Option<sha2::Sha256>,
    written: u64,
}

impl std::fmt::Debug for AtomicWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicWriter")
            .field("path", &self.path)
            .field("tmp", &self.tmp)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

fn temp_sibling(path: &str) -> Result<String, CommitError> {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).map_err(|e| CommitError::Random(e.to_string()))?;
    let (dir, name) = match path.rsplit_once('/') {
        Some((d, n)) => (format!("{d}/"), n),
        None => (String::new(), path),
    };
    Ok(format!("{dir}.{name}.{}.part", hex::encode(r)))
}

impl AtomicWriter {
    /// Opens a writer for `path`; `size` (the expected object size) sizes the buffer of
    /// single-request services.
    pub async fn open(op: &Target, path: &str, size: u64) -> Result<Self, CommitError> {
        Self::open_with(op, path, size, Some(sha2::Sha256::new())).await
    }

    /// Like [`AtomicWriter::open`], for a caller that hashes exactly the bytes it writes and
    /// commits only when that digest matched: the writer does not hash them again, and
    /// [`AtomicWriter::commit`] publishes without a check of its own.
    pub async fn open_prehashed(op: &Target, path: &str, size: u64) -> Result<Self, CommitError> {
        Self::open_with(op, path, size, None).await
    }

    async fn open_with(
        target: &Target,
        path: &str,
        size: u64,
        hasher: Option<sha2::Sha256>,
    ) -> Result<Self, CommitError> {
        let op = target.op();
        if let Some(dirs) = target.local() {
            let file = DirectFile::create(dirs, path)
                .await
                .map_err(CommitError::File)?;
            return Ok(AtomicWriter {
                op: op.clone(),
                path: path.to_owned(),
                tmp: None,
                sink: Sink::File(file),
                hasher,
                written: 0,
            });
        }
        let tmp = match commit_mode(op) {
            CommitMode::Direct => None,
            CommitMode::TempRename => Some(temp_sibling(path)?),
        };
        let cap = op.info().capability();
        let chunk = if cap.write_can_multi {
            WRITE_CHUNK
        } else {
            usize::try_from(size).unwrap_or(usize::MAX).max(1)
        };
        let writer = op
            .writer_with(tmp.as_deref().unwrap_or(path))
            .chunk(chunk)
            .await
            .map_err(CommitError::Write)?;
        Ok(AtomicWriter {
            op: op.clone(),
            path: path.to_owned(),
            tmp,
            sink: Sink::Dal(writer),
            hasher,
            written: 0,
        })
    }

    /// The final path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends bytes (hashed here). On error the caller aborts.
    pub async fn write(&mut self, data: Vec<u8>) -> Result<(), CommitError> {
        self.write_bytes(Bytes::from(data)).await
    }

    /// Appends bytes without copying them (hashed here unless prehashed). On error the
    /// caller aborts.
    pub async fn write_bytes(&mut self, data: Bytes) -> Result<(), CommitError> {
        if let Some(h) = self.hasher.as_mut() {
            h.update(&data);
        }
        self.written += data.len() as u64;
        match &mut self.sink {
            Sink::Dal(w) => w.write(data).await.map_err(CommitError::Write),
            Sink::File(f) => f.write(&data).await.map_err(CommitError::File),
        }
    }

    /// Publishes the object at its final path if what was written hashes to `expected` (a
    /// prehashed writer: the caller checked that); otherwise aborts. Either way nothing
    /// partial is visible at the final path.
    pub async fn commit(mut self, expected: &Sha256) -> Result<(), CommitError> {
        if let Some(h) = self.hasher.take() {
            let actual = Sha256(h.finalize().into());
            if actual != *expected {
                self.abort().await;
                return Err(CommitError::Mismatch {
                    expected: *expected,
                    actual,
                });
            }
        }
        let mut writer = match self.sink {
            Sink::File(f) => return f.commit().await.map_err(CommitError::File),
            Sink::Dal(w) => w,
        };
        if let Err(e) = writer.close().await {
            self.sink = Sink::Dal(writer);
            self.abort().await;
            return Err(CommitError::Commit(e));
        }
        if let Some(tmp) = &self.tmp
            && let Err(e) = self.op.rename(tmp, &self.path).await
        {
            let _ = self.op.delete(tmp).await;
            return Err(CommitError::Commit(e));
        }
        Ok(())
    }

    /// Gives up: the service discards what was written (multipart abort, temp file removed).
    pub async fn abort(self) {
        let mut writer = match self.sink {
            Sink::File(f) => return f.abort().await,
            Sink::Dal(w) => w,
        };
        if let Err(e) = writer.abort().await {
            tracing::debug!(path = %self.path, error = %e, "writer abort");
        }
        if let Some(tmp) = &self.tmp
            && let Err(e) = self.op.delete(tmp).await
        {
            tracing::warn!(path = %tmp, error = %e, "temporary object not removed");
        }
    }
}

/// Writes `chunks` to `path` and publishes them only if they hash to `expected`. Returns the
/// number of bytes stored.
pub async fn write_verified<I>(
    op: &Target,
    path: &str,
    chunks: I,
    expected: &Sha256,
) -> Result<u64, CommitError>
where
    I: IntoIterator<Item = Vec<u8>>,
{
    let chunks: Vec<Vec<u8>> = chunks.into_iter().collect();
    let size = chunks.iter().map(|c| c.len() as u64).sum();
    let mut w = AtomicWriter::open(op, path, size).await?;
    for c in chunks {
        if let Err(e) = w.write(c).await {
            w.abort().await;
            return Err(e);
        }
    }
    w.commit(expected).await?;
    Ok(size)
}

/// The SHA-256 of some bytes.
pub fn sha256(data: &[u8]) -> Sha256 {
    Sha256(sha2::Sha256::digest(data).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_siblings() {
        let t = temp_sibling("a/b/call.pcap").expect("name");
        assert!(t.starts_with("a/b/.call.pcap."), "{t}");
        assert!(t.ends_with(".part"), "{t}");
        assert_ne!(t, temp_sibling("a/b/call.pcap").expect("name"));
        let t = temp_sibling("x").expect("name");
        assert!(t.starts_with(".x."), "{t}");
    }

    #[tokio::test]
    async fn fs_commit_and_mismatch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = crate::targets::ManagerConfig::default();
        let t = crate::targets::Targets::build(&cfg, dir.path()).expect("targets");
        let op = t.get("cloud").expect("cloud");
        assert_eq!(commit_mode(op), CommitMode::Direct);
        let data = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/captures/rtp-pcap/examples/SIP_DTMF2.pcap"
        ))
        .expect("capture");
        let chunks: Vec<Vec<u8>> = data.chunks(1000).map(<[u8]>::to_vec).collect();
        let n = write_verified(op, "r/a.pcap", chunks.clone(), &sha256(&data))
            .await
            .expect("stored");
        assert_eq!(n, data.len() as u64);
        let cloud = dir.path().join("targets/cloud");
        assert_eq!(std::fs::read(cloud.join("r/a.pcap")).expect("file"), data);
        let err = write_verified(op, "r/b.pcap", chunks, &sha256(b"other"))
            .await
            .expect_err("mismatch");
        assert!(matches!(err, CommitError::Mismatch { .. }), "{err}");
        assert!(!cloud.join("r/b.pcap").exists());
        // Nothing left in the atomic-write folder either.
        let tmp = dir.path().join("targets/.tmp-cloud");
        assert_eq!(std::fs::read_dir(tmp).expect("tmp dir").count(), 0);
    }

    #[tokio::test]
    async fn prehashed_writes_publish_on_commit_and_abort_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = crate::targets::ManagerConfig::default();
        let t = crate::targets::Targets::build(&cfg, dir.path()).expect("targets");
        let op = t.get("cloud").expect("cloud");
        let data = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/captures/rtp-pcap/examples/SIP_DTMF2.pcap"
        ))
        .expect("capture");
        let bytes = Bytes::from(data.clone());
        let size = data.len() as u64;
        let mut w = AtomicWriter::open_prehashed(op, "r/c.pcap", size)
            .await
            .expect("open");
        for at in (0..data.len()).step_by(700) {
            let part = bytes.slice(at..(at + 700).min(data.len()));
            w.write_bytes(part).await.expect("write");
        }
        assert_eq!(w.written(), size);
        w.commit(&sha256(&data)).await.expect("commit");
        let cloud = dir.path().join("targets/cloud");
        assert_eq!(std::fs::read(cloud.join("r/c.pcap")).expect("file"), data);
        let mut w = AtomicWriter::open_prehashed(op, "r/d.pcap", size)
            .await
            .expect("open");
        w.write_bytes(bytes).await.expect("write");
        w.abort().await;
        assert!(!cloud.join("r/d.pcap").exists());
        let tmp = dir.path().join("targets/.tmp-cloud");
        assert_eq!(std::fs::read_dir(tmp).expect("tmp dir").count(), 0);
    }
}
