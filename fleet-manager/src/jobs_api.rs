//! The HTTP routes of jobs, legal holds and file downloads (axum), over
//! [`crate::jobs::Jobs`]. A separate router merged by `serve.rs` into the app before any layer,
//! so an auth layer applied to the app wraps these routes too.
//!
//! - `POST /api/v1/jobs` body [`JobRequest`] -> `202` [`JobRecord`]; `400` bad request, `404` no
//!   such recording, `409` refused (legal hold); errors are `{"error": "..."}`
//! - `GET /api/v1/jobs` -> `{"jobs": [JobRecord...]}`; `GET /api/v1/jobs/{id}` -> one, or 404
//! - `PUT /api/v1/recordings/{id}/hold` / `DELETE ...` -> the `RecordingEntry` with `legal_hold`
//! - `GET /api/v1/recordings/{id}/files/{name}[?target=T]` -> the file's bytes streamed from a
//!   manager target holding it (`name` may be `manifest.json`); `409` when only an edge has it
//!
//! - `GET /api/v1/targets` -> `{"targets": [{name, scheme, root}], "policies": [{edge_id, target,
//!   keep_local_copy, config_version}]}`: the named storage targets (no secrets) and each edge's
//!   storage policy from its newest desired config
//!
//! (Edge configs, `PUT /api/v1/edges/{id}/config`, are layered: see [`crate::config_api`].)

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::catalog::edge_of_target;
use crate::jobs::{JobError, JobRecord, JobRequest, Jobs};

/// The routes, with their state applied.
pub fn router(jobs: Jobs) -> Router {
    Router::new()
        .route("/api/v1/jobs", get(list).post(submit))
        .route("/api/v1/jobs/{id}", get(one))
        .route(
            "/api/v1/recordings/{id}/hold",
            put(hold_set).delete(hold_clear),
        )
        .route("/api/v1/recordings/{id}/files/{name}", get(file))
        .route("/api/v1/targets", get(targets))
        .with_state(jobs)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct E {
        error: String,
    }
    (status, Json(E { error: msg.into() })).into_response()
}

fn job_error(e: JobError) -> Response {
    match e {
        JobError::BadRequest(m) => error(StatusCode::BAD_REQUEST, m),
        JobError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
        JobError::Conflict(m) => error(StatusCode::CONFLICT, m),
        JobError::Store(e) => {
            tracing::error!(error = %e, "http handler failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

#[derive(Serialize)]
struct TargetView {
    name: String,
    /// OpenDAL service, e.g. `fs`, `s3`, `sftp`.
    scheme: &'static str,
    root: String,
}

#[derive(Serialize)]
struct PolicyView {
    edge_id: String,
    /// A target name, or `edge-local`.
    target: String,
    keep_local_copy: bool,
    config_version: Option<u64>,
}

#[derive(Serialize)]
struct TargetList {
    targets: Vec<TargetView>,
    policies: Vec<PolicyView>,
}

async fn targets(State(j): State<Jobs>) -> Response {
    let targets = j
        .targets
        .names()
        .filter_map(|name| {
            let info = j.targets.get(name)?.info();
            Some(TargetView {
                name: name.to_owned(),
                scheme: info.scheme(),
                root: info.root(),
            })
        })
        .collect();
    let edges = match j.store.edges() {
        Ok(e) => e,
        Err(e) => return job_error(JobError::Store(e)),
    };
    let mut policies = Vec::with_capacity(edges.len());
    for e in edges {
        let cfg = match j.store.latest_config(&e.edge_id) {
            Ok(c) => c,
            Err(e) => return job_error(JobError::Store(e)),
        };
        let storage = cfg
            .as_ref()
            .map(|c| c.edge.storage.clone())
            .unwrap_or_default();
        policies.push(PolicyView {
            edge_id: e.edge_id,
            target: storage.target,
            keep_local_copy: storage.keep_local_copy,
            config_version: cfg.map(|c| c.version),
        });
    }
    Json(TargetList { targets, policies }).into_response()
}

#[derive(Serialize)]
struct JobList {
    jobs: Vec<JobRecord>,
}

async fn list(State(j): State<Jobs>) -> Response {
    match j.store.jobs() {
        Ok(jobs) => Json(JobList { jobs }).into_response(),
        Err(e) => job_error(e.into()),
    }
}

async fn one(State(j): State<Jobs>, Path(id): Path<u64>) -> Response {
    match j.store.job(id) {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => job_error(e.into()),
    }
}

async fn submit(
    State(j): State<Jobs>,
    body: Result<Json<JobRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match j.submit(req) {
        Ok(r) => (StatusCode::ACCEPTED, Json(r)).into_response(),
        Err(e) => job_error(e),
    }
}

async fn hold_set(State(j): State<Jobs>, Path(id): Path<String>) -> Response {
    match j.set_hold(&id, true) {
        Ok(e) => Json(e).into_response(),
        Err(e) => job_error(e),
    }
}

async fn hold_clear(State(j): State<Jobs>, Path(id): Path<String>) -> Response {
    match j.set_hold(&id, false) {
        Ok(e) => Json(e).into_response(),
        Err(e) => job_error(e),
    }
}

#[derive(Deserialize)]
struct FileQuery {
    target: Option<String>,
}

async fn file(
    State(j): State<Jobs>,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<FileQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let e = match j.store.recording(&id) {
        Ok(Some(e)) => e,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no recording {id:?}")),
        Err(e) => return job_error(e.into()),
    };
    let (locations, content_type, size) = if name == "manifest.json" {
        (
            e.manifest_locations.clone(),
            "application/json".to_owned(),
            None,
        )
    } else {
        match e.file(&name) {
            Some(f) => (f.locations.clone(), f.content_type.clone(), Some(f.size)),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("recording {id} has no file {name:?}"),
                );
            }
        }
    };
    let loc = locations.iter().find(|l| {
        q.target.as_ref().is_none_or(|t| &l.target == t) && j.targets.get(&l.target).is_some()
    });
    let Some(loc) = loc else {
        let edges: Vec<&str> = locations
            .iter()
            .filter_map(|l| edge_of_target(&l.target))
            .collect();
        let msg = if edges.is_empty() {
            format!(
                "{name} of {id} is in no target{}",
                q.target.map(|t| format!(" named {t}")).unwrap_or_default()
            )
        } else {
            format!(
                "{name} of {id} is only in the local storage of edge {}: fetch it into a target first (POST /api/v1/jobs {{\"kind\":\"fetch\",\"recording_id\":\"{id}\"}})",
                edges.join(", ")
            )
        };
        return error(StatusCode::CONFLICT, msg);
    };
    let Some(op) = j.targets.get(&loc.target) else {
        return error(StatusCode::CONFLICT, "target not configured");
    };
    let end = match size {
        Some(s) => s,
        None => match op.stat(&loc.path).await {
            Ok(m) => m.content_length(),
            Err(e) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    format!("target {} cannot be read: {e}", loc.target),
                );
            }
        },
    };
    // HTTP Range (206/416) for players and resumable downloads.
    crate::api::ranged_object(op, &loc.path, end, &content_type, &headers).await
}
