//! The HTTP API (axum): health, the recordings catalog, edges, and Prometheus metrics.
//!
//! - `GET /healthz` -> `200 ok`
//! - `GET /api/v1/recordings` (search, paginated): see [`crate::api`]
//! - `GET /api/v1/recordings/{id}` -> one `RecordingEntry`, or 404
//! - `GET /api/v1/edges` -> `{"edges": [EdgeView...]}`
//! - `GET /metrics` -> Prometheus text

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::fleet::Live;
use crate::metrics::Metrics;
use crate::store::Store;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub live: Live,
    /// The alerting service, for the event stream's `alerts` events (none in tests without it).
    pub alerts: Option<Arc<crate::alerting::Alerter>>,
}

/// An edge as the API shows it.
#[derive(Debug, Serialize)]
pub struct EdgeView {
    pub edge_id: String,
    pub tenant: String,
    pub hostname: String,
    pub online: bool,
    pub software_version: String,
    pub config_version_desired: Option<u64>,
    pub config_version_reported: Option<u64>,
    pub config_error: Option<String>,
    /// RFC 3339 UTC, when anything was last heard from the edge.
    pub last_seen: Option<String>,
    pub last_seen_ms: Option<i64>,
    /// The newest telemetry sample (calls now, drops, cache fill, backlog), if one came since
    /// the manager started.
    pub telemetry: Option<crate::telemetry::Sample>,
}

#[derive(Serialize)]
struct EdgeList {
    edges: Vec<EdgeView>,
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/recordings/{id}", get(recording))
        .route("/api/v1/edges", get(edges))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "http handler failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

async fn recording(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.store.recording(&id) {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such recording").into_response(),
        Err(e) => internal(e),
    }
}

async fn edges(State(s): State<AppState>) -> Response {
    match edge_views(&s) {
        Ok(edges) => Json(EdgeList { edges }).into_response(),
        Err(e) => internal(e),
    }
}

/// Every edge as the API shows it (also sent by the event stream).
pub fn edge_views(s: &AppState) -> Result<Vec<EdgeView>, crate::store::StoreError> {
    let records = s.store.edges()?;
    let live = s.live.lock().map(|l| l.clone()).unwrap_or_default();
    let mut out = Vec::with_capacity(records.len());
    for e in records {
        let desired = s.store.latest_config(&e.edge_id)?.map(|c| c.version);
        let last_seen_ms = live.get(&e.edge_id).copied().or(e.last_seen_ms);
        let telemetry = s.store.telemetry.latest(&e.edge_id);
        out.push(EdgeView {
            last_seen: last_seen_ms.map(|ms| {
                tapfleet_schemas::UtcDateTime::from_unix_ns(ms.saturating_mul(1_000_000)).rfc3339()
            }),
            last_seen_ms,
            edge_id: e.edge_id,
            tenant: e.tenant,
            hostname: e.hostname,
            online: e.online,
            software_version: e.software_version,
            config_version_desired: desired,
            config_version_reported: e.reported_config_version,
            config_error: e.config_error,
            telemetry,
        });
    }
    Ok(out)
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}
