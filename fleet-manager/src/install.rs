//! Edge installation from the manager: the routes a site's server needs to install an edge
//! with one command (`curl -fsS http://MANAGER/install.sh | sudo sh -s -- --token T`; over HTTPS
//! `curl -fsS --cacert ca.pem https://...`, the script then carries the fleet CA). All are
//! public (outside `/api/`, so the auth guard lets them through) and hold no secret:
//!
//! - `GET /install.sh`: `deploy/install-edge.sh` with this manager's URL and broker address
//!   filled in (the URL from `--public-url`, else the request's `Host`);
//! - `GET /ca.pem`: the fleet CA certificate (edges trust it for `mqtts://`);
//! - `GET /download/tapfleet-edge`: the edge binary (`--edge-binary PATH`, else `tapfleet-edge`
//!   beside the manager's executable; 404 with the reason otherwise), with `Content-Length`
//!   and an `X-Checksum-Sha256` header;
//! - `GET /download/tapfleet-edge.sha256`: `<hex>  tapfleet-edge` (the installer checks it);
//! - `GET /download/tapfleet-edge.service`: `deploy/systemd/tapfleet-edge.service`.
//!
//! The binary's SHA-256 is computed at start ([`Install::prehash`]) and again whenever its size
//! or mtime changes, so a rebuilt binary is never served with a stale digest.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The installer script template (`@MANAGER_URL@`, `@BROKER_URL@`, `@CA_PEM@`).
pub const SCRIPT: &str = include_str!("../../deploy/install-edge.sh");
/// The edge's systemd unit.
pub const EDGE_UNIT: &str = include_str!("../../deploy/systemd/tapfleet-edge.service");
/// The edge binary's name in the download routes.
pub const EDGE_BINARY: &str = "tapfleet-edge";

/// What the install routes serve.
#[derive(Clone)]
pub struct Install {
    /// `http(s)://host[:port]` the script downloads from; none: from the request's `Host`.
    pub public_url: Option<String>,
    /// The broker URL written into the edge's config (`mqtt(s)://host:port`); a host of `{host}`
    /// is replaced by the public URL's host.
    pub broker_url: String,
    /// The fleet CA certificate (PEM).
    pub ca_pem: String,
    /// The edge binary, if the manager has one to give.
    pub edge_binary: Option<PathBuf>,
    digest: Arc<Mutex<Option<Digest>>>,
}

/// The binary's SHA-256 and the file state it was computed for.
#[derive(Clone, PartialEq)]
struct Digest {
    len: u64,
    mtime: Option<SystemTime>,
    hex: String,
}

impl Install {
    pub fn new(
        public_url: Option<String>,
        broker_url: String,
        ca_pem: String,
        edge_binary: Option<PathBuf>,
    ) -> Install {
        Install {
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
            broker_url,
            ca_pem,
            edge_binary,
            digest: Arc::default(),
        }
    }

    /// Hashes the binary in the background now, so the first download does not wait for it.
    pub fn prehash(&self) {
        if self.edge_binary.is_some() {
            let s = self.clone();
            tokio::spawn(async move {
                if let Ok((path, d)) = digest(&s).await {
                    tracing::info!(path = %path.display(), sha256 = %d.hex, "edge binary served at /download/tapfleet-edge");
                }
            });
        }
    }

    /// The edge binary to serve: `explicit`, else `tapfleet-edge` beside this executable.
    pub fn find_binary(explicit: Option<PathBuf>) -> Option<PathBuf> {
        explicit.or_else(|| {
            let p = std::env::current_exe().ok()?.parent()?.join(EDGE_BINARY);
            p.is_file().then_some(p)
        })
    }
}

/// Whether `s` can go into the script unquoted-safe: host, port, scheme and path characters only.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:/[]".contains(&b))
}

/// The host part of `http(s)://host[:port][/...]` (IPv6 with brackets kept).
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.starts_with('[') {
        authority
            .split_once(']')
            .map_or(authority, |(h, _)| &authority[..h.len() + 1])
    } else {
        authority.split(':').next().unwrap_or(authority)
    }
}

/// The installer for a manager at `manager_url` whose broker is `broker_url` and whose fleet CA
/// is `ca_pem` (the script trusts it for https downloads), or why not.
pub fn render_script(manager_url: &str, broker_url: &str, ca_pem: &str) -> Result<String, String> {
    let broker = broker_url.replace("{host}", url_host(manager_url));
    if !plain(manager_url) || !plain(&broker) {
        return Err(format!(
            "manager URL {manager_url:?} or broker URL {broker:?} has characters a script cannot carry"
        ));
    }
    // PEM is base64 between dashed lines; anything else could end the shell's quoted string.
    let ca = ca_pem.trim();
    if !ca.starts_with("-----BEGIN CERTIFICATE-----")
        || !ca
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " +/=-\n".contains(c))
    {
        return Err("the fleet CA is not a plain PEM certificate".into());
    }
    Ok(SCRIPT
        .replace("@MANAGER_URL@", manager_url)
        .replace("@BROKER_URL@", &broker)
        .replace("@CA_PEM@", ca))
}

/// The routes (public: nothing here needs or reveals a secret).
pub fn router(install: Install) -> Router {
    Router::new()
        .route("/install.sh", get(script))
        .route("/ca.pem", get(ca_pem))
        .route("/download/tapfleet-edge", get(binary))
        .route("/download/tapfleet-edge.sha256", get(binary_sha256))
        .route("/download/tapfleet-edge.service", get(unit))
        .with_state(install)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn script(
    State(s): State<Install>,
    tls: Option<axum::Extension<crate::https::OverTls>>,
    headers: HeaderMap,
) -> Response {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = match &s.public_url {
        Some(u) => u.clone(),
        None => match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            Some(host) => format!("{scheme}://{host}"),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "no Host header: start the manager with --public-url\n".into(),
                );
            }
        },
    };
    match render_script(&url, &s.broker_url, &s.ca_pem) {
        Ok(body) => (
            [(header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

async fn ca_pem(State(s): State<Install>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        s.ca_pem.clone(),
    )
        .into_response()
}

async fn unit() -> Response {
    text(StatusCode::OK, EDGE_UNIT.to_owned())
}

fn no_binary() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "this manager has no edge binary to give: start it with --edge-binary PATH \
         (or put tapfleet-edge beside tapfleet-manager)\n"
            .into(),
    )
}

/// The binary's path and current SHA-256 (computed off the async threads when it changed).
async fn digest(s: &Install) -> Result<(PathBuf, Digest), Response> {
    let Some(path) = s.edge_binary.clone() else {
        return Err(no_binary());
    };
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_file() => m,
        _ => {
            tracing::warn!(path = %path.display(), "edge binary not found");
            return Err(no_binary());
        }
    };
    let (len, mtime) = (meta.len(), meta.modified().ok());
    if let Some(d) = s.digest.lock().ok().and_then(|d| d.clone())
        && d.len == len
        && d.mtime == mtime
    {
        return Ok((path, d));
    }
    let p = path.clone();
    let hex = tokio::task::spawn_blocking(move || sha256_file(&p))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let hex = match hex {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "hashing the edge binary failed");
            return Err(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the edge binary cannot be read\n".into(),
            ));
        }
    };
    let d = Digest { len, mtime, hex };
    if let Ok(mut slot) = s.digest.lock() {
        *slot = Some(d.clone());
    }
    Ok((path, d))
}

fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest as _;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
}

async fn binary_sha256(State(s): State<Install>) -> Response {
    match digest(&s).await {
        Ok((_, d)) => text(StatusCode::OK, format!("{}  {EDGE_BINARY}\n", d.hex)),
        Err(r) => r,
    }
}

async fn binary(State(s): State<Install>) -> Response {
    let (path, d) = match digest(&s).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "opening the edge binary failed");
            return no_binary();
        }
    };
    // Exactly the hashed length: a file replaced meanwhile ends the body short (the installer's
    // SHA-256 check then fails) instead of sending bytes that were never hashed.
    let stream = futures::stream::unfold((file, d.len), |(mut f, left)| async move {
        use tokio::io::AsyncReadExt;
        if left == 0 {
            return None;
        }
        let want = usize::try_from(left.min(256 * 1024)).unwrap_or(256 * 1024);
        let mut buf = vec![0u8; want];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(buf)),
                    (f, left - n as u64),
                ))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    let mut resp = axum::body::Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(d.len));
    if let Ok(v) = HeaderValue::from_str(&d.hex) {
        h.insert("x-checksum-sha256", v);
    }
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"tapfleet-edge\""),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_is_rendered_with_the_urls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = crate::ca::load_or_create(dir.path()).expect("CA");
        let pem = ca.cert_pem();
        let s = render_script("http://10.0.0.5:8080", "mqtts://{host}:8883", pem).expect("renders");
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("MANAGER_URL='http://10.0.0.5:8080'"));
        assert!(s.contains("BROKER_URL='mqtts://10.0.0.5:8883'"));
        assert!(s.contains(&format!("FLEET_CA_PEM='{}'", pem.trim())));
        assert!(
            !s.contains("@MANAGER_URL@") && !s.contains("@BROKER_URL@") && !s.contains("@CA_PEM@")
        );
        let v6 = render_script("http://[::1]:8080", "mqtt://{host}:1883", pem).expect("renders");
        assert!(v6.contains("BROKER_URL='mqtt://[::1]:1883'"));
        // A Host header cannot inject shell.
        for bad in ["http://x';rm -rf /;'", "http://a b", "http://$(id)", ""] {
            assert!(
                render_script(bad, "mqtt://{host}:1883", pem).is_err(),
                "{bad}"
            );
        }
        assert!(
            render_script(
                "http://h",
                "mqtt://{host}:1883",
                "-----BEGIN CERTIFICATE-----'$(id)'"
            )
            .is_err()
        );
    }

    #[test]
    fn the_unit_is_unprivileged_with_capture_capabilities_only() {
        for line in [
            "User=tapfleet",
            "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN",
            "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN",
            "NoNewPrivileges=yes",
            "EnvironmentFile=/etc/tapfleet/edge.env",
            "ExecStart=/usr/local/bin/tapfleet-edge run --data /var/lib/tapfleet-edge",
        ] {
            assert!(EDGE_UNIT.lines().any(|l| l == line), "{line}");
        }
    }
}
