//! Storage targets: named OpenDAL operators built from the manager's TOML config (`--config`).
//!
//! ```toml
//! [targets.cloud]                      # S3 or compatible (MinIO, Ceph, s3s, ...)
//! type = "s3"
//! bucket = "recordings"
//! endpoint = "https://s3.eu-central-1.amazonaws.com"   # optional: AWS by default
//! region = "eu-central-1"              # optional: "us-east-1" by default
//! root = "/tapfleet"                   # optional key prefix
//! access_key_id = { env = "TAPFLEET_S3_KEY_ID" }       # secrets: { env = NAME },
//! secret_access_key = { env = "TAPFLEET_S3_SECRET" }   # { file = PATH } or a literal
//!
//! [targets.private]                    # also: fs, webdav, azblob, gcs (see [`TargetConfig`])
//! type = "sftp"
//! endpoint = "ssh://backup@nas.example:22"
//! root = "/srv/recordings"
//! key = "/etc/tapfleet/sftp_ed25519"
//!
//! [storage]                            # optional: every target's retries and timeouts
//! retries = 4
//! timeout_secs = 120
//! io_timeout_secs = 60
//! ```
//! Without a config, `cloud` is an fs target at `DATA/targets/cloud`; a configured `cloud`
//! replaces it. Adding a service is one [`TargetConfig`] variant and one arm in
//! [`build_operator`]. Secret values are resolved here and never logged (their `Debug` is
//! redacted); errors name the target and the field.
//!
//! Every operator gets a timeout layer (per operation and per IO step) under a retry layer
//! (exponential backoff with jitter), so a slow or flapping target is retried and then fails
//! the transfer cleanly (the edge offers again later). How each kind keeps half objects
//! invisible is in [`crate::mover::commit`]: fs writes into a temporary folder (a sibling of
//! the root, `.tmp-NAME`, on the same file system: OpenDAL's `atomic_write_dir`, and the
//! mover's direct-IO writer) and renames on close (temp files left by a crash are removed here
//! at start); S3/Azure/GCS objects appear only at the single PUT or the
//! multipart complete (S3 append writes are never enabled: an append silently replaces the
//! object); SFTP and WebDAV write a hidden temporary name and rename it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opendal::Operator;
use opendal::layers::{CapabilityOverrideLayer, RetryLayer, TimeoutLayer};
use serde::Deserialize;

use crate::mover::direct::LocalDirs;

/// Crates that log credentials at debug level (reqsign prints the static credential
/// provider, secret included): the binary caps them at `info` whatever the log filter says.
pub const SECRET_LOGGING_CRATES: &[&str] = &[
    "reqsign_core",
    "reqsign_aws_core",
    "reqsign_aws_v4",
    "reqsign_azure_storage",
    "reqsign_google",
    "reqsign_file_read_tokio",
];

/// The name of the default target.
pub const DEFAULT_TARGET: &str = "cloud";

/// The manager's TOML config file (`--config`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagerConfig {
    pub targets: BTreeMap<String, TargetConfig>,
    pub storage: StorageOptions,
    /// Alert thresholds and the webhook (`[alerts]`, see [`crate::alerts::AlertConfig`]).
    pub alerts: crate::alerts::AlertConfig,
}

/// Retries and timeouts applied to every target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageOptions {
    /// Retries of a failed temporary error (backoff 0.5 s doubling up to 30 s, with jitter).
    pub retries: usize,
    /// Limit of one whole operation (stat, delete, rename, ...), seconds.
    pub timeout_secs: u64,
    /// Limit of one IO step (writing one part, closing a writer), seconds.
    pub io_timeout_secs: u64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            retries: 4,
            timeout_secs: 120,
            io_timeout_secs: 60,
        }
    }
}

/// A secret value in the config: `{ env = "NAME" }` (an environment variable), `{ file = PATH }`
/// (its content, trailing newline removed) or a literal string. `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    Env { env: String },
    File { file: PathBuf },
    Value(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Env { env } => write!(f, "Secret(env {env})"),
            Secret::File { file } => write!(f, "Secret(file {})", file.display()),
            Secret::Value(_) => f.write_str("Secret(<redacted>)"),
        }
    }
}

impl Secret {
    /// The value; errors name the target and the field, never the value.
    pub fn resolve(&self, target: &str, field: &'static str) -> Result<String, TargetError> {
        let bad = |reason: String| TargetError::Field {
            name: target.to_owned(),
            field,
            reason,
        };
        let v = match self {
            Secret::Env { env } => std::env::var(env)
                .map_err(|_| bad(format!("environment variable {env} is not set")))?,
            Secret::File { file } => std::fs::read_to_string(file)
                .map_err(|e| bad(format!("cannot read {}: {e}", file.display())))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
            Secret::Value(v) => v.clone(),
        };
        if v.is_empty() {
            return Err(bad("is empty".into()));
        }
        Ok(v)
    }
}

/// One target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetConfig {
    /// A local directory.
    Fs { root: PathBuf },
    /// Amazon S3 or an S3-compatible service.
    S3(S3Target),
    /// A directory on an SSH server (uses the system `ssh` client).
    Sftp(SftpTarget),
    /// A WebDAV collection.
    Webdav(WebdavTarget),
    /// An Azure Blob Storage container.
    Azblob(AzblobTarget),
    /// A Google Cloud Storage bucket.
    Gcs(GcsTarget),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Target {
    pub bucket: String,
    /// `http(s)://host[:port]`; AWS's endpoint of the region when absent.
    pub endpoint: Option<String>,
    /// `us-east-1` when absent (what MinIO and most compatible servers expect).
    pub region: Option<String>,
    /// Key prefix inside the bucket.
    pub root: Option<String>,
    /// Static credentials (both or neither); without them the AWS chain is used
    /// (`AWS_*` variables, `~/.aws`, instance metadata).
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    /// `bucket.host` addressing instead of `host/bucket`.
    #[serde(default)]
    pub virtual_host_style: bool,
    pub storage_class: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpTarget {
    /// `[user@]host` or `ssh://[user@]host[:port]`.
    pub endpoint: String,
    /// Absolute directory on the server.
    pub root: String,
    pub user: Option<String>,
    /// Private key file (the ssh client's defaults and agent otherwise).
    pub key: Option<PathBuf>,
    /// Host key check: `strict` (default: the key must be in known_hosts), `add` (trust on
    /// first use) or `accept` (no check: tests only).
    #[serde(default)]
    pub known_hosts: KnownHosts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnownHosts {
    #[default]
    Strict,
    Add,
    Accept,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebdavTarget {
    /// `http(s)://host[:port]`.
    pub endpoint: String,
    /// Collection path under the endpoint.
    pub root: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Bearer token (instead of username/password).
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzblobTarget {
    pub container: String,
    /// `https://ACCOUNT.blob.core.windows.net` when absent.
    pub endpoint: Option<String>,
    pub account_name: Option<String>,
    pub account_key: Option<Secret>,
    pub sas_token: Option<Secret>,
    pub root: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsTarget {
    pub bucket: String,
    pub root: Option<String>,
    pub endpoint: Option<String>,
    /// Service account JSON key file (the default chain otherwise).
    pub credential_path: Option<PathBuf>,
    /// Service account JSON key, base64.
    pub credential: Option<Secret>,
}

/// Why a target could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target {name}: {source}")]
    Opendal {
        name: String,
        source: opendal::Error,
    },
    #[error("target {name}: {path}: {source}")]
    Io {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("target {name}: `{field}` {reason}")]
    Field {
        name: String,
        field: &'static str,
        reason: String,
    },
    #[error("target name {0:?} may only hold a-z, 0-9, '-' and '_'")]
    BadName(String),
}

fn field_err(name: &str, field: &'static str, reason: impl Into<String>) -> TargetError {
    TargetError::Field {
        name: name.to_owned(),
        field,
        reason: reason.into(),
    }
}

fn non_empty(name: &str, field: &'static str, v: &str) -> Result<(), TargetError> {
    if v.trim().is_empty() {
        return Err(field_err(name, field, "must not be empty"));
    }
    Ok(())
}

fn http_url(name: &str, field: &'static str, v: &str) -> Result<(), TargetError> {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(()),
        _ => Err(field_err(
            name,
            field,
            format!("must be an http:// or https:// URL with a host, not {v:?}"),
        )),
    }
}

fn secret(
    name: &str,
    field: &'static str,
    s: &Option<Secret>,
) -> Result<Option<String>, TargetError> {
    s.as_ref().map(|s| s.resolve(name, field)).transpose()
}

/// One target: its OpenDAL operator (with the retry and timeout layers) and, for a local fs
/// target, the folders of the direct-IO writer ([`crate::mover::direct`]). Derefs to the
/// operator.
#[derive(Clone, Debug)]
pub struct Target {
    op: Operator,
    local: Option<Arc<LocalDirs>>,
}

impl Target {
    /// The operator.
    pub fn op(&self) -> &Operator {
        &self.op
    }

    /// The folders of a local fs target (none for remote services).
    pub fn local(&self) -> Option<&Arc<LocalDirs>> {
        self.local.as_ref()
    }
}

impl From<Operator> for Target {
    fn from(op: Operator) -> Self {
        Target { op, local: None }
    }
}

impl std::ops::Deref for Target {
    type Target = Operator;
    fn deref(&self) -> &Operator {
        &self.op
    }
}

/// Builds one target: its operator, with the retry and timeout layers.
pub fn build_operator(
    name: &str,
    cfg: &TargetConfig,
    opts: &StorageOptions,
) -> Result<Target, TargetError> {
    // HTTP services need the process-wide HTTP transport; idempotent.
    opendal::install_default();
    let op_err = |source| TargetError::Opendal {
        name: name.to_owned(),
        source,
    };
    let mut local = None;
    let op = match cfg {
        TargetConfig::Fs { root } => {
            let tmp = fs_tmp_dir(root, name);
            clear_dir(name, &tmp)?;
            std::fs::create_dir_all(root).map_err(|source| TargetError::Io {
                name: name.to_owned(),
                path: root.clone(),
                source,
            })?;
            let builder = opendal::services::Fs::default()
                .root(&root.to_string_lossy())
                .atomic_write_dir(&tmp.to_string_lossy());
            local = Some(Arc::new(LocalDirs::new(root.clone(), tmp)));
            Operator::new(builder).map_err(op_err)?
        }
        TargetConfig::S3(c) => {
            non_empty(name, "bucket", &c.bucket)?;
            let mut b = opendal::services::S3::default()
                .bucket(&c.bucket)
                .region(c.region.as_deref().unwrap_or("us-east-1"))
                .root(c.root.as_deref().unwrap_or("/"));
            if let Some(e) = &c.endpoint {
                http_url(name, "endpoint", e)?;
                b = b.endpoint(e);
            }
            let key_id = secret(name, "access_key_id", &c.access_key_id)?;
            let key = secret(name, "secret_access_key", &c.secret_access_key)?;
            match (key_id, key) {
                (Some(id), Some(key)) => {
                    // Static credentials only: no surprise from ~/.aws or AWS_* variables.
                    b = b
                        .access_key_id(&id)
                        .secret_access_key(&key)
                        .disable_config_load();
                }
                (None, None) => {}
                (Some(_), None) => {
                    return Err(field_err(
                        name,
                        "secret_access_key",
                        "is required with access_key_id",
                    ));
                }
                (None, Some(_)) => {
                    return Err(field_err(
                        name,
                        "access_key_id",
                        "is required with secret_access_key",
                    ));
                }
            }
            if let Some(t) = secret(name, "session_token", &c.session_token)? {
                b = b.session_token(&t);
            }
            if c.virtual_host_style {
                b = b.enable_virtual_host_style();
            }
            if let Some(sc) = &c.storage_class {
                b = b.default_storage_class(sc);
            }
            // OpenDAL 0.59 enables S3 append writes natively; an append silently replaces an
            // object (and most compatible servers lack it): turn the capability off.
            Operator::new(b)
                .map_err(op_err)?
                .layer(CapabilityOverrideLayer::new(|mut c| {
                    c.write_can_append = false;
                    c
                }))
        }
        TargetConfig::Sftp(c) => {
            non_empty(name, "endpoint", &c.endpoint)?;
            if !c.root.starts_with('/') {
                return Err(field_err(name, "root", "must be an absolute path"));
            }
            let mut b = opendal::services::Sftp::default()
                .endpoint(&c.endpoint)
                .root(&c.root)
                .known_hosts_strategy(match c.known_hosts {
                    KnownHosts::Strict => "strict",
                    KnownHosts::Add => "add",
                    KnownHosts::Accept => "accept",
                });
            if let Some(u) = &c.user {
                non_empty(name, "user", u)?;
                b = b.user(u);
            }
            if let Some(k) = &c.key {
                std::fs::File::open(k)
                    .map_err(|e| field_err(name, "key", format!("{}: {e}", k.display())))?;
                b = b.key(&k.to_string_lossy());
            }
            Operator::new(b).map_err(op_err)?
        }
        TargetConfig::Webdav(c) => {
            http_url(name, "endpoint", &c.endpoint)?;
            let mut b = opendal::services::Webdav::default()
                .endpoint(&c.endpoint)
                .root(c.root.as_deref().unwrap_or("/"));
            if let Some(u) = &c.username {
                b = b.username(u);
            }
            if let Some(p) = secret(name, "password", &c.password)? {
                if c.username.is_none() {
                    return Err(field_err(name, "username", "is required with password"));
                }
                b = b.password(&p);
            }
            if let Some(t) = secret(name, "token", &c.token)? {
                b = b.token(&t);
            }
            Operator::new(b).map_err(op_err)?
        }
        TargetConfig::Azblob(c) => {
            non_empty(name, "container", &c.container)?;
            let endpoint = match (&c.endpoint, &c.account_name) {
                (Some(e), _) => e.clone(),
                (None, Some(a)) => format!("https://{a}.blob.core.windows.net"),
                (None, None) => {
                    return Err(field_err(
                        name,
                        "endpoint",
                        "is required when account_name is not set",
                    ));
                }
            };
            http_url(name, "endpoint", &endpoint)?;
            let mut b = opendal::services::Azblob::default()
                .container(&c.container)
                .endpoint(&endpoint)
                .root(c.root.as_deref().unwrap_or("/"));
            if let Some(a) = &c.account_name {
                b = b.account_name(a);
            }
            if let Some(k) = secret(name, "account_key", &c.account_key)? {
                if c.account_name.is_none() {
                    return Err(field_err(
                        name,
                        "account_name",
                        "is required with account_key",
                    ));
                }
                b = b.account_key(&k);
            }
            if let Some(s) = secret(name, "sas_token", &c.sas_token)? {
                b = b.sas_token(&s);
            }
            Operator::new(b).map_err(op_err)?
        }
        TargetConfig::Gcs(c) => {
            non_empty(name, "bucket", &c.bucket)?;
            let mut b = opendal::services::Gcs::default()
                .bucket(&c.bucket)
                .root(c.root.as_deref().unwrap_or("/"));
            if let Some(e) = &c.endpoint {
                http_url(name, "endpoint", e)?;
                b = b.endpoint(e);
            }
            if let Some(p) = &c.credential_path {
                std::fs::File::open(p).map_err(|e| {
                    field_err(name, "credential_path", format!("{}: {e}", p.display()))
                })?;
                b = b.credential_path(&p.to_string_lossy());
            }
            if let Some(k) = secret(name, "credential", &c.credential)? {
                b = b.credential(&k);
            }
            Operator::new(b).map_err(op_err)?
        }
    };
    Ok(Target {
        op: with_layers(op, opts),
        local,
    })
}

/// Timeouts under retries: a timed-out step is a temporary error, so it is retried.
fn with_layers(op: Operator, opts: &StorageOptions) -> Operator {
    op.layer(
        TimeoutLayer::new()
            .with_timeout(Duration::from_secs(opts.timeout_secs.max(1)))
            .with_io_timeout(Duration::from_secs(opts.io_timeout_secs.max(1))),
    )
    .layer(
        RetryLayer::new()
            .with_jitter()
            .with_factor(2.0)
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(opts.retries),
    )
}

fn fs_tmp_dir(root: &Path, name: &str) -> PathBuf {
    let parent = root.parent().unwrap_or(root);
    parent.join(format!(".tmp-{name}"))
}

fn clear_dir(name: &str, dir: &Path) -> Result<(), TargetError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(TargetError::Io {
                name: name.to_owned(),
                path: dir.to_owned(),
                source,
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| TargetError::Io {
        name: name.to_owned(),
        path: dir.to_owned(),
        source,
    })
}

/// The targets by name.
#[derive(Clone, Debug)]
pub struct Targets {
    ops: BTreeMap<String, Target>,
}

impl Targets {
    /// Builds every configured target, adding `cloud` at `DATA/targets/cloud` if not configured.
    pub fn build(cfg: &ManagerConfig, data_dir: &Path) -> Result<Self, TargetError> {
        let mut all = cfg.targets.clone();
        all.entry(DEFAULT_TARGET.to_owned())
            .or_insert_with(|| TargetConfig::Fs {
                root: data_dir.join("targets").join(DEFAULT_TARGET),
            });
        let mut ops = BTreeMap::new();
        for (name, t) in &all {
            if tapfleet_schemas::topic::validate_id(name).is_err() {
                return Err(TargetError::BadName(name.clone()));
            }
            let op = build_operator(name, t, &cfg.storage)?;
            tracing::info!(target_name = %name, kind = op.info().scheme(), root = %op.info().root(), "storage target");
            ops.insert(name.clone(), op);
        }
        // The relay's internal staging (`_relay`: no configured name can start with '_').
        let staging = TargetConfig::Fs {
            root: data_dir.join("relay"),
        };
        let op = build_operator(crate::relay::STAGING, &staging, &cfg.storage)?;
        ops.insert(crate::relay::STAGING.to_owned(), op);
        Ok(Targets { ops })
    }

    /// A target by name.
    pub fn get(&self, name: &str) -> Option<&Target> {
        self.ops.get(name)
    }

    /// The configured targets' names (not the relay's internal staging).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ops
            .keys()
            .map(String::as_str)
            .filter(|n| *n != crate::relay::STAGING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ManagerConfig, toml::de::Error> {
        toml::from_str(s)
    }

    fn build_err(toml_text: &str) -> String {
        let cfg = parse(toml_text).expect("parses");
        let dir = tempfile::tempdir().expect("tempdir");
        match Targets::build(&cfg, dir.path()) {
            Ok(_) => panic!("built: {toml_text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn config_parses_and_default_cloud_is_added() {
        let cfg = parse("[targets.private]\ntype = \"fs\"\nroot = \"/tmp/x\"\n").expect("parses");
        assert_eq!(
            cfg.targets.get("private"),
            Some(&TargetConfig::Fs {
                root: "/tmp/x".into()
            })
        );
        assert!(parse("[targets.x]\ntype = \"ftp\"\n").is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Targets::build(&ManagerConfig::default(), dir.path()).expect("builds");
        assert_eq!(t.names().collect::<Vec<_>>(), vec!["cloud"]);
        assert!(dir.path().join("targets/cloud").is_dir());
    }

    #[tokio::test]
    async fn every_kind_parses_and_builds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "not checked until connect").expect("key");
        let text = format!(
            r#"
            [storage]
            retries = 2
            timeout_secs = 10
            io_timeout_secs = 5

            [targets.cloud]
            type = "s3"
            bucket = "recordings"
            endpoint = "http://127.0.0.1:9000"
            root = "/tapfleet"
            access_key_id = "AKIDEXAMPLE"
            secret_access_key = {{ env = "TAPFLEET_TEST_TARGETS_SECRET" }}

            [targets.nas]
            type = "sftp"
            endpoint = "ssh://backup@127.0.0.1:2222"
            root = "/srv/recordings"
            key = "{}"
            known_hosts = "add"

            [targets.dav]
            type = "webdav"
            endpoint = "https://dav.example"
            root = "/remote.php/dav/files/rec"
            username = "rec"
            password = {{ file = "{}" }}

            [targets.az]
            type = "azblob"
            container = "recordings"
            account_name = "tapfleet"
            account_key = "dGVzdA=="

            [targets.gc]
            type = "gcs"
            bucket = "recordings"
            "#,
            key.display(),
            key.display(),
        );
        let cfg = parse(&text).expect("parses");
        assert_eq!(cfg.storage.retries, 2);
        match cfg.targets.get("nas") {
            Some(TargetConfig::Sftp(s)) => assert_eq!(s.known_hosts, KnownHosts::Add),
            other => panic!("{other:?}"),
        }
        // The env secret is missing: the error names the target, the field and the variable.
        let err = Targets::build(&cfg, dir.path()).expect_err("missing env");
        let msg = err.to_string();
        assert!(msg.contains("target cloud"), "{msg}");
        assert!(msg.contains("`secret_access_key`"), "{msg}");
        assert!(msg.contains("TAPFLEET_TEST_TARGETS_SECRET"), "{msg}");

        // With the secret from a file instead: every target builds, with its scheme.
        let secret_file = dir.path().join("s3.secret");
        std::fs::write(&secret_file, "wJalrXUtnFEMI\n").expect("secret");
        let text = text.replace(
            "{ env = \"TAPFLEET_TEST_TARGETS_SECRET\" }",
            &format!("{{ file = \"{}\" }}", secret_file.display()),
        );
        let cfg = parse(&text).expect("parses");
        let t = Targets::build(&cfg, dir.path()).expect("builds");
        assert_eq!(
            t.names().collect::<Vec<_>>(),
            vec!["az", "cloud", "dav", "gc", "nas"]
        );
        let scheme = |n: &str| t.get(n).expect("target").info().scheme();
        assert_eq!(scheme("cloud"), "s3");
        assert_eq!(scheme("nas"), "sftp");
        assert_eq!(scheme("dav"), "webdav");
        assert_eq!(scheme("az"), "azblob");
        assert_eq!(scheme("gc"), "gcs");
        // S3 appends are never enabled (they silently replace the object).
        assert!(
            !t.get("cloud")
                .expect("s3")
                .info()
                .capability()
                .write_can_append
        );
        // Secrets never show in Debug output.
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("dGVzdA=="), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
    }

    #[test]
    fn the_deploy_example_parses() {
        let cfg = parse(include_str!("../../deploy/manager.toml.example")).expect("parses");
        assert!(matches!(
            cfg.targets.get("cloud"),
            Some(TargetConfig::S3(_))
        ));
        assert!(matches!(
            cfg.targets.get("private"),
            Some(TargetConfig::Sftp(_))
        ));
        assert_eq!(cfg.storage, StorageOptions::default());
    }

    #[test]
    fn bad_fields_are_named() {
        let e = build_err("[targets.cloud]\ntype = \"s3\"\nbucket = \"\"\n");
        assert!(
            e.contains("target cloud: `bucket` must not be empty"),
            "{e}"
        );
        let e = build_err(
            "[targets.cloud]\ntype = \"s3\"\nbucket = \"b\"\nendpoint = \"localhost:9000\"\n",
        );
        assert!(
            e.contains("`endpoint` must be an http:// or https:// URL"),
            "{e}"
        );
        let e =
            build_err("[targets.cloud]\ntype = \"s3\"\nbucket = \"b\"\naccess_key_id = \"k\"\n");
        assert!(e.contains("`secret_access_key` is required"), "{e}");
        let e = build_err("[targets.p]\ntype = \"sftp\"\nendpoint = \"h\"\nroot = \"rel\"\n");
        assert!(
            e.contains("target p: `root` must be an absolute path"),
            "{e}"
        );
        let e = build_err(
            "[targets.p]\ntype = \"sftp\"\nendpoint = \"h\"\nroot = \"/r\"\nkey = \"/nonexistent/key\"\n",
        );
        assert!(e.contains("target p: `key` /nonexistent/key"), "{e}");
        let e = build_err("[targets.d]\ntype = \"webdav\"\nendpoint = \"ftp://x\"\n");
        assert!(e.contains("target d: `endpoint`"), "{e}");
        let e = build_err("[targets.a]\ntype = \"azblob\"\ncontainer = \"c\"\n");
        assert!(e.contains("target a: `endpoint` is required"), "{e}");
        let e = build_err("[targets.Bad]\ntype = \"fs\"\nroot = \"/tmp/x\"\n");
        assert!(e.contains("target name \"Bad\""), "{e}");
        // Unknown fields and kinds are parse errors naming them.
        let e = parse("[targets.c]\ntype = \"s3\"\nbucket = \"b\"\nappend = true\n")
            .expect_err("unknown field")
            .to_string();
        assert!(e.contains("append"), "{e}");
        let e = parse("[targets.c]\ntype = \"s3\"\n")
            .expect_err("missing field")
            .to_string();
        assert!(e.contains("bucket"), "{e}");
    }
}
