//! Revoking an edge: recorded for good in redb (`revoked_edges`), handed to the embedded broker's
//! [`tapfleet_broker::CredentialStore`] (its connections close at once and it is refused at every
//! later CONNECT, with a password or a certificate), its password removed, and the credentials
//! file rewritten with the revocation list (a standalone `tapfleet-broker` reloads it). The
//! enrollment refuses a revoked edge, so its claim token cannot bring it back.
//!
//! API: `POST /api/v1/edges/{id}/revoke` -> `{"edge_id", "tenant", "revoked_ms"}` (404: no such
//! edge). CLI: `tapfleet-manager edge revoke ID`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::fleet::CredentialSink;
use crate::store::Store;

/// What revoking needs.
#[derive(Clone)]
pub struct Revoker {
    pub store: Arc<Store>,
    pub sink: CredentialSink,
}

/// A revoked edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revoked {
    pub edge_id: String,
    pub tenant: String,
    pub revoked_ms: i64,
}

impl Revoker {
    /// Revokes `edge_id`; none if no such edge.
    pub fn revoke(&self, edge_id: &str, now_ms: i64) -> anyhow::Result<Option<Revoked>> {
        let Some(rec) = self.store.edge(edge_id)? else {
            return Ok(None);
        };
        let when = self.store.revoke_edge(edge_id, now_ms)?;
        if let Some(b) = &self.sink.broker {
            b.revoke(edge_id);
            b.remove(edge_id);
        }
        self.sink.write_file(&self.store)?;
        tracing::warn!(edge = %edge_id, tenant = %rec.tenant, "edge revoked");
        Ok(Some(Revoked {
            edge_id: edge_id.to_owned(),
            tenant: rec.tenant,
            revoked_ms: when,
        }))
    }
}

/// The revocation route.
pub fn router(r: Revoker) -> Router {
    Router::new()
        .route("/api/v1/edges/{id}/revoke", post(revoke_h))
        .with_state(r)
}

async fn revoke_h(State(r): State<Revoker>, Path(id): Path<String>) -> Response {
    match r.revoke(&id, crate::fleet::now_ms()) {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => crate::auth::error(StatusCode::NOT_FOUND, "no such edge"),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "revocation failed");
            crate::auth::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// `tapfleet-manager edge ...`
#[derive(clap::Subcommand, Debug)]
pub enum EdgeCmd {
    /// Revoke an edge: its connections close now and it can never connect again.
    Revoke { id: String },
}

/// Runs an edge command through the API.
pub fn run(remote: &crate::cli::Remote, cmd: EdgeCmd) -> anyhow::Result<()> {
    let api = crate::tokens::cli::Api::new(remote)?;
    match cmd {
        EdgeCmd::Revoke { id } => {
            let r: Revoked = api.call("POST", &format!("/api/v1/edges/{id}/revoke"), None)?;
            println!("edge {} of tenant {} revoked", r.edge_id, r.tenant);
        }
    }
    Ok(())
}
