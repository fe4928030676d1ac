//! Who may use the HTTP API and the dashboard, and what they changed: user accounts (argon2
//! password hashes), browser sessions (HttpOnly, SameSite=Strict cookie, `Secure` over HTTPS;
//! and a CSRF token that every state-changing request repeats in the `X-CSRF-Token` header), API
//! tokens for scripts
//! (`Authorization: Bearer`), the roles `admin` (everything) and `viewer` (GET only), and the audit
//! log (every state-changing request, every login).
//!
//! Tables in the manager's redb (values JSON):
//! - `users`: user name -> [`User`]
//! - `sessions`: SHA-256 hex of the session id -> [`Session`] (the id itself is only in the cookie)
//! - `api_tokens`: SHA-256 hex of the token -> [`ApiToken`] (the token is shown once, at creation)
//! - `audit`: sequence number -> [`AuditEntry`]
//!
//! [`guard`] is the axum middleware: `/api/v1/*` needs a principal except the login call and the
//! OpenAPI document; `/healthz`, `/metrics` and the dashboard's static files stay open (the
//! dashboard holds no data; it reads everything through the guarded API).
//!
//! At first start [`Auth::bootstrap`] creates the user `admin` (password from `--admin-password` /
//! `TAPFLEET_ADMIN_PASSWORD`, or a random one printed once on stderr), and registers the API token
//! of `TAPFLEET_API_TOKEN` / `--api-token` for scripts and tests when one is given.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::store::{Store, StoreError};

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const API_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_tokens");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// The session cookie's name.
pub const COOKIE: &str = "tapfleet_session";
/// The header a browser session repeats its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a browser session lasts.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// The shortest password or bootstrap token accepted.
pub const MIN_SECRET_LEN: usize = 12;

/// Why an auth operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("randomness: {0}")]
    Random(String),
    #[error("{0}")]
    Invalid(String),
}

fn db<T, E: Into<redb::Error>>(r: Result<T, E>) -> Result<T, AuthError> {
    r.map_err(|e| AuthError::Store(StoreError::Db(e.into())))
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, AuthError> {
    serde_json::to_vec(v).map_err(|e| AuthError::Store(StoreError::Encode(e.to_string())))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, AuthError> {
    serde_json::from_slice(b).map_err(|e| {
        AuthError::Store(StoreError::Corrupt {
            what,
            reason: e.to_string(),
        })
    })
}

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Read only (GET/HEAD), and log out.
    Viewer,
}

/// A user account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    /// Argon2id PHC string (never the password).
    pub password_hash: String,
    pub role: Role,
    pub created_ms: i64,
}

/// A browser session (stored under the SHA-256 of its id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub username: String,
    pub role: Role,
    pub csrf: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// An API token (stored under the SHA-256 of the token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiToken {
    /// Public handle: the first 12 hex digits of the token's SHA-256.
    pub id: String,
    pub name: String,
    pub username: String,
    pub role: Role,
    pub created_ms: i64,
}

/// One audit log line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_ms: i64,
    /// User name (or `-` when nobody was authenticated).
    pub actor: String,
    /// `METHOD /path` or an event name such as `login`.
    pub action: String,
    pub status: u16,
    pub detail: Option<String>,
}

/// Who is calling, as the middleware found out.
#[derive(Debug, Clone)]
pub struct Principal {
    pub username: String,
    pub role: Role,
    /// The session's CSRF token (none for API tokens).
    pub csrf: Option<String>,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn random_hex(n: usize) -> Result<String, AuthError> {
    crate::enroll::random_hex(n).map_err(|e| AuthError::Random(e.to_string()))
}

/// Constant-time string equality.
fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// An argon2id hash of a password (PHC string).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AuthError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether `password` matches a PHC hash (false for a malformed hash).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Whether a user name is acceptable: 1..=64 of `[A-Za-z0-9._-]`.
pub fn valid_username(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Users, sessions, tokens and the audit log on the manager's database.
pub struct Auth {
    store: Arc<Store>,
}

impl Auth {
    /// Opens (creates) the auth tables.
    pub fn open(store: Arc<Store>) -> Result<Self, AuthError> {
        let tx = db(store.db().begin_write())?;
        {
            db(tx.open_table(USERS))?;
            db(tx.open_table(SESSIONS))?;
            db(tx.open_table(API_TOKENS))?;
            db(tx.open_table(AUDIT))?;
        }
        db(tx.commit())?;
        Ok(Auth { store })
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &[u8]>,
        what: &'static str,
        key: &str,
    ) -> Result<Option<T>, AuthError> {
        let tx = db(self.store.db().begin_read())?;
        let t = db(tx.open_table(def))?;
        let row = db(t.get(key))?;
        row.map(|v| from_json(what, v.value())).transpose()
    }

    fn put<T: Serialize>(
        &self,
        def: TableDefinition<&str, &[u8]>,
        key: &str,
        v: &T,
    ) -> Result<(), AuthError> {
        let bytes = to_json(v)?;
        let tx = db(self.store.db().begin_write())?;
        {
            let mut t = db(tx.open_table(def))?;
            db(t.insert(key, bytes.as_slice()))?;
        }
        db(tx.commit())
    }

    fn remove(&self, def: TableDefinition<&str, &[u8]>, key: &str) -> Result<bool, AuthError> {
        let tx = db(self.store.db().begin_write())?;
        let existed = {
            let mut t = db(tx.open_table(def))?;
            db(t.remove(key))?.is_some()
        };
        db(tx.commit())?;
        Ok(existed)
    }

    fn all<T: serde::de::DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &[u8]>,
        what: &'static str,
    ) -> Result<Vec<(String, T)>, AuthError> {
        let tx = db(self.store.db().begin_read())?;
        let t = db(tx.open_table(def))?;
        let mut out = Vec::new();
        for row in db(t.iter())? {
            let (k, v) = db(row)?;
            out.push((k.value().to_owned(), from_json(what, v.value())?));
        }
        Ok(out)
    }

    /// First start: creates `admin` when there is no user (returns the generated password when
    /// none was given), and registers `api_token` as an admin token named `bootstrap`.
    pub fn bootstrap(
        &self,
        admin_password: Option<&str>,
        api_token: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<String>, AuthError> {
        let mut generated = None;
        if self.users()?.is_empty() {
            let password = match admin_password {
                Some(p) => p.to_owned(),
                None => {
                    let p = random_hex(12)?;
                    generated = Some(p.clone());
                    p
                }
            };
            self.create_user("admin", &password, Role::Admin, now_ms)?;
        }
        if let Some(token) = api_token {
            if token.len() < MIN_SECRET_LEN {
                return Err(AuthError::Invalid(format!(
                    "the API token must have at least {MIN_SECRET_LEN} characters"
                )));
            }
            let digest = sha256_hex(token);
            if self
                .get::<ApiToken>(API_TOKENS, "api token", &digest)?
                .is_none()
            {
                let t = ApiToken {
                    id: digest.chars().take(12).collect(),
                    name: "bootstrap".into(),
                    username: "admin".into(),
                    role: Role::Admin,
                    created_ms: now_ms,
                };
                self.put(API_TOKENS, &digest, &t)?;
            }
        }
        Ok(generated)
    }

    /// Creates (or replaces) a user.
    pub fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
        now_ms: i64,
    ) -> Result<User, AuthError> {
        if !valid_username(username) {
            return Err(AuthError::Invalid(
                "user names are 1 to 64 of A-Z a-z 0-9 . _ -".into(),
            ));
        }
        if password.chars().count() < MIN_SECRET_LEN {
            return Err(AuthError::Invalid(format!(
                "passwords have at least {MIN_SECRET_LEN} characters"
            )));
        }
        let u = User {
            username: username.to_owned(),
            password_hash: hash_password(password)?,
            role,
            created_ms: now_ms,
        };
        self.put(USERS, username, &u)?;
        Ok(u)
    }

    pub fn users(&self) -> Result<Vec<User>, AuthError> {
        Ok(self
            .all(USERS, "user")?
            .into_iter()
            .map(|(_, u)| u)
            .collect())
    }

    pub fn delete_user(&self, username: &str) -> Result<bool, AuthError> {
        self.remove(USERS, username)
    }

    /// Checks a password; on success opens a session and returns its id (for the cookie).
    pub fn login(
        &self,
        username: &str,
        password: &str,
        now_ms: i64,
    ) -> Result<Option<(String, Session)>, AuthError> {
        let user: Option<User> = if valid_username(username) {
            self.get(USERS, "user", username)?
        } else {
            None
        };
        let Some(user) = user else {
            // Spend the time a check would, so timing does not tell which user names exist.
            let _ = hash_password(password);
            return Ok(None);
        };
        if !verify_password(password, &user.password_hash) {
            return Ok(None);
        }
        let id = random_hex(32)?;
        let s = Session {
            username: user.username,
            role: user.role,
            csrf: random_hex(24)?,
            created_ms: now_ms,
            expires_ms: now_ms.saturating_add(SESSION_TTL_MS),
        };
        self.put(SESSIONS, &sha256_hex(&id), &s)?;
        Ok(Some((id, s)))
    }

    /// The live session with this id (an expired one is removed).
    pub fn session(&self, id: &str, now_ms: i64) -> Result<Option<Session>, AuthError> {
        let key = sha256_hex(id);
        match self.get::<Session>(SESSIONS, "session", &key)? {
            Some(s) if s.expires_ms > now_ms => Ok(Some(s)),
            Some(_) => {
                self.remove(SESSIONS, &key)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    pub fn logout(&self, id: &str) -> Result<(), AuthError> {
        self.remove(SESSIONS, &sha256_hex(id)).map(|_| ())
    }

    /// Creates an API token; the token is returned once and only its digest is kept.
    pub fn create_token(
        &self,
        name: &str,
        username: &str,
        role: Role,
        now_ms: i64,
    ) -> Result<(String, ApiToken), AuthError> {
        if name.is_empty() || name.len() > 64 {
            return Err(AuthError::Invalid(
                "a token name has 1 to 64 characters".into(),
            ));
        }
        let token = format!("tft_{}", random_hex(24)?);
        let digest = sha256_hex(&token);
        let t = ApiToken {
            id: digest.chars().take(12).collect(),
            name: name.to_owned(),
            username: username.to_owned(),
            role,
            created_ms: now_ms,
        };
        self.put(API_TOKENS, &digest, &t)?;
        Ok((token, t))
    }

    /// The API token this bearer string is, if any.
    pub fn token(&self, token: &str) -> Result<Option<ApiToken>, AuthError> {
        self.get(API_TOKENS, "api token", &sha256_hex(token))
    }

    pub fn tokens(&self) -> Result<Vec<ApiToken>, AuthError> {
        Ok(self
            .all(API_TOKENS, "api token")?
            .into_iter()
            .map(|(_, t)| t)
            .collect())
    }

    /// Revokes the token with this public id.
    pub fn revoke_token(&self, id: &str) -> Result<bool, AuthError> {
        let found = self
            .all::<ApiToken>(API_TOKENS, "api token")?
            .into_iter()
            .find(|(_, t)| t.id == id);
        match found {
            Some((digest, _)) => self.remove(API_TOKENS, &digest),
            None => Ok(false),
        }
    }

    /// Appends to the audit log.
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        status: u16,
        detail: Option<String>,
        now_ms: i64,
    ) -> Result<(), AuthError> {
        let tx = db(self.store.db().begin_write())?;
        {
            let mut t = db(tx.open_table(AUDIT))?;
            let seq = db(t.last())?.map(|(k, _)| k.value()).unwrap_or(0) + 1;
            let e = AuditEntry {
                seq,
                at_ms: now_ms,
                actor: actor.to_owned(),
                action: action.to_owned(),
                status,
                detail,
            };
            db(t.insert(seq, to_json(&e)?.as_slice()))?;
        }
        db(tx.commit())
    }

    /// The newest audit entries (newest first), before sequence number `before` when given.
    pub fn audit_log(
        &self,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<AuditEntry>, AuthError> {
        let tx = db(self.store.db().begin_read())?;
        let t = db(tx.open_table(AUDIT))?;
        let mut out = Vec::new();
        for row in db(t.range(..before.unwrap_or(u64::MAX)))?.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, v) = db(row)?;
            out.push(from_json("audit entry", v.value())?);
        }
        Ok(out)
    }

    /// The principal of a request: a Bearer API token, or the session cookie.
    pub fn authenticate(&self, headers: &HeaderMap, now_ms: i64) -> Option<Principal> {
        if let Some(v) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let t = v.strip_prefix("Bearer ")?.trim();
            let tok = self.token(t).ok().flatten()?;
            return Some(Principal {
                username: tok.username,
                role: tok.role,
                csrf: None,
            });
        }
        let id = session_cookie(headers)?;
        let s = self.session(&id, now_ms).ok().flatten()?;
        Some(Principal {
            username: s.username,
            role: s.role,
            csrf: Some(s.csrf),
        })
    }
}

/// The session id from the `Cookie` header(s).
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// A JSON error body: `{"error": "..."}`.
pub fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "auth handler failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// Paths anyone may reach.
fn is_open(path: &str) -> bool {
    !path.starts_with("/api/") || path == "/api/v1/auth/login" || path == "/api/v1/openapi.json"
}

fn is_read(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware: authenticates `/api/*`, enforces roles and CSRF, audits every change.
pub async fn guard(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if is_open(&path) {
        return next.run(req).await;
    }
    let now = crate::fleet::now_ms();
    let Some(p) = auth.authenticate(req.headers(), now) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication required: log in or send Authorization: Bearer TOKEN",
        );
    };
    let method = req.method().clone();
    if !is_read(&method) {
        if p.role != Role::Admin && path != "/api/v1/auth/logout" {
            let _ = auth.audit(&p.username, &format!("{method} {path}"), 403, None, now);
            return error(StatusCode::FORBIDDEN, "this needs the admin role");
        }
        if let Some(csrf) = &p.csrf {
            let sent = req
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !ct_eq(sent, csrf) {
                let _ = auth.audit(
                    &p.username,
                    &format!("{method} {path}"),
                    403,
                    Some("bad CSRF token".into()),
                    now,
                );
                return error(
                    StatusCode::FORBIDDEN,
                    "missing or wrong X-CSRF-Token header",
                );
            }
        }
    }
    let actor = p.username.clone();
    req.extensions_mut().insert(p);
    let resp = next.run(req).await;
    if !is_read(&method) {
        let status = resp.status().as_u16();
        if let Err(e) = auth.audit(&actor, &format!("{method} {path}"), status, None, now) {
            tracing::error!(error = %e, "audit log write failed");
        }
    }
    resp
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Me {
    username: String,
    role: Role,
    csrf_token: Option<String>,
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
    #[serde(default)]
    role: Option<Role>,
}

#[derive(Deserialize)]
struct NewUser {
    username: String,
    password: String,
    role: Role,
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
    before: Option<u64>,
}

/// The auth routes (`/api/v1/auth/*`, `/api/v1/users`, `/api/v1/audit`).
pub fn router(auth: Arc<Auth>) -> Router {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
        .route("/api/v1/auth/tokens", get(list_tokens).post(new_token))
        .route("/api/v1/auth/tokens/{id}", delete(del_token))
        .route("/api/v1/users", get(list_users).post(new_user))
        .route("/api/v1/users/{name}", delete(del_user))
        .route("/api/v1/audit", get(audit_log))
        .with_state(auth)
}

async fn login(
    State(auth): State<Arc<Auth>>,
    tls: Option<Extension<crate::https::OverTls>>,
    body: Result<Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(b)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"username\": ..., \"password\": ...}",
        );
    };
    let now = crate::fleet::now_ms();
    let a = auth.clone();
    let user = b.username.clone();
    let r = tokio::task::spawn_blocking(move || a.login(&b.username, &b.password, now)).await;
    match r {
        Ok(Ok(Some((id, s)))) => {
            let _ = auth.audit(&s.username, "login", 200, None, now);
            // `Secure` over HTTPS: the browser then never sends the cookie over plain HTTP.
            let secure = if tls.is_some() { "; Secure" } else { "" };
            let cookie = format!(
                "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                SESSION_TTL_MS / 1000
            );
            let mut resp = Json(Me {
                username: s.username,
                role: s.role,
                csrf_token: Some(s.csrf),
            })
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Ok(Ok(None)) => {
            let name: String = user.chars().take(64).collect();
            let _ = auth.audit(&name, "login", 401, Some("bad credentials".into()), now);
            error(StatusCode::UNAUTHORIZED, "wrong user name or password")
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn logout(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers)
        && let Err(e) = auth.logout(&id)
    {
        return internal(e);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("tapfleet_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

async fn me(Extension(p): Extension<Principal>) -> Response {
    Json(Me {
        username: p.username,
        role: p.role,
        csrf_token: p.csrf,
    })
    .into_response()
}

async fn list_tokens(State(auth): State<Arc<Auth>>) -> Response {
    match auth.tokens() {
        Ok(t) => Json(serde_json::json!({ "tokens": t })).into_response(),
        Err(e) => internal(e),
    }
}

async fn new_token(
    State(auth): State<Arc<Auth>>,
    Extension(p): Extension<Principal>,
    body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(b)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"name\": ..., \"role\": \"admin\"|\"viewer\"}",
        );
    };
    let role = b.role.unwrap_or(Role::Viewer);
    match auth.create_token(&b.name, &p.username, role, crate::fleet::now_ms()) {
        Ok((token, t)) => (
            StatusCode::CREATED,
            Json(serde_json::json!({ "token": token, "info": t })),
        )
            .into_response(),
        Err(AuthError::Invalid(m)) => error(StatusCode::BAD_REQUEST, m),
        Err(e) => internal(e),
    }
}

async fn del_token(State(auth): State<Arc<Auth>>, Path(id): Path<String>) -> Response {
    match auth.revoke_token(&id) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such token"),
        Err(e) => internal(e),
    }
}

#[derive(Serialize)]
struct UserView {
    username: String,
    role: Role,
    created_ms: i64,
}

async fn list_users(State(auth): State<Arc<Auth>>) -> Response {
    match auth.users() {
        Ok(u) => {
            let v: Vec<UserView> = u
                .into_iter()
                .map(|u| UserView {
                    username: u.username,
                    role: u.role,
                    created_ms: u.created_ms,
                })
                .collect();
            Json(serde_json::json!({ "users": v })).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn new_user(
    State(auth): State<Arc<Auth>>,
    body: Result<Json<NewUser>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(b)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"username\", \"password\", \"role\": \"admin\"|\"viewer\"}",
        );
    };
    let a = auth.clone();
    let r = tokio::task::spawn_blocking(move || {
        a.create_user(&b.username, &b.password, b.role, crate::fleet::now_ms())
    })
    .await;
    match r {
        Ok(Ok(u)) => (
            StatusCode::CREATED,
            Json(UserView {
                username: u.username,
                role: u.role,
                created_ms: u.created_ms,
            }),
        )
            .into_response(),
        Ok(Err(AuthError::Invalid(m))) => error(StatusCode::BAD_REQUEST, m),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn del_user(
    State(auth): State<Arc<Auth>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    if name == p.username {
        return error(StatusCode::BAD_REQUEST, "you cannot delete yourself");
    }
    match auth.delete_user(&name) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such user"),
        Err(e) => internal(e),
    }
}

async fn audit_log(
    State(auth): State<Arc<Auth>>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "limit and before are non-negative integers",
        );
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    match auth.audit_log(limit, q.before) {
        Ok(entries) => {
            let next = entries
                .last()
                .map(|e| e.seq)
                .filter(|_| entries.len() == limit);
            Json(serde_json::json!({ "entries": entries, "next_before": next })).into_response()
        }
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("m.redb")).expect("store"));
        (dir, Auth::open(store).expect("auth"))
    }

    #[test]
    fn bootstrap_login_session_and_tokens() {
        let (_d, a) = auth();
        let pw = a
            .bootstrap(None, Some("bootstrap-token-123456"), 1000)
            .expect("boot");
        let pw = pw.expect("a generated password is returned at first start");
        // Second start: nothing generated, the same token still works.
        assert_eq!(
            a.bootstrap(None, Some("bootstrap-token-123456"), 2000)
                .expect("boot"),
            None
        );
        assert!(
            a.login("admin", "wrong-password", 3000)
                .expect("login")
                .is_none()
        );
        assert!(a.login("nobody", &pw, 3000).expect("login").is_none());
        let (id, s) = a.login("admin", &pw, 3000).expect("login").expect("ok");
        assert_eq!(s.role, Role::Admin);
        assert!(a.session(&id, 4000).expect("s").is_some());
        assert!(
            a.session(&id, 3000 + SESSION_TTL_MS).expect("s").is_none(),
            "expired"
        );
        let t = a
            .token("bootstrap-token-123456")
            .expect("t")
            .expect("registered");
        assert_eq!(t.role, Role::Admin);
        let (tok, info) = a
            .create_token("ci", "admin", Role::Viewer, 5)
            .expect("create");
        assert_eq!(
            a.token(&tok).expect("t").map(|t| t.role),
            Some(Role::Viewer)
        );
        assert!(a.revoke_token(&info.id).expect("revoke"));
        assert!(a.token(&tok).expect("t").is_none());
        assert!(a.bootstrap(None, Some("short"), 1).is_err());
    }

    #[test]
    fn audit_log_pages_newest_first() {
        let (_d, a) = auth();
        for i in 0..5 {
            a.audit("admin", &format!("POST /x/{i}"), 200, None, i)
                .expect("audit");
        }
        let page = a.audit_log(2, None).expect("log");
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5, 4]);
        let next = a.audit_log(2, Some(4)).expect("log");
        assert_eq!(next.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 2]);
    }

    #[test]
    fn cookies_and_bad_names() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; tapfleet_session=abc123; c=d"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("abc123"));
        assert!(!valid_username("../x"));
        assert!(!valid_username(""));
        assert!(valid_username("ops.team-1"));
        assert!(ct_eq("abc", "abc") && !ct_eq("abc", "abd") && !ct_eq("abc", "ab"));
    }
}
