//! Claim tokens: per tenant, with an expiry, a use limit and revocation, kept in redb by SHA-256
//! digest ([`crate::store::ClaimToken`]); the token itself is shown once, at creation. The
//! default tenant's token file `DATA/enroll.token` ([`crate::token`]) is one of them, with no
//! expiry and no limit.
//!
//! - [`check`] (pure): whether a token may be used at `now` (the broker's CONNECT check and the
//!   enrollment both call it). A use is one *new* edge; re-enrolling an edge it already enrolled
//!   uses nothing.
//! - API (merged into the manager's router, behind its auth guard):
//!   `GET /api/v1/tokens` -> `{"tokens": [TokenView...]}`;
//!   `POST /api/v1/tokens {"tenant", "expires": "24h"|null, "uses": N|null}` -> `201 {"token",
//!   ...TokenView}`; `POST /api/v1/tokens/{id}/revoke` -> the `TokenView`.
//!   A token's `id` is the first 16 hex digits of its digest (not a secret).
//! - CLI: `tapfleet-manager token create --tenant T [--expires 24h] [--uses 10]`, `token list`,
//!   `token revoke ID` ([`cli`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tapfleet_schemas::topic::validate_id;

use crate::store::{ClaimToken, Store, StoreError};

/// Length of a token id (hex digits of the digest).
pub const ID_LEN: usize = 16;

/// Why a token cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("claim token expired")]
    Expired,
    #[error("claim token revoked")]
    Revoked,
    #[error("claim token used up")]
    UsedUp,
}

/// Whether `t` may be used at `now_ms` (for a new edge when `new_edge`).
pub fn check(t: &ClaimToken, now_ms: i64, new_edge: bool) -> Result<(), TokenRefusal> {
    if t.revoked_ms.is_some() {
        return Err(TokenRefusal::Revoked);
    }
    if t.expires_ms.is_some_and(|e| now_ms >= e) {
        return Err(TokenRefusal::Expired);
    }
    if new_edge && t.max_uses.is_some_and(|m| t.uses >= m) {
        return Err(TokenRefusal::UsedUp);
    }
    Ok(())
}

/// Parses `90s`, `15m`, `24h`, `7d` (a number and one unit).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?}: give a unit (s, m, h, d)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: not a number"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?}: too long"))
}

/// A token as the API shows it (never the token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub tenant: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub max_uses: Option<u64>,
    pub uses: u64,
    pub revoked_ms: Option<i64>,
    /// `valid`, `expired`, `revoked` or `used_up`.
    pub state: String,
}

impl TokenView {
    fn new(digest: &str, t: &ClaimToken, now_ms: i64) -> Self {
        let state = match check(t, now_ms, true) {
            Ok(()) => "valid",
            Err(TokenRefusal::Expired) => "expired",
            Err(TokenRefusal::Revoked) => "revoked",
            Err(TokenRefusal::UsedUp) => "used_up",
        };
        TokenView {
            id: digest.chars().take(ID_LEN).collect(),
            tenant: t.tenant.clone(),
            created_ms: t.created_ms,
            expires_ms: t.expires_ms,
            max_uses: t.max_uses,
            uses: t.uses,
            revoked_ms: t.revoked_ms,
            state: state.to_owned(),
        }
    }
}

/// A new token: the token (show it once) and its view.
pub fn create(
    store: &Store,
    tenant: &str,
    expires_in: Option<Duration>,
    max_uses: Option<u64>,
    now_ms: i64,
) -> anyhow::Result<(String, TokenView)> {
    validate_id(tenant).map_err(|e| anyhow::anyhow!("tenant {tenant:?}: {e}"))?;
    let token = crate::enroll::random_hex(32)?;
    let digest = tapfleet_broker::claim_token_digest(&token);
    let expires_ms =
        expires_in.map(|d| now_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    let t = ClaimToken {
        tenant: tenant.to_owned(),
        created_ms: now_ms,
        expires_ms,
        max_uses,
        uses: 0,
        revoked_ms: None,
    };
    store.put_claim(&digest, &t)?;
    tracing::info!(id = %&digest[..ID_LEN], %tenant, ?expires_ms, ?max_uses, "claim token created");
    Ok((token, TokenView::new(&digest, &t, now_ms)))
}

/// Every token, oldest first.
pub fn list(store: &Store, now_ms: i64) -> Result<Vec<TokenView>, StoreError> {
    let mut v: Vec<TokenView> = store
        .claims()?
        .iter()
        .map(|(d, t)| TokenView::new(d, t, now_ms))
        .collect();
    v.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
    Ok(v)
}

/// Revokes the token whose id (digest prefix, at least 8 hex digits) is `id`; none if no single
/// token matches.
pub fn revoke(store: &Store, id: &str, now_ms: i64) -> Result<Option<TokenView>, StoreError> {
    if id.len() < 8 {
        return Ok(None);
    }
    let mut matches = store
        .claims()?
        .into_iter()
        .filter(|(d, _)| d.starts_with(&id.to_ascii_lowercase()));
    let (Some((digest, mut t)), None) = (matches.next(), matches.next()) else {
        return Ok(None);
    };
    if t.revoked_ms.is_none() {
        t.revoked_ms = Some(now_ms);
        store.put_claim(&digest, &t)?;
        tracing::info!(id = %&digest[..ID_LEN], tenant = %t.tenant, "claim token revoked");
    }
    Ok(Some(TokenView::new(&digest, &t, now_ms)))
}

// ---- HTTP API

#[derive(Debug, Deserialize)]
struct CreateBody {
    tenant: String,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    uses: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct TokenList {
    tokens: Vec<TokenView>,
}

/// The created token and its view.
#[derive(Serialize, Deserialize)]
pub struct Created {
    /// The claim token: shown once.
    pub token: String,
    #[serde(flatten)]
    pub view: TokenView,
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    crate::auth::error(status, msg)
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "token handler failed");
    err(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// The token routes.
pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/api/v1/tokens", get(list_h).post(create_h))
        .route("/api/v1/tokens/{id}/revoke", post(revoke_h))
        .with_state(store)
}

async fn list_h(State(s): State<Arc<Store>>) -> Response {
    match list(&s, crate::fleet::now_ms()) {
        Ok(tokens) => Json(TokenList { tokens }).into_response(),
        Err(e) => internal(e),
    }
}

async fn create_h(State(s): State<Arc<Store>>, Json(b): Json<CreateBody>) -> Response {
    if validate_id(&b.tenant).is_err() {
        return err(StatusCode::BAD_REQUEST, "tenant: not a valid id");
    }
    let expires = match b.expires.as_deref().map(parse_duration).transpose() {
        Ok(d) => d,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("expires: {e}")),
    };
    match create(&s, &b.tenant, expires, b.uses, crate::fleet::now_ms()) {
        Ok((token, view)) => (StatusCode::CREATED, Json(Created { token, view })).into_response(),
        Err(e) => internal(e),
    }
}

async fn revoke_h(State(s): State<Arc<Store>>, Path(id): Path<String>) -> Response {
    match revoke(&s, &id, crate::fleet::now_ms()) {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => err(
            StatusCode::NOT_FOUND,
            "no such token (or the id is ambiguous)",
        ),
        Err(e) => internal(e),
    }
}

/// The command line side (talks to the HTTP API).
pub mod cli {
    use anyhow::{Context, bail};
    use clap::Subcommand;

    use super::{Created, TokenList, TokenView};
    use crate::cli::Remote;

    /// `tapfleet-manager token ...` commands that go through the API.
    #[derive(Subcommand, Debug)]
    pub enum TokenApiCmd {
        /// Create a claim token for a tenant (printed once).
        Create {
            #[arg(long)]
            tenant: String,
            /// Lifetime: 90s, 15m, 24h, 7d (none: never expires).
            #[arg(long)]
            expires: Option<String>,
            /// How many new edges may enroll with it (none: no limit).
            #[arg(long)]
            uses: Option<u64>,
        },
        /// List claim tokens (never the tokens themselves).
        List,
        /// Revoke a claim token by id.
        Revoke { id: String },
    }

    /// A small JSON client of the manager's API.
    pub(crate) struct Api {
        agent: ureq::Agent,
        base: String,
        token: Option<String>,
    }

    impl Api {
        pub(crate) fn new(r: &Remote) -> anyhow::Result<Api> {
            Ok(Api {
                agent: r.agent(std::time::Duration::from_secs(30))?,
                base: r.manager.trim_end_matches('/').to_owned(),
                token: r.api_token.clone(),
            })
        }

        pub(crate) fn call<T: serde::de::DeserializeOwned>(
            &self,
            method: &str,
            path: &str,
            body: Option<serde_json::Value>,
        ) -> anyhow::Result<T> {
            let url = format!("{}{path}", self.base);
            let bearer = self.token.as_ref().map(|t| format!("Bearer {t}"));
            let resp = match (method, body) {
                ("GET", _) => {
                    let mut r = self.agent.get(&url);
                    if let Some(b) = &bearer {
                        r = r.header("Authorization", b);
                    }
                    r.call()
                }
                (_, body) => {
                    let mut r = self.agent.post(&url);
                    if let Some(b) = &bearer {
                        r = r.header("Authorization", b);
                    }
                    r.send_json(body.unwrap_or(serde_json::json!({})))
                }
            };
            let mut resp =
                resp.with_context(|| format!("{method} {path}: cannot reach {}", self.base))?;
            let status = resp.status();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            if !status.is_success() {
                let msg = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or(text);
                bail!("{method} {path}: {status}: {msg}");
            }
            serde_json::from_str(&text).context("decoding the answer")
        }
    }

    fn show(v: &TokenView) {
        let fmt = |ms: Option<i64>| {
            ms.map(|ms| {
                tapfleet_schemas::UtcDateTime::from_unix_ns(ms.saturating_mul(1_000_000)).rfc3339()
            })
            .unwrap_or_else(|| "-".into())
        };
        let uses = match v.max_uses {
            Some(m) => format!("{}/{m}", v.uses),
            None => format!("{}/-", v.uses),
        };
        println!(
            "{}  {:<16} {:<8} uses {:<8} expires {}",
            v.id,
            v.tenant,
            v.state,
            uses,
            fmt(v.expires_ms)
        );
    }

    /// Runs a token command.
    pub fn run(remote: &Remote, cmd: TokenApiCmd) -> anyhow::Result<()> {
        let api = Api::new(remote)?;
        match cmd {
            TokenApiCmd::Create {
                tenant,
                expires,
                uses,
            } => {
                if let Some(e) = &expires {
                    super::parse_duration(e).map_err(anyhow::Error::msg)?;
                }
                let c: Created = api.call(
                    "POST",
                    "/api/v1/tokens",
                    Some(serde_json::json!({"tenant": tenant, "expires": expires, "uses": uses})),
                )?;
                show(&c.view);
                println!("{}", c.token);
            }
            TokenApiCmd::List => {
                let l: TokenList = api.call("GET", "/api/v1/tokens", None)?;
                for v in &l.tokens {
                    show(v);
                }
            }
            TokenApiCmd::Revoke { id } => {
                let v: TokenView =
                    api.call("POST", &format!("/api/v1/tokens/{id}/revoke"), None)?;
                show(&v);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> ClaimToken {
        ClaimToken {
            tenant: "acme".into(),
            created_ms: 0,
            expires_ms: Some(1_000),
            max_uses: Some(2),
            uses: 0,
            revoked_ms: None,
        }
    }

    #[test]
    fn tokens_expire_run_out_and_are_revoked() {
        let mut t = tok();
        assert_eq!(check(&t, 999, true), Ok(()));
        assert_eq!(check(&t, 1_000, true), Err(TokenRefusal::Expired));
        t.uses = 2;
        assert_eq!(check(&t, 0, true), Err(TokenRefusal::UsedUp));
        assert_eq!(check(&t, 0, false), Ok(()), "re-enrolling uses nothing");
        t.revoked_ms = Some(5);
        assert_eq!(check(&t, 0, false), Err(TokenRefusal::Revoked));
        let old: ClaimToken =
            serde_json::from_str(r#"{"tenant":"default","created_ms":1}"#).expect("old record");
        assert_eq!(check(&old, i64::MAX, true), Ok(()));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("24").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("3w").is_err());
    }

    #[test]
    fn tokens_are_created_listed_and_revoked_in_redb() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("m.redb")).expect("store");
        let (token, view) = create(
            &store,
            "acme",
            Some(Duration::from_secs(60)),
            Some(3),
            1_000,
        )
        .expect("created");
        assert_eq!(token.len(), 64);
        assert_eq!(view.state, "valid");
        assert!(create(&store, "a/b", None, None, 0).is_err());
        let digest = tapfleet_broker::claim_token_digest(&token);
        assert!(store.claim(&digest).expect("read").is_some());
        let l = list(&store, 2_000).expect("list");
        assert_eq!(l.len(), 1);
        assert_eq!(list(&store, 70_000).expect("list")[0].state, "expired");
        assert!(revoke(&store, "0000", 0).expect("short").is_none());
        let r = revoke(&store, &view.id, 3_000)
            .expect("revoke")
            .expect("found");
        assert_eq!(r.state, "revoked");
        let t = store.claim(&digest).expect("read").expect("kept");
        assert_eq!(check(&t, 3_000, false), Err(TokenRefusal::Revoked));
    }
}
