//! Layered edge configs, wired to the store, the broker and HTTP: the layers themselves
//! (`config_layers` table: `defaults`, `group/NAME`, `edge/ID` -> [`LayerRecord`] JSON), who
//! made each version (`config_versions`: (edge id, version) -> [`VersionMeta`] JSON; the configs
//! themselves are in the store's `configs` table), the HTTP routes and the
//! `tapfleet-manager config` CLI. The merge and validation rules are pure, in
//! [`crate::config_layers`].
//!
//! A change of any layer recomputes the effective config of every edge it reaches; if one of them
//! is invalid, nothing changes (400 naming the field and the edge). Each edge whose effective
//! config differs gets the next version (monotonic per edge), stored with the layer in one
//! transaction, then published retained on its config topic.
//!
//! - `GET|PUT /api/v1/config/defaults` (body: partial config, JSON or TOML)
//! - `GET /api/v1/config/groups`; `GET|PUT /api/v1/config/groups/{name}` (body:
//!   `{"members": [edge ids], "config": {...}}`; `members` absent: unchanged)
//! - `GET|PUT /api/v1/edges/{id}/config` (the edge's own overrides); `PUT` answers
//!   `{"edge_id", "version", "edge": EdgeConfig, "changed": [{edge_id, version}]}`
//! - `POST /api/v1/config/validate[?edge=ID]` (body: partial config) -> 200 `{"valid": true,
//!   "effective": ...}` or 400 `{"valid": false, "error": "...", "errors": [{path, message}]}`
//! - `GET /api/v1/edges/{id}/config/effective` -> desired and reported version side by side
//! - `GET /api/v1/edges/{id}/config/history` -> every version, newest first, with who and when

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tapfleet_schemas::{Channel, DesiredConfig, EdgeConfig, Topic};

use crate::config_layers::{self, Context, Doc, FieldError, Layers};
use crate::mqtt::Outbox;
use crate::store::{Store, StoreError};

const LAYERS: TableDefinition<&str, &[u8]> = TableDefinition::new("config_layers");
const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("config_versions");

/// Actor recorded when nobody authenticated made the change.
pub const NO_ACTOR: &str = "-";

/// One layer as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The fields this layer sets.
    pub config: Doc,
    /// Groups only: the edges in the group.
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub updated_ms: i64,
    #[serde(default)]
    pub updated_by: String,
}

/// Who made a config version, when, and which layer change caused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub actor: String,
    pub at_ms: i64,
    /// `defaults`, `group/NAME`, `edge/ID` or `enrollment`.
    pub cause: String,
}

/// Which layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerKey {
    Defaults,
    Group(String),
    Edge(String),
}

impl LayerKey {
    fn key(&self) -> String {
        match self {
            LayerKey::Defaults => "defaults".to_owned(),
            LayerKey::Group(g) => format!("group/{g}"),
            LayerKey::Edge(e) => format!("edge/{e}"),
        }
    }
}

/// Why a config request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigApiError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a change did.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The edges that got a new version (edges whose effective config did not change are left).
    pub changed: Vec<ChangedEdge>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChangedEdge {
    pub edge_id: String,
    pub version: u64,
}

fn dbr<T, E: Into<redb::Error>>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Db(e.into()))
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Encode(e.to_string()))
}

fn unjson<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt {
        what: "config layer",
        reason: e.to_string(),
    })
}

/// Every stored layer by key.
fn load_layers(store: &Store) -> Result<BTreeMap<String, LayerRecord>, StoreError> {
    let tx = dbr(store.db().begin_read())?;
    let t = match tx.open_table(LAYERS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
        Err(e) => return Err(StoreError::Db(e.into())),
    };
    let mut out = BTreeMap::new();
    for row in dbr(t.iter())? {
        let (k, v) = dbr(row)?;
        out.insert(k.value().to_owned(), unjson(v.value())?);
    }
    Ok(out)
}

/// The effective config of `edge` under `layers`.
fn effective_in(
    layers: &BTreeMap<String, LayerRecord>,
    edge: &str,
    ctx: Context<'_>,
) -> Result<EdgeConfig, Vec<FieldError>> {
    let empty = Doc::new();
    let defaults = layers.get("defaults").map_or(&empty, |l| &l.config);
    let groups: Vec<(&str, &Doc)> = layers
        .iter()
        .filter_map(|(k, l)| {
            let name = k.strip_prefix("group/")?;
            l.members
                .iter()
                .any(|m| m == edge)
                .then_some((name, &l.config))
        })
        .collect();
    let own = layers
        .get(&LayerKey::Edge(edge.to_owned()).key())
        .map_or(&empty, |l| &l.config);
    let cfg = config_layers::effective(
        Layers {
            defaults,
            groups: &groups,
            edge: own,
        },
        ctx,
    )?;
    // A relay into the recording edge itself would hold the only copy where it already is.
    if !edge.is_empty() && cfg.storage.target.strip_prefix("edge:") == Some(edge) {
        return Err(vec![FieldError::new(
            "storage.target",
            format!(
                "\"edge:{edge}\" is this edge itself: use \"{}\" to keep recordings on it",
                config_layers::EDGE_LOCAL
            ),
        )]);
    }
    Ok(cfg)
}

/// The first config of a newly enrolled edge (version 1: its layers as they are now), stored.
/// Layers that no longer validate fall back to the built-in defaults (logged).
pub fn initial_config(
    store: &Store,
    edge_id: &str,
    now_ms: i64,
) -> Result<DesiredConfig, StoreError> {
    let layers = load_layers(store)?;
    let edge = effective_in(&layers, edge_id, Context::default()).unwrap_or_else(|errors| {
        tracing::error!(edge = %edge_id, ?errors, "config layers invalid for a new edge; built-in defaults used");
        EdgeConfig::default()
    });
    let c = DesiredConfig::new(1, edge);
    let meta = VersionMeta {
        actor: "enrollment".to_owned(),
        at_ms: now_ms,
        cause: "enrollment".to_owned(),
    };
    store.put_configs(&[(edge_id.to_owned(), c.clone())], |tx| {
        let mut t = dbr(tx.open_table(VERSIONS))?;
        dbr(t.insert((edge_id, 1), json(&meta)?.as_slice()))?;
        Ok(())
    })?;
    Ok(c)
}

/// The config service: layers, versions, publishing.
#[derive(Clone)]
pub struct ConfigService {
    pub store: Arc<Store>,
    outbox: Outbox,
    targets: Vec<String>,
    /// One change at a time, so versions are computed from the newest.
    lock: Arc<Mutex<()>>,
}

impl ConfigService {
    /// `targets`: the manager's storage target names (`storage.target` must be one, or
    /// `edge-local`).
    pub fn new(store: Arc<Store>, outbox: Outbox, targets: Vec<String>) -> Self {
        ConfigService {
            store,
            outbox,
            targets,
            lock: Arc::new(Mutex::new(())),
        }
    }

    fn ctx(&self) -> Context<'_> {
        Context {
            targets: &self.targets,
        }
    }

    /// One layer (none: never set).
    pub fn layer(&self, key: &LayerKey) -> Result<Option<LayerRecord>, StoreError> {
        Ok(load_layers(&self.store)?.remove(&key.key()))
    }

    /// Every group by name.
    pub fn groups(&self) -> Result<Vec<(String, LayerRecord)>, StoreError> {
        Ok(load_layers(&self.store)?
            .into_iter()
            .filter_map(|(k, l)| Some((k.strip_prefix("group/")?.to_owned(), l)))
            .collect())
    }

    /// Checks `doc` as the given layer (defaults when none), without changing anything.
    pub fn validate(&self, key: &LayerKey, doc: Doc) -> Result<EdgeConfig, ConfigApiError> {
        let mut layers = load_layers(&self.store)?;
        let mut rec = layers.remove(&key.key()).unwrap_or_default();
        rec.config = doc;
        layers.insert(key.key(), rec);
        let edge = match key {
            LayerKey::Edge(e) => e.clone(),
            LayerKey::Group(g) => layers
                .get(&key.key())
                .and_then(|l| l.members.first().cloned())
                .unwrap_or_else(|| format!("\0group {g}")),
            LayerKey::Defaults => String::new(),
        };
        effective_in(&layers, &edge, self.ctx()).map_err(ConfigApiError::Invalid)
    }

    /// Replaces one layer (for a group, `members` none keeps its members), recomputes every
    /// edge's config and publishes the ones that changed.
    pub fn set_layer(
        &self,
        key: LayerKey,
        doc: Doc,
        members: Option<Vec<String>>,
        actor: &str,
        now_ms: i64,
    ) -> Result<Change, ConfigApiError> {
        let errors = config_layers::check_doc(&doc);
        if !errors.is_empty() {
            return Err(ConfigApiError::Invalid(errors));
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let edges = self.store.edges()?;
        if let LayerKey::Edge(id) = &key
            && !edges.iter().any(|e| &e.edge_id == id)
        {
            return Err(ConfigApiError::NotFound(format!("no edge {id:?}")));
        }
        let mut layers = load_layers(&self.store)?;
        let mut rec = layers.remove(&key.key()).unwrap_or_default();
        rec.config = doc;
        if let Some(m) = members {
            rec.members = m;
        }
        rec.updated_ms = now_ms;
        rec.updated_by = actor.to_owned();
        layers.insert(key.key(), rec.clone());

        let mut errors = Vec::new();
        let mut new = Vec::new();
        for e in &edges {
            match effective_in(&layers, &e.edge_id, self.ctx()) {
                Ok(cfg) => {
                    let latest = self.store.latest_config(&e.edge_id)?;
                    if latest.as_ref().map(|c| &c.edge) != Some(&cfg) {
                        let version = latest.map_or(0, |c| c.version) + 1;
                        new.push((
                            e.edge_id.clone(),
                            e.tenant.clone(),
                            DesiredConfig::new(version, cfg),
                        ));
                    }
                }
                Err(es) => errors.extend(es.into_iter().map(|mut fe| {
                    fe.message = format!("{} (edge {})", fe.message, e.edge_id);
                    fe
                })),
            }
        }
        // A layer that reaches no edge is still checked on its own.
        if (edges.is_empty() || matches!(&key, LayerKey::Group(_) if rec.members.is_empty()))
            && let Err(es) = effective_in(&layers, "", self.ctx())
        {
            errors.extend(es);
        }
        if !errors.is_empty() {
            errors.dedup();
            return Err(ConfigApiError::Invalid(errors));
        }
        let configs: Vec<(String, DesiredConfig)> =
            new.iter().map(|(e, _, c)| (e.clone(), c.clone())).collect();
        let meta = VersionMeta {
            actor: actor.to_owned(),
            at_ms: now_ms,
            cause: key.key(),
        };
        let layer_key = key.key();
        self.store.put_configs(&configs, |tx| {
            let mut l = dbr(tx.open_table(LAYERS))?;
            dbr(l.insert(layer_key.as_str(), json(&rec)?.as_slice()))?;
            let mut v = dbr(tx.open_table(VERSIONS))?;
            let m = json(&meta)?;
            for (edge, c) in &configs {
                dbr(v.insert((edge.as_str(), c.version), m.as_slice()))?;
            }
            Ok(())
        })?;
        let mut changed = Vec::with_capacity(new.len());
        for (edge, tenant, c) in new {
            match Topic::edge(&tenant, &edge, Channel::Config) {
                Ok(t) => self.outbox.send(&t, &c),
                Err(e) => tracing::error!(%edge, error = %e, "config not published"),
            }
            tracing::info!(%edge, version = c.version, cause = %meta.cause, actor, "edge config changed");
            changed.push(ChangedEdge {
                edge_id: edge,
                version: c.version,
            });
        }
        Ok(Change { changed })
    }

    /// Every version of an edge's config with who made it, newest first.
    pub fn history(&self, edge: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let metas: BTreeMap<u64, VersionMeta> = {
            let tx = dbr(self.store.db().begin_read())?;
            match tx.open_table(VERSIONS) {
                Ok(t) => {
                    let mut m = BTreeMap::new();
                    for row in dbr(t.range((edge, 0)..=(edge, u64::MAX)))? {
                        let (k, v) = dbr(row)?;
                        m.insert(k.value().1, unjson(v.value())?);
                    }
                    m
                }
                Err(_) => BTreeMap::new(),
            }
        };
        let mut out: Vec<HistoryEntry> = self
            .store
            .configs(edge)?
            .into_iter()
            .map(|c| {
                let meta = metas.get(&c.version);
                HistoryEntry {
                    version: c.version,
                    at_ms: meta.map(|m| m.at_ms),
                    actor: meta.map_or_else(|| NO_ACTOR.to_owned(), |m| m.actor.clone()),
                    cause: meta.map(|m| m.cause.clone()),
                    config: c.edge,
                }
            })
            .collect();
        out.reverse();
        Ok(out)
    }
}

/// One version in an edge's config history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub version: u64,
    pub at_ms: Option<i64>,
    pub actor: String,
    pub cause: Option<String>,
    pub config: EdgeConfig,
}

// ---- HTTP

/// The routes, with their state applied.
pub fn router(svc: ConfigService) -> Router {
    Router::new()
        .route(
            "/api/v1/config/defaults",
            get(get_defaults).put(put_defaults),
        )
        .route("/api/v1/config/groups", get(list_groups))
        .route(
            "/api/v1/config/groups/{name}",
            get(get_group).put(put_group),
        )
        .route("/api/v1/config/validate", post(validate_h))
        .route("/api/v1/edges/{id}/config", get(get_edge).put(put_edge))
        .route("/api/v1/edges/{id}/config/effective", get(effective_h))
        .route("/api/v1/edges/{id}/config/history", get(history_h))
        .with_state(svc)
}

type Actor = Option<Extension<crate::auth::Principal>>;

fn actor_of(a: &Actor) -> String {
    a.as_ref()
        .map_or_else(|| NO_ACTOR.to_owned(), |Extension(p)| p.username.clone())
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

fn api_error(e: ConfigApiError) -> Response {
    match e {
        ConfigApiError::Invalid(errors) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "valid": false,
                "error": ConfigApiError::Invalid(errors.clone()).to_string(),
                "errors": errors,
            })),
        )
            .into_response(),
        ConfigApiError::NotFound(m) => err(StatusCode::NOT_FOUND, m),
        ConfigApiError::Store(e) => {
            tracing::error!(error = %e, "config handler failed");
            err(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

#[allow(clippy::result_large_err)] // the error is the answer
fn parse(body: &str) -> Result<Doc, Response> {
    config_layers::parse_doc(body).map_err(|e| api_error(ConfigApiError::Invalid(vec![e])))
}

fn layer_view(r: Option<LayerRecord>) -> Response {
    Json(r.unwrap_or_default()).into_response()
}

async fn get_defaults(State(s): State<ConfigService>) -> Response {
    match s.layer(&LayerKey::Defaults) {
        Ok(r) => layer_view(r),
        Err(e) => api_error(e.into()),
    }
}

fn change_response(
    s: &ConfigService,
    key: LayerKey,
    doc: Doc,
    members: Option<Vec<String>>,
    actor: &Actor,
) -> Response {
    match s.set_layer(key, doc, members, &actor_of(actor), crate::fleet::now_ms()) {
        Ok(c) => Json(c).into_response(),
        Err(e) => api_error(e),
    }
}

async fn put_defaults(State(s): State<ConfigService>, actor: Actor, body: String) -> Response {
    match parse(&body) {
        Ok(doc) => change_response(&s, LayerKey::Defaults, doc, None, &actor),
        Err(r) => r,
    }
}

async fn list_groups(State(s): State<ConfigService>) -> Response {
    match s.groups() {
        Ok(g) => {
            let groups: Vec<Value> = g
                .into_iter()
                .map(|(name, r)| serde_json::json!({"name": name, "members": r.members, "config": r.config, "updated_ms": r.updated_ms, "updated_by": r.updated_by}))
                .collect();
            Json(serde_json::json!({ "groups": groups })).into_response()
        }
        Err(e) => api_error(e.into()),
    }
}

#[allow(clippy::result_large_err)] // the error is the answer
fn group_name(name: &str) -> Result<(), Response> {
    tapfleet_schemas::topic::validate_id(name)
        .map_err(|e| err(StatusCode::BAD_REQUEST, format!("group name: {e}")))
}

async fn get_group(State(s): State<ConfigService>, Path(name): Path<String>) -> Response {
    if let Err(r) = group_name(&name) {
        return r;
    }
    match s.layer(&LayerKey::Group(name.clone())) {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => err(StatusCode::NOT_FOUND, format!("no group {name:?}")),
        Err(e) => api_error(e.into()),
    }
}

async fn put_group(
    State(s): State<ConfigService>,
    Path(name): Path<String>,
    actor: Actor,
    body: String,
) -> Response {
    if let Err(r) = group_name(&name) {
        return r;
    }
    let mut doc = match parse(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let members = match doc.remove("members") {
        None | Some(Value::Null) => None,
        Some(v) => match serde_json::from_value::<Vec<String>>(v) {
            Ok(m) => Some(m),
            Err(_) => {
                return err(
                    StatusCode::BAD_REQUEST,
                    "members: must be a list of edge ids",
                );
            }
        },
    };
    let config = match doc.remove("config") {
        None | Some(Value::Null) => Doc::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return err(
                StatusCode::BAD_REQUEST,
                "config: must be an object of fields",
            );
        }
    };
    if let Some(k) = doc.keys().next() {
        return err(
            StatusCode::BAD_REQUEST,
            format!("{k}: unknown field (a group is {{\"members\": [...], \"config\": {{...}}}})"),
        );
    }
    change_response(&s, LayerKey::Group(name), config, members, &actor)
}

/// The enrolled edge `id`, or the answer saying it is unknown.
#[allow(clippy::result_large_err)] // the error is the answer
fn known_edge(s: &ConfigService, id: &str) -> Result<crate::store::EdgeRecord, Response> {
    match s.store.edge(id) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(err(StatusCode::NOT_FOUND, format!("no edge {id:?}"))),
        Err(e) => Err(api_error(e.into())),
    }
}

async fn get_edge(State(s): State<ConfigService>, Path(id): Path<String>) -> Response {
    if let Err(r) = known_edge(&s, &id) {
        return r;
    }
    match s.layer(&LayerKey::Edge(id)) {
        Ok(r) => layer_view(r),
        Err(e) => api_error(e.into()),
    }
}

async fn put_edge(
    State(s): State<ConfigService>,
    Path(id): Path<String>,
    actor: Actor,
    body: String,
) -> Response {
    let doc = match parse(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    match s.set_layer(
        LayerKey::Edge(id.clone()),
        doc,
        None,
        &actor_of(&actor),
        crate::fleet::now_ms(),
    ) {
        Ok(change) => match s.store.latest_config(&id) {
            Ok(Some(c)) => Json(serde_json::json!({
                "edge_id": id,
                "version": c.version,
                "edge": c.edge,
                "changed": change.changed,
            }))
            .into_response(),
            Ok(None) => err(StatusCode::NOT_FOUND, format!("edge {id:?} has no config")),
            Err(e) => api_error(e.into()),
        },
        Err(e) => api_error(e),
    }
}

#[derive(Deserialize)]
struct ValidateQuery {
    edge: Option<String>,
    group: Option<String>,
}

async fn validate_h(
    State(s): State<ConfigService>,
    Query(q): Query<ValidateQuery>,
    body: String,
) -> Response {
    let doc = match parse(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let key = match (q.edge, q.group) {
        (Some(e), _) => LayerKey::Edge(e),
        (None, Some(g)) => LayerKey::Group(g),
        (None, None) => LayerKey::Defaults,
    };
    match s.validate(&key, doc) {
        Ok(cfg) => Json(serde_json::json!({"valid": true, "effective": cfg})).into_response(),
        Err(e) => api_error(e),
    }
}

async fn effective_h(State(s): State<ConfigService>, Path(id): Path<String>) -> Response {
    let rec = match known_edge(&s, &id) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let desired = match s.store.latest_config(&id) {
        Ok(d) => d,
        Err(e) => return api_error(e.into()),
    };
    let groups: Vec<String> = s
        .groups()
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, g)| g.members.contains(&id))
        .map(|(n, _)| n)
        .collect();
    let desired_version = desired.as_ref().map(|c| c.version);
    Json(serde_json::json!({
        "edge_id": id,
        "online": rec.online,
        "desired_version": desired_version,
        "reported_version": rec.reported_config_version,
        "in_sync": desired_version.is_some() && desired_version == rec.reported_config_version && rec.config_error.is_none(),
        "config_error": rec.config_error,
        "groups": groups,
        "effective": desired.map(|c| c.edge),
    }))
    .into_response()
}

async fn history_h(State(s): State<ConfigService>, Path(id): Path<String>) -> Response {
    match s.history(&id) {
        Ok(h) => Json(serde_json::json!({"edge_id": id, "history": h})).into_response(),
        Err(e) => api_error(e.into()),
    }
}

// ---- CLI

/// `tapfleet-manager config ...`: a client of the routes above.
#[derive(clap::Subcommand, Debug)]
pub enum ConfigCmd {
    /// Show a layer, an edge's effective config (desired and reported version) or its history.
    Get {
        #[command(subcommand)]
        what: GetWhat,
    },
    /// Replace a layer from a file (TOML or JSON; `-` reads stdin).
    Set {
        #[command(subcommand)]
        what: SetWhat,
    },
    /// Check a file as the defaults (or as an edge's overrides with --edge) without applying it.
    Validate {
        file: PathBuf,
        #[arg(long)]
        edge: Option<String>,
        #[arg(long, conflicts_with = "edge")]
        group: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum GetWhat {
    Defaults,
    Groups,
    Group {
        name: String,
    },
    /// An edge's own overrides.
    Edge {
        id: String,
    },
    /// An edge's effective config, desired and reported version.
    Effective {
        id: String,
    },
    History {
        id: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum SetWhat {
    Defaults {
        file: PathBuf,
    },
    Group {
        name: String,
        file: PathBuf,
        /// The group's edges (comma-separated); absent: unchanged.
        #[arg(long, value_delimiter = ',')]
        members: Option<Vec<String>>,
    },
    Edge {
        id: String,
        file: PathBuf,
    },
}

fn read_doc(file: &PathBuf) -> anyhow::Result<Doc> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    config_layers::parse_doc(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

fn call(
    remote: &crate::cli::Remote,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let c = crate::cli::Client::new(remote)?;
    let resp = match method {
        "GET" => c.auth(c.agent.get(c.url(path))).call(),
        m => {
            let b = body.cloned().unwrap_or(Value::Null);
            if m == "POST" {
                c.auth(c.agent.post(c.url(path))).send_json(b)
            } else {
                c.auth(c.agent.put(c.url(path))).send_json(b)
            }
        }
    };
    let mut resp =
        resp.with_context(|| format!("{method} {path}: cannot reach {}", remote.manager))?;
    let status = resp.status();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let msg = v["errors"]
            .as_array()
            .map(|es| {
                es.iter()
                    .map(|e| {
                        format!(
                            "  {}: {}",
                            e["path"].as_str().unwrap_or("?"),
                            e["message"].as_str().unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .filter(|s| !s.is_empty())
            .or_else(|| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| v.to_string());
        bail!("{method} {path}: {status}:\n{msg}");
    }
    Ok(v)
}

/// Runs a `config` command.
pub fn run(remote: &crate::cli::Remote, cmd: ConfigCmd) -> anyhow::Result<()> {
    let v = match cmd {
        ConfigCmd::Get { what } => {
            let path = match what {
                GetWhat::Defaults => "/api/v1/config/defaults".to_owned(),
                GetWhat::Groups => "/api/v1/config/groups".to_owned(),
                GetWhat::Group { name } => format!("/api/v1/config/groups/{name}"),
                GetWhat::Edge { id } => format!("/api/v1/edges/{id}/config"),
                GetWhat::Effective { id } => format!("/api/v1/edges/{id}/config/effective"),
                GetWhat::History { id } => format!("/api/v1/edges/{id}/config/history"),
            };
            call(remote, "GET", &path, None)?
        }
        ConfigCmd::Set { what } => {
            let (path, body) = match what {
                SetWhat::Defaults { file } => (
                    "/api/v1/config/defaults".to_owned(),
                    Value::Object(read_doc(&file)?),
                ),
                SetWhat::Group {
                    name,
                    file,
                    members,
                } => {
                    let mut b = serde_json::json!({ "config": read_doc(&file)? });
                    if let Some(m) = members {
                        b["members"] = serde_json::json!(m);
                    }
                    (format!("/api/v1/config/groups/{name}"), b)
                }
                SetWhat::Edge { id, file } => (
                    format!("/api/v1/edges/{id}/config"),
                    Value::Object(read_doc(&file)?),
                ),
            };
            call(remote, "PUT", &path, Some(&body))?
        }
        ConfigCmd::Validate { file, edge, group } => {
            let q = match (edge, group) {
                (Some(e), _) => format!("?edge={e}"),
                (None, Some(g)) => format!("?group={g}"),
                (None, None) => String::new(),
            };
            let body = Value::Object(read_doc(&file)?);
            call(
                remote,
                "POST",
                &format!("/api/v1/config/validate{q}"),
                Some(&body),
            )?
        }
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::Outgoing;
    use crate::store::EdgeRecord;

    fn edge(id: &str) -> EdgeRecord {
        EdgeRecord {
            edge_id: id.to_owned(),
            tenant: "acme".to_owned(),
            hostname: id.to_owned(),
            claim_digest: String::new(),
            software_version: String::new(),
            enrolled_ms: 0,
            online: true,
            reported_config_version: None,
            config_error: None,
            last_seen_ms: None,
        }
    }

    fn doc(v: Value) -> Doc {
        match v {
            Value::Object(m) => m,
            _ => panic!("object"),
        }
    }

    fn versions(c: &Change) -> Vec<(&str, u64)> {
        c.changed
            .iter()
            .map(|e| (e.edge_id.as_str(), e.version))
            .collect()
    }

    #[test]
    fn changes_version_only_the_edges_they_reach_and_keep_who() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("m.redb")).expect("open"));
        let (outbox, mut sent) = Outbox::new();
        let svc = ConfigService::new(store.clone(), outbox, vec!["cloud".to_owned()]);
        for id in ["e1", "e2"] {
            store.put_edge(&edge(id)).expect("edge");
            assert_eq!(initial_config(&store, id, 1).expect("v1").version, 1);
        }

        let c = svc
            .set_layer(
                LayerKey::Defaults,
                doc(serde_json::json!({"cache": {"high_water_percent": 90}})),
                None,
                "alice",
                10,
            )
            .expect("defaults");
        assert_eq!(versions(&c), [("e1", 2), ("e2", 2)]);
        for _ in 0..2 {
            match sent.try_recv() {
                Ok(Outgoing::Publish { topic, retain, .. }) => {
                    assert!(retain && topic.ends_with("/config"), "{topic}");
                }
                other => panic!("{other:?}"),
            }
        }
        // The same again changes nothing: no new version, nothing published.
        let c = svc
            .set_layer(
                LayerKey::Defaults,
                doc(serde_json::json!({"cache": {"high_water_percent": 90}})),
                None,
                "alice",
                11,
            )
            .expect("same");
        assert!(c.changed.is_empty());
        assert!(sent.try_recv().is_err());

        let c = svc
            .set_layer(
                LayerKey::Group("night".to_owned()),
                doc(serde_json::json!({"telemetry_interval_secs": 5})),
                Some(vec!["e1".to_owned()]),
                "bob",
                20,
            )
            .expect("group");
        assert_eq!(versions(&c), [("e1", 3)]);

        // Invalid for one edge: refused, with the field and the edge named; nothing stored.
        let e = svc
            .set_layer(
                LayerKey::Edge("e2".to_owned()),
                doc(serde_json::json!({"storage": {"target": "mars"}})),
                None,
                "bob",
                30,
            )
            .expect_err("invalid");
        assert!(
            e.to_string()
                .starts_with("storage.target: \"mars\" is not a configured target"),
            "{e}"
        );
        // A relay into itself is refused; a relay into another edge is accepted.
        let e = svc
            .set_layer(
                LayerKey::Edge("e2".to_owned()),
                doc(serde_json::json!({"storage": {"target": "edge:e2"}})),
                None,
                "bob",
                30,
            )
            .expect_err("self relay");
        assert!(
            e.to_string()
                .starts_with("storage.target: \"edge:e2\" is this edge itself"),
            "{e}"
        );
        assert_eq!(
            store.latest_config("e2").expect("cfg").map(|c| c.version),
            Some(2)
        );
        assert!(
            svc.layer(&LayerKey::Edge("e2".to_owned()))
                .expect("layer")
                .is_none()
        );
        assert!(matches!(
            svc.set_layer(
                LayerKey::Edge("nope".to_owned()),
                Doc::new(),
                None,
                "bob",
                31
            ),
            Err(ConfigApiError::NotFound(_))
        ));

        let h = svc.history("e1").expect("history");
        let who: Vec<(u64, &str, Option<&str>)> = h
            .iter()
            .map(|x| (x.version, x.actor.as_str(), x.cause.as_deref()))
            .collect();
        assert_eq!(
            who,
            [
                (3, "bob", Some("group/night")),
                (2, "alice", Some("defaults")),
                (1, "enrollment", Some("enrollment"))
            ]
        );
        assert_eq!(h[0].config.telemetry_interval_secs, 5);
        assert_eq!(h[0].config.cache.high_water_percent, 90);
        // A new edge starts from the layers as they are.
        store.put_edge(&edge("e3")).expect("edge");
        let c = initial_config(&store, "e3", 40).expect("v1");
        assert_eq!(c.edge.cache.high_water_percent, 90);
    }
}
