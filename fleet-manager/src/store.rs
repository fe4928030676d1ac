//! The manager's durable state in one redb database (`DATA/manager.redb`).
//!
//! Tables (values are JSON unless said otherwise, so they can be read with any tool):
//! - `edges`: edge id -> [`EdgeRecord`] (edge ids are unique across tenants: they are MQTT user names)
//! - `credentials`: MQTT user name (edge id) -> [`EdgeCredential`]: salted SHA-256
//!   (`sha256:salt:hash`, never the password) and the tenant the broker confines the edge to
//! - `claim_tokens`: SHA-256 hex of a claim token -> [`ClaimToken`] (never the token)
//! - `configs`: (edge id, version) -> `DesiredConfig` (CBOR), every version kept
//! - `recordings`: recording id -> [`RecordingEntry`]
//! - `manifests`: recording id -> `Manifest` (CBOR, as received)
//! - `transfers`: transfer id -> [`TransferRecord`] (transfers in progress)
//! - `counters`: name -> u64 (transfer and job ids, unique across restarts)
//! - `revoked_edges`: edge id -> when it was revoked (Unix ms); see [`crate::revoke`]
//! - `jobs`: job id -> [`crate::jobs::JobRecord`] (user jobs: upload, move, copy, delete, fetch)
//! - `config_layers`, `config_versions`: config layers and who changed each version
//!   ([`crate::config_api`]); `alerts`: raised and cleared alerts ([`crate::alerting`])
//! - `rec_idx_*`: the search indexes of the recordings ([`crate::search`]), written in the same
//!   transaction as the entry; `users`, `sessions`, `api_tokens`, `audit`: [`crate::auth`]
//! - `telemetry`: (edge id, minute) -> the edge's telemetry sample of that minute, the last 24 h
//!   ([`crate::telemetry`]; written once a minute, not per sample)
//!
//! Every call is one transaction. redb commits are durable (fsync) before a call returns, so an
//! ack is only published after what it acknowledges is on disk.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tapfleet_schemas::{DesiredConfig, Manifest};

use crate::catalog::{Location, RecordingEntry, RecordingState};

const EDGES: TableDefinition<&str, &[u8]> = TableDefinition::new("edges");
const CREDENTIALS: TableDefinition<&str, &str> = TableDefinition::new("credentials");
const CLAIM_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("claim_tokens");
const CONFIGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("configs");
const RECORDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("recordings");
const MANIFESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("manifests");
const TRANSFERS: TableDefinition<u64, &[u8]> = TableDefinition::new("transfers");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Revoked edge id -> when (Unix ms). Its own table, so no edge record update can undo it.
const REVOKED: TableDefinition<&str, i64> = TableDefinition::new("revoked_edges");
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    #[error("corrupt {what} record: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("cannot encode {0}")]
    Encode(String),
}

fn dbr<T, E: Into<redb::Error>>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Db(e.into()))
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Encode(e.to_string()))
}

fn from_json<T: DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

/// An enrolled edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeRecord {
    pub edge_id: String,
    pub tenant: String,
    pub hostname: String,
    /// SHA-256 hex of the claim token it enrolled with (re-enrolling with it returns this edge).
    pub claim_digest: String,
    pub software_version: String,
    pub enrolled_ms: i64,
    pub online: bool,
    pub reported_config_version: Option<u64>,
    pub config_error: Option<String>,
    pub last_seen_ms: Option<i64>,
}

/// An edge's MQTT credential: the broker lets it into its tenant's namespace only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeCredential {
    /// `sha256:salt:hash` of the password.
    pub hash: String,
    pub tenant: String,
}

/// A claim token (by digest). Validity rules: [`crate::tokens`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimToken {
    pub tenant: String,
    pub created_ms: i64,
    /// Unusable from this time on (Unix ms); none: never expires.
    #[serde(default)]
    pub expires_ms: Option<i64>,
    /// How many new edges may enroll with it; none: no limit.
    #[serde(default)]
    pub max_uses: Option<u64>,
    /// New edges enrolled with it so far.
    #[serde(default)]
    pub uses: u64,
    /// When it was revoked.
    #[serde(default)]
    pub revoked_ms: Option<i64>,
}

/// A transfer in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecord {
    pub transfer_id: u64,
    pub tenant: String,
    pub edge_id: String,
    pub recording_id: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub target: String,
    pub path: String,
}

/// What [`Store::upsert_manifest`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Upsert {
    /// A new entry.
    New(RecordingEntry),
    /// The recording was already in the catalog (nothing changed).
    Duplicate(RecordingEntry),
    /// The recording id belongs to another edge.
    Conflict { owner: String },
}

/// The manager's database.
pub struct Store {
    db: Database,
    /// The edges' recent telemetry, loaded from the `telemetry` table at open (see
    /// [`crate::telemetry`]).
    pub telemetry: crate::telemetry::TelemetryLog,
}

impl Store {
    /// Opens (or creates) the database and its tables.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let database = dbr(Database::create(path))?;
        let tx = dbr(database.begin_write())?;
        {
            dbr(tx.open_table(EDGES))?;
            dbr(tx.open_table(CREDENTIALS))?;
            dbr(tx.open_table(CLAIM_TOKENS))?;
            dbr(tx.open_table(CONFIGS))?;
            dbr(tx.open_table(RECORDINGS))?;
            dbr(tx.open_table(MANIFESTS))?;
            dbr(tx.open_table(TRANSFERS))?;
            dbr(tx.open_table(COUNTERS))?;
            dbr(tx.open_table(REVOKED))?;
            dbr(tx.open_table(JOBS))?;
        }
        let index_empty = crate::search::create_tables(&tx)?;
        dbr(tx.commit())?;
        let store = Store {
            db: database,
            telemetry: Default::default(),
        };
        let samples = crate::telemetry::load(&store, crate::fleet::now_ms())?;
        if samples > 0 {
            tracing::info!(samples, "telemetry history loaded");
        }
        if index_empty && !store.all_str(RECORDINGS)?.is_empty() {
            let n = store.rebuild_search_index()?;
            tracing::info!(recordings = n, "search index rebuilt");
        }
        Ok(store)
    }

    /// The database, for modules that keep their own tables in it (auth, search).
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Inserts catalog entries (and their index rows) in one transaction, replacing entries with
    /// the same ids: bulk loading (imports, benchmarks).
    pub fn insert_entries(&self, entries: &[RecordingEntry]) -> Result<(), StoreError> {
        let tx = dbr(self.db.begin_write())?;
        {
            let mut recs = dbr(tx.open_table(RECORDINGS))?;
            for e in entries {
                if let Some(old) =
                    dbr(recs.get(e.recording_id.as_str()))?.map(|v| v.value().to_vec())
                {
                    crate::search::unindex(&tx, &from_json("recording", &old)?)?;
                }
                dbr(recs.insert(e.recording_id.as_str(), to_json(e)?.as_slice()))?;
                crate::search::index(&tx, e)?;
            }
        }
        dbr(tx.commit())
    }

    /// Increments the counter `name` and returns its new value (first is 1).
    pub fn next_id(&self, name: &str) -> Result<u64, StoreError> {
        let tx = dbr(self.db.begin_write())?;
        let n = {
            let mut t = dbr(tx.open_table(COUNTERS))?;
            let n = dbr(t.get(name))?.map(|v| v.value()).unwrap_or(0) + 1;
            dbr(t.insert(name, n))?;
            n
        };
        dbr(tx.commit())?;
        Ok(n)
    }

    fn get_bytes_str(
        &self,
        def: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = dbr(self.db.begin_read())?;
        let t = dbr(tx.open_table(def))?;
        Ok(dbr(t.get(key))?.map(|v| v.value().to_vec()))
    }

    fn put_bytes_str(
        &self,
        def: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let tx = dbr(self.db.begin_write())?;
        {
            let mut t = dbr(tx.open_table(def))?;
            dbr(t.insert(key, value))?;
        }
        dbr(tx.commit())
    }

    fn all_str(&self, def: TableDefinition<&str, &[u8]>) -> Result<Vec<Vec<u8>>, StoreError> {
        let tx = dbr(self.db.begin_read())?;
        let t = dbr(tx.open_table(def))?;
        let mut out = Vec::new();
        for row in dbr(t.iter())? {
            let (_, v) = dbr(row)?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    // ---- edges

    pub fn edge(&self, edge_id: &str) -> Result<Option<EdgeRecord>, StoreError> {
        self.get_bytes_str(EDGES, edge_id)?
            .map(|b| from_json("edge", &b))
            .transpose()
    }

    pub fn put_edge(&self, e: &EdgeRecord) -> Result<(), StoreError> {
        self.put_bytes_str(EDGES, &e.edge_id, &to_json(e)?)
    }

    pub fn edges(&self) -> Result<Vec<EdgeRecord>, StoreError> {
        self.all_str(EDGES)?
            .iter()
            .map(|b| from_json("edge", b))
            .collect()
    }

    // ---- credentials

    pub fn put_credential(&self, username: &str, cred: &EdgeCredential) -> Result<(), StoreError> {
        let json =
            String::from_utf8(to_json(cred)?).map_err(|e| StoreError::Encode(e.to_string()))?;
        let tx = dbr(self.db.begin_write())?;
        {
            let mut t = dbr(tx.open_table(CREDENTIALS))?;
            dbr(t.insert(username, json.as_str()))?;
        }
        dbr(tx.commit())
    }

    /// Every edge credential. A row from before tenants were kept with the credential (a bare
    /// hash) takes the tenant of its edge record, or is skipped (logged) without one.
    pub fn credentials(&self) -> Result<Vec<(String, EdgeCredential)>, StoreError> {
        let rows = {
            let tx = dbr(self.db.begin_read())?;
            let t = dbr(tx.open_table(CREDENTIALS))?;
            let mut rows = Vec::new();
            for row in dbr(t.iter())? {
                let (k, v) = dbr(row)?;
                rows.push((k.value().to_owned(), v.value().to_owned()));
            }
            rows
        };
        let mut out = Vec::with_capacity(rows.len());
        for (user, value) in rows {
            if value.starts_with('{') {
                out.push((user, from_json("credential", value.as_bytes())?));
            } else if let Some(e) = self.edge(&user)? {
                out.push((
                    user,
                    EdgeCredential {
                        hash: value,
                        tenant: e.tenant,
                    },
                ));
            } else {
                tracing::warn!(%user, "credential without a tenant skipped");
            }
        }
        Ok(out)
    }

    // ---- revoked edges

    /// Revokes an edge for good; returns when it was revoked (the first time).
    pub fn revoke_edge(&self, edge_id: &str, now_ms: i64) -> Result<i64, StoreError> {
        let tx = dbr(self.db.begin_write())?;
        let when = {
            let mut t = dbr(tx.open_table(REVOKED))?;
            let old = dbr(t.get(edge_id))?.map(|v| v.value());
            match old {
                Some(ms) => ms,
                None => {
                    dbr(t.insert(edge_id, now_ms))?;
                    now_ms
                }
            }
        };
        dbr(tx.commit())?;
        Ok(when)
    }

    /// Revoked edge ids and when.
    pub fn revoked_edges(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let tx = dbr(self.db.begin_read())?;
        let t = dbr(tx.open_table(REVOKED))?;
        let mut out = Vec::new();
        for row in dbr(t.iter())? {
            let (k, v) = dbr(row)?;
            out.push((k.value().to_owned(), v.value()));
        }
        Ok(out)
    }

    // ---- claim tokens

    pub fn claim(&self, digest: &str) -> Result<Option<ClaimToken>, StoreError> {
        self.get_bytes_str(CLAIM_TOKENS, digest)?
            .map(|b| from_json("claim token", &b))
            .transpose()
    }

    pub fn put_claim(&self, digest: &str, c: &ClaimToken) -> Result<(), StoreError> {
        self.put_bytes_str(CLAIM_TOKENS, digest, &to_json(c)?)
    }

    /// Every claim token with its digest.
    pub fn claims(&self) -> Result<Vec<(String, ClaimToken)>, StoreError> {
        let tx = dbr(self.db.begin_read())?;
        let t = dbr(tx.open_table(CLAIM_TOKENS))?;
        let mut out = Vec::new();
        for row in dbr(t.iter())? {
            let (k, v) = dbr(row)?;
            out.push((k.value().to_owned(), from_json("claim token", v.value())?));
        }
        Ok(out)
    }

    pub fn claim_digests(&self) -> Result<Vec<String>, StoreError> {
        let tx = dbr(self.db.begin_read())?;
        let t = dbr(tx.open_table(CLAIM_TOKENS))?;
        let mut out = Vec::new();
        for row in dbr(t.iter())? {
            let (k, _) = dbr(row)?;
            out.push(k.value().to_owned());
        }
        Ok(out)
    }

    // ---- configs

    /// Stores a new version of an edge's desired config.
    pub fn put_config(&self, edge_id: &str, c: &DesiredConfig) -> Result<(), StoreError> {
        let bytes = tapfleet_schemas::encode(c).map_err(|e| StoreError::Encode(e.to_string()))?;
        let tx = dbr(self.db.begin_write())?;
        {
            let mut t = dbr(tx.open_table(CONFIGS))?;
            dbr(t.insert((edge_id, c.version), bytes.as_slice()))?;
        }
        dbr(tx.commit())
    }

    /// Stores new desired configs of several edges and whatever `also` writes (e.g. who made
    /// the change), in one transaction.
    pub fn put_configs(
        &self,
        configs: &[(String, DesiredConfig)],
        also: impl FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let tx = dbr(self.db.begin_write())?;
        {
            let mut t = dbr(tx.open_table(CONFIGS))?;
            for (edge_id, c) in configs {
                let bytes =
                    tapfleet_schemas::encode(c).map_err(|e| StoreError::Encode(e.to_string()))?;
                dbr(t.insert((edge_id.as_str(), c.version), bytes.as_slice()))?;
            }
        }
        also(&tx)?;
        dbr(tx.commit())
    }

    /// Every stored version of an edge's desired config, oldest first.
    pub fn configs(&self, edge_id: &str) -> Result<Vec<DesiredConfig>, StoreError> {
        let tx = dbr(self.db.begin_read())?;
        let t = dbr(tx.open_table(CONFIGS))?;
        let mut out = Vec::new();
        for row in dbr(t.range((edge_id, 0)..=(edge_id, u64::MAX)))? {
            let (_, v) = dbr(row)?;
            out.push(
                tapfleet_schemas::decode::<DesiredConfig>(v.value()).map_err(|e| {
                    StoreError::Corrupt {
                        what: "config",
                        reason: e.to_string(),
                    }
                })?,
            );
        }
        Ok(out)
    }

    /// The newest desired config of an edge.
    pub fn latest_config(&self, edge_id: &str) -> Result<Option<DesiredConfig>, StoreError> {
        let tx = dbr(self.db.begin_read())?;
        let t = dbr(tx.open_table(CONFIGS))?;
        let mut range = dbr(t.range((edge_id, 0)..=(edge_id, u64::MAX)))?;
        match range.next_back() {
            Some(row) => {
                let (_, v) = dbr(row)?;
                tapfleet_schemas::decode::<DesiredConfig>(v.value())
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        what: "config",
                        reason: e.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    // ---- recordings

    /// Adds a manifest to the catalog unless its recording is already there (idempotent).
    pub fn upsert_manifest(
        &self,
        m: &Manifest,
        tenant: &str,
        edge_id: &str,
    ) -> Result<Upsert, StoreError> {
        let tx = dbr(self.db.begin_write())?;
        let out = {
            let mut recs = dbr(tx.open_table(RECORDINGS))?;
            let existing = dbr(recs.get(m.recording_id.as_str()))?.map(|v| v.value().to_vec());
            match existing {
                Some(b) => {
                    let e: RecordingEntry = from_json("recording", &b)?;
                    if e.edge_id != edge_id || e.tenant != tenant {
                        Upsert::Conflict { owner: e.edge_id }
                    } else {
                        Upsert::Duplicate(e)
                    }
                }
                None => {
                    let e = RecordingEntry::from_manifest(m, tenant, edge_id);
                    dbr(recs.insert(m.recording_id.as_str(), to_json(&e)?.as_slice()))?;
                    crate::search::index(&tx, &e)?;
                    let cbor = tapfleet_schemas::encode(m)
                        .map_err(|e| StoreError::Encode(e.to_string()))?;
                    let mut mans = dbr(tx.open_table(MANIFESTS))?;
                    dbr(mans.insert(m.recording_id.as_str(), cbor.as_slice()))?;
                    Upsert::New(e)
                }
            }
        };
        match out {
            Upsert::New(_) => dbr(tx.commit())?,
            _ => dbr(tx.abort())?,
        }
        Ok(out)
    }

    pub fn recording(&self, id: &str) -> Result<Option<RecordingEntry>, StoreError> {
        self.get_bytes_str(RECORDINGS, id)?
            .map(|b| from_json("recording", &b))
            .transpose()
    }

    /// Every recording, in recording id (time) order.
    pub fn recordings(&self) -> Result<Vec<RecordingEntry>, StoreError> {
        self.all_str(RECORDINGS)?
            .iter()
            .map(|b| from_json("recording", b))
            .collect()
    }

    pub fn manifest(&self, id: &str) -> Result<Option<Manifest>, StoreError> {
        self.get_bytes_str(MANIFESTS, id)?
            .map(|b| {
                tapfleet_schemas::decode::<Manifest>(&b).map_err(|e| StoreError::Corrupt {
                    what: "manifest",
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// Applies `f` to a recording in one transaction and returns the updated entry.
    pub fn update_recording(
        &self,
        id: &str,
        f: impl FnOnce(&mut RecordingEntry),
    ) -> Result<Option<RecordingEntry>, StoreError> {
        let tx = dbr(self.db.begin_write())?;
        let out = {
            let mut recs = dbr(tx.open_table(RECORDINGS))?;
            let existing = dbr(recs.get(id))?.map(|v| v.value().to_vec());
            match existing {
                Some(b) => {
                    let mut e: RecordingEntry = from_json("recording", &b)?;
                    f(&mut e);
                    dbr(recs.insert(id, to_json(&e)?.as_slice()))?;
                    Some(e)
                }
                None => None,
            }
        };
        dbr(tx.commit())?;
        Ok(out)
    }

    /// Records a stored file's location.
    pub fn add_location(
        &self,
        id: &str,
        file: &str,
        loc: Location,
    ) -> Result<Option<RecordingEntry>, StoreError> {
        self.update_recording(id, |e| {
            e.add_location(file, loc);
        })
    }

    /// Records where `manifest.json` is and marks the recording stored.
    pub fn mark_stored(
        &self,
        id: &str,
        loc: Location,
    ) -> Result<Option<RecordingEntry>, StoreError> {
        self.update_recording(id, |e| {
            if !e.manifest_locations.contains(&loc) {
                e.manifest_locations.push(loc);
            }
            e.state = RecordingState::Stored;
        })
    }

    // ---- jobs

    pub fn put_job(&self, j: &crate::jobs::JobRecord) -> Result<(), StoreError> {
        let tx = dbr(self.db.begin_write())?;
        {
            let mut tab = dbr(tx.open_table(JOBS))?;
            dbr(tab.insert(j.id, to_json(j)?.as_slice()))?;
        }
        dbr(tx.commit())
    }

    pub fn job(&self, id: u64) -> Result<Option<crate::jobs::JobRecord>, StoreError> {
        let tx = dbr(self.db.begin_read())?;
        let t = dbr(tx.open_table(JOBS))?;
        dbr(t.get(id))?
            .map(|v| from_json("job", v.value()))
            .transpose()
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Result<Vec<crate::jobs::JobRecord>, StoreError> {
        let tx = dbr(self.db.begin_read())?;
        let t = dbr(tx.open_table(JOBS))?;
        let mut out = Vec::new();
        for row in dbr(t.iter())? {
            let (_, v) = dbr(row)?;
            out.push(from_json("job", v.value())?);
        }
        Ok(out)
    }

    // ---- transfers

    pub fn put_transfer(&self, t: &TransferRecord) -> Result<(), StoreError> {
        let tx = dbr(self.db.begin_write())?;
        {
            let mut tab = dbr(tx.open_table(TRANSFERS))?;
            dbr(tab.insert(t.transfer_id, to_json(t)?.as_slice()))?;
        }
        dbr(tx.commit())
    }

    pub fn transfer(&self, id: u64) -> Result<Option<TransferRecord>, StoreError> {
        let tx = dbr(self.db.begin_read())?;
        let t = dbr(tx.open_table(TRANSFERS))?;
        dbr(t.get(id))?
            .map(|v| from_json("transfer", v.value()))
            .transpose()
    }

    pub fn remove_transfer(&self, id: u64) -> Result<(), StoreError> {
        let tx = dbr(self.db.begin_write())?;
        {
            let mut t = dbr(tx.open_table(TRANSFERS))?;
            dbr(t.remove(id))?;
        }
        dbr(tx.commit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapfleet_schemas::{EdgeConfig, FileEntry, RecordingKind, Sha256};

    fn manifest() -> Manifest {
        let mut m = Manifest::new(
            "20240229T123456Z-deadbeef00010203".into(),
            RecordingKind::Call,
        );
        m.start_ns = 1_709_210_096_000_000_000;
        m.files.push(FileEntry {
            name: "call.pcap".into(),
            size: 10,
            sha256: Sha256([1; 32]),
            content_type: "application/vnd.tcpdump.pcap".into(),
        });
        m
    }

    #[test]
    fn manifests_are_upserted_once_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("m.redb");
        {
            let s = Store::open(&p).expect("open");
            assert!(matches!(
                s.upsert_manifest(&manifest(), "t", "e1"),
                Ok(Upsert::New(_))
            ));
            assert!(matches!(
                s.upsert_manifest(&manifest(), "t", "e1"),
                Ok(Upsert::Duplicate(_))
            ));
            assert!(matches!(
                s.upsert_manifest(&manifest(), "t", "e2"),
                Ok(Upsert::Conflict { .. })
            ));
            let loc = Location {
                target: "cloud".into(),
                path: "x".into(),
            };
            let e = s.add_location(&manifest().recording_id, "call.pcap", loc.clone());
            assert!(e.expect("ok").expect("exists").all_stored_in("cloud"));
            assert_eq!(s.next_id("transfer").expect("id"), 1);
            assert_eq!(s.next_id("transfer").expect("id"), 2);
            s.put_config("e1", &DesiredConfig::new(1, EdgeConfig::default()))
                .expect("config");
            s.put_config("e1", &DesiredConfig::new(2, EdgeConfig::default()))
                .expect("config");
        }
        let s = Store::open(&p).expect("reopen");
        assert_eq!(s.recordings().expect("list").len(), 1);
        assert_eq!(s.next_id("transfer").expect("id"), 3);
        assert_eq!(
            s.latest_config("e1").expect("cfg").map(|c| c.version),
            Some(2)
        );
        assert_eq!(s.latest_config("e10").expect("cfg"), None);
        assert_eq!(
            s.manifest(&manifest().recording_id).expect("m"),
            Some(manifest())
        );
    }
}
