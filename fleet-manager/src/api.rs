//! The dashboard's side of the HTTP API (axum): recordings search, a recording's manifest, edge
//! detail, the live event stream, the OpenAPI document, and the dashboard's static files
//! (embedded from `web/`, no build step).
//!
//! - `GET /api/v1/recordings?number=&from=&to=&edge=&min_duration=&max_duration=&max_mos=&min_loss=&complete=&call_id=&limit=&cursor=`
//!   -> `{"recordings": [RecordingEntry...], "next_cursor": "..."|null, "scan_truncated": bool}`,
//!   newest first (start time descending, then recording id); see [`crate::search`]. Bad input:
//!   `400 {"error": "..."}` naming the parameter.
//! - `GET /api/v1/recordings/{id}/manifest` -> the manifest as received (streams, DTMF, ...)
//! - `GET /api/v1/edges/{id}` -> `EdgeView` + `desired_config`
//! - `GET /api/v1/edges/{id}/telemetry[?since=T]` -> `{"samples": [Sample...]}` (last 24 h, one a
//!   minute, kept across restarts ([`crate::telemetry`]); `since`: RFC 3339 or Unix ms)
//! - `GET /api/v1/events/stream` -> server-sent events: `edges` (the edge list) every 2 s, and
//!   `alerts` (`{"at_ms", "alerts": [Alert...]}`, the active alerts) at the start and whenever
//!   they change (checked every 2 s)
//! - `GET /api/v1/openapi.json` -> the OpenAPI 3.1 document (open, no login)
//! - `GET /`, `/ui/app.js`, `/ui/style.css`, `/favicon.svg` -> the dashboard (open; it holds no
//!   data and reads everything through the guarded API)

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt as _;

use crate::auth::error;
use crate::http::{AppState, edge_views};
use crate::search::{Cursor, MAX_LIMIT, SearchQuery, parse_time};

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");
const FAVICON: &str = include_str!("../../web/favicon.svg");
const OPENAPI: &str = include_str!("../../web/openapi.json");

/// How often the event stream sends the edge list.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(2);

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/recordings", get(recordings))
        .route("/api/v1/recordings/{id}/manifest", get(manifest))
        .route("/api/v1/edges/{id}", get(edge))
        .route("/api/v1/edges/{id}/telemetry", get(telemetry))
        .route("/api/v1/events/stream", get(events))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/", get(index))
        .route(
            "/ui/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/ui/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE_CSS)),
        )
        .route("/favicon.svg", get(|| asset("image/svg+xml", FAVICON)))
        .with_state(state)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The page, with a policy that allows only the manager's own scripts, styles and media.
async fn index() -> Response {
    let mut r = asset("text/html; charset=utf-8", INDEX_HTML).await;
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    r
}

async fn openapi() -> Response {
    asset("application/json", OPENAPI).await
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "http handler failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// The search parameters, checked: every problem is a message naming the parameter.
pub fn parse_search(params: &HashMap<String, String>) -> Result<SearchQuery, String> {
    let mut q = SearchQuery {
        limit: 100,
        ..Default::default()
    };
    for (k, v) in params {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let num = |what: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{what} must be a non-negative number, not {v:?}"))
        };
        let time = || {
            parse_time(v).ok_or_else(|| {
                format!(
                    "{k} must be an RFC 3339 UTC time (2024-02-29T12:00:00Z) or Unix ms, not {v:?}"
                )
            })
        };
        let text = |max: usize| -> Result<Option<String>, String> {
            if v.len() > max || v.contains('\0') {
                Err(format!("{k} is too long (at most {max} bytes)"))
            } else {
                Ok(Some(v.to_owned()))
            }
        };
        match k.as_str() {
            "number" => q.number = text(64)?,
            "edge" => q.edge = text(128)?,
            "call_id" => q.call_id = text(512)?,
            "from" => q.from_ns = Some(time()?),
            "to" => q.to_ns = Some(time()?),
            "min_duration" => {
                q.min_duration_ms = Some((num("min_duration (seconds)")? * 1000.0) as i64)
            }
            "max_duration" => {
                q.max_duration_ms = Some((num("max_duration (seconds)")? * 1000.0) as i64)
            }
            "max_mos" => q.max_mos = Some(num("max_mos")?),
            "min_loss" => q.min_loss_pct = Some(num("min_loss (percent)")?),
            "complete" => {
                q.complete = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(format!("complete must be true or false, not {v:?}")),
                })
            }
            "limit" => {
                q.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| format!("limit must be 1..={MAX_LIMIT}, not {v:?}"))?
            }
            "cursor" => {
                q.after = Some(
                    Cursor::parse(v)
                        .ok_or_else(|| format!("cursor {v:?} is not one this API returned"))?,
                )
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    if let (Some(f), Some(t)) = (q.from_ns, q.to_ns)
        && f >= t
    {
        return Err("from must be before to".into());
    }
    Ok(q)
}

async fn recordings(
    State(s): State<AppState>,
    params: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return error(StatusCode::BAD_REQUEST, "the query string does not parse");
    };
    let q = match parse_search(&params) {
        Ok(q) => q,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let store = s.store.clone();
    match tokio::task::spawn_blocking(move || store.search(&q)).await {
        Ok(Ok((recordings, page))) => Json(serde_json::json!({
            "recordings": recordings,
            "next_cursor": page.next.map(|c| c.to_string()),
            "scan_truncated": page.scan_truncated,
        }))
        .into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn manifest(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.store.manifest(&id) {
        Ok(Some(m)) => Json(m).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no recording {id:?}")),
        Err(e) => internal(e),
    }
}

async fn edge(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let views = match edge_views(&s) {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    let Some(view) = views.into_iter().find(|e| e.edge_id == id) else {
        return error(StatusCode::NOT_FOUND, format!("no edge {id:?}"));
    };
    let desired = match s.store.latest_config(&id) {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let mut v = serde_json::to_value(&view).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "desired_config".into(),
            serde_json::to_value(desired).unwrap_or_default(),
        );
    }
    Json(v).into_response()
}

async fn telemetry(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let oldest = crate::fleet::now_ms() - crate::telemetry::HISTORY_MS;
    let since = match q.get("since").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => oldest,
        Some(v) => match parse_time(v) {
            // parse_time answers nanoseconds.
            Some(ns) => (ns / 1_000_000).max(oldest),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("since must be an RFC 3339 UTC time or Unix ms, not {v:?}"),
                );
            }
        },
    };
    Json(serde_json::json!({ "samples": s.store.telemetry.history(&id, since) })).into_response()
}

async fn events(State(s): State<AppState>) -> impl IntoResponse {
    // State: the app, whether this is the first round, the active alerts last sent.
    let stream = futures::stream::unfold((s, true, None), |(s, first, sent)| async move {
        if !first {
            tokio::time::sleep(EVENT_INTERVAL).await;
        }
        let at_ms = crate::fleet::now_ms();
        let data = match edge_views(&s) {
            Ok(edges) => serde_json::json!({ "at_ms": at_ms, "edges": edges }),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let mut out = vec![Ok::<Event, Infallible>(
            Event::default().event("edges").data(data.to_string()),
        )];
        let mut sent: Option<String> = sent;
        if let Some(a) = &s.alerts {
            let active = serde_json::to_string(&a.active()).unwrap_or_else(|_| "[]".into());
            if sent.as_ref() != Some(&active) {
                out.push(Ok(Event::default()
                    .event("alerts")
                    .data(format!(r#"{{"at_ms":{at_ms},"alerts":{active}}}"#))));
                sent = Some(active);
            }
        }
        Some((futures::stream::iter(out), (s, false, sent)))
    })
    .flatten();
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No (usable) range: the whole object, 200.
    Full,
    /// Bytes `start..end` (end exclusive), 206.
    Part { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// Parses a `Range` header (one `bytes=` range; several ranges or other units get the whole
/// object, as RFC 9110 allows).
pub fn parse_range(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Full;
    };
    if spec.contains(',') {
        return RangeAsk::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |x: &str| x.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        (true, false) => match parse(b) {
            // The last b bytes.
            Some(n) if n > 0 && size > 0 => RangeAsk::Part {
                start: size.saturating_sub(n),
                end: size,
            },
            _ => RangeAsk::Unsatisfiable,
        },
        (false, _) => {
            let Some(start) = parse(a) else {
                return RangeAsk::Unsatisfiable;
            };
            let end = if b.is_empty() {
                Some(size)
            } else {
                parse(b).map(|e| e.saturating_add(1).min(size))
            };
            match end {
                Some(end) if start < size && start < end => RangeAsk::Part { start, end },
                _ => RangeAsk::Unsatisfiable,
            }
        }
        (true, true) => RangeAsk::Unsatisfiable,
    }
}

/// Streams `path` of `op` (`size` bytes) honouring the request's `Range`: 200 with
/// `Accept-Ranges`, 206 with `Content-Range`, or 416 with `Content-Range: bytes */size`.
pub async fn ranged_object(
    op: &opendal::Operator,
    path: &str,
    size: u64,
    content_type: &str,
    headers: &axum::http::HeaderMap,
) -> Response {
    let ask = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let (status, start, end) = match ask {
        RangeAsk::Full => (StatusCode::OK, 0, size),
        RangeAsk::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeAsk::Unsatisfiable => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response();
        }
    };
    let stream = match op.reader(path).await {
        Ok(r) => match r.into_bytes_stream(start..end).await {
            Ok(s) => s,
            Err(e) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    format!("the target cannot be read: {e}"),
                );
            }
        },
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("the target cannot be read: {e}"),
            );
        }
    };
    let mut resp = (
        status,
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_LENGTH, (end - start).to_string()),
            (header::ACCEPT_RANGES, "bytes".to_owned()),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response();
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = axum::http::HeaderValue::from_str(&format!(
            "bytes {start}-{}/{size}",
            end.saturating_sub(1)
        ))
    {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_rfc_9110() {
        use RangeAsk::*;
        let r = |h: &str| parse_range(Some(h), 100);
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(r("bytes=0-9"), Part { start: 0, end: 10 });
        assert_eq!(
            r("bytes=90-"),
            Part {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            r("bytes=-10"),
            Part {
                start: 90,
                end: 100
            }
        );
        assert_eq!(r("bytes=-1000"), Part { start: 0, end: 100 });
        assert_eq!(
            r("bytes=50-5000"),
            Part {
                start: 50,
                end: 100
            }
        );
        assert_eq!(r("bytes=100-"), Unsatisfiable);
        assert_eq!(r("bytes=9-1"), Unsatisfiable);
        assert_eq!(r("bytes=x-1"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6"), Full);
        assert_eq!(r("items=0-1"), Full);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
    }

    fn p(pairs: &[(&str, &str)]) -> Result<SearchQuery, String> {
        parse_search(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn search_parameters_are_checked() {
        let q = p(&[
            ("number", "+4930"),
            ("from", "2024-01-01T00:00:00Z"),
            ("min_duration", "2.5"),
            ("complete", "false"),
            ("limit", "10"),
            ("edge", ""),
        ])
        .expect("valid");
        assert_eq!(q.number.as_deref(), Some("+4930"));
        assert_eq!(q.min_duration_ms, Some(2500));
        assert_eq!(q.complete, Some(false));
        assert_eq!(q.limit, 10);
        assert_eq!(q.edge, None);
        for (bad, needle) in [
            (("limit", "0"), "limit"),
            (("limit", "x"), "limit"),
            (("from", "yesterday"), "from"),
            (("max_mos", "-1"), "max_mos"),
            (("complete", "maybe"), "complete"),
            (("cursor", "nope"), "cursor"),
            (("colour", "red"), "colour"),
        ] {
            let e = p(&[bad]).expect_err("invalid");
            assert!(e.contains(needle), "{e}");
        }
        assert!(
            p(&[
                ("from", "2024-01-02T00:00:00Z"),
                ("to", "2024-01-01T00:00:00Z")
            ])
            .is_err()
        );
    }

    /// Every axum route of an `/api/v1` path in the crate's sources (a `route` call with a
    /// string literal), with the methods it is given: (path, [get, put, ...]).
    fn routes_in_sources() -> Vec<(String, Vec<String>)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .expect("src dir")
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect();
            entries.sort();
            for p in entries {
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(std::fs::read_to_string(&p).expect("source"));
                }
            }
        }
        let mut sources = Vec::new();
        walk(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
            &mut sources,
        );
        let mut routes = Vec::new();
        for src in &sources {
            let mut rest = src.as_str();
            while let Some(i) = rest.find(".route(") {
                rest = &rest[i + ".route(".len()..];
                let Some(lit) = rest.trim_start().strip_prefix('"') else {
                    continue;
                };
                let Some(end) = lit.find('"') else { continue };
                let path = &lit[..end];
                // The methods: identifiers called at the call's own depth.
                let (mut depth, mut ident, mut methods) = (1usize, String::new(), Vec::new());
                for c in lit[end + 1..].chars() {
                    match c {
                        '(' => {
                            if depth == 1
                                && ["get", "post", "put", "delete", "patch"]
                                    .contains(&ident.as_str())
                            {
                                methods.push(ident.clone());
                            }
                            depth += 1;
                        }
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    if c.is_alphanumeric() || c == '_' {
                        ident.push(c);
                    } else {
                        ident.clear();
                    }
                }
                if path.starts_with("/api/v1") {
                    routes.push((path.to_owned(), methods));
                }
            }
        }
        routes
    }

    #[test]
    fn the_openapi_document_lists_every_route_and_only_those() {
        let v: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        let paths = v["paths"].as_object().expect("paths");
        let routes = routes_in_sources();
        assert!(routes.len() >= 30, "the walk finds the routes: {routes:?}");
        let mut missing = Vec::new();
        for (path, methods) in &routes {
            assert!(!methods.is_empty(), "{path}: no method found");
            for m in methods {
                if paths.get(path).and_then(|p| p.get(m)).is_none() {
                    missing.push(format!("{} {path}", m.to_uppercase()));
                }
            }
        }
        assert!(missing.is_empty(), "not in web/openapi.json: {missing:?}");
        for (path, ops) in paths {
            if !path.starts_with("/api/v1") {
                continue;
            }
            for m in ops.as_object().expect("operations").keys() {
                if m == "parameters" {
                    continue;
                }
                assert!(
                    routes.iter().any(|(p, ms)| p == path && ms.contains(m)),
                    "documented but not routed: {} {path}",
                    m.to_uppercase()
                );
            }
        }
    }

    #[test]
    fn the_openapi_document_is_json_and_lists_the_routes() {
        let v: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        let paths = v["paths"].as_object().expect("paths");
        for p in [
            "/api/v1/recordings",
            "/api/v1/recordings/{id}/files/{name}",
            "/api/v1/auth/login",
            "/api/v1/edges",
            "/api/v1/jobs",
            "/api/v1/events/stream",
        ] {
            assert!(paths.contains_key(p), "{p} documented");
        }
    }
}
