//! The fleet CA on disk: `DATA/ca/` (mode 0700) holds `ca.crt` and `ca.key` (0600), made once
//! at first start (ECDSA P-256, 20 years), and the broker's TLS server certificate `server.crt` +
//! `server.key` (0600), issued again at every start for the configured host names (plus
//! `localhost`, `127.0.0.1` and the listen IP), so a host name added to the config needs no
//! other step; likewise `http.crt` + `http.key` for the HTTPS listener (`--https-listen`). The certificate work itself is [`tapfleet_broker::FleetCa`].

use std::path::{Path, PathBuf};

use anyhow::Context;
use tapfleet_broker::FleetCa;

/// Lifetime of the CA certificate.
pub const CA_LIFETIME_S: i64 = 20 * 365 * 86_400;
/// Lifetime of an edge certificate (renewed by the edge when a third is left).
pub const EDGE_CERT_LIFETIME_S: i64 = 90 * 86_400;
/// Lifetime of the broker's server certificate (reissued at every start anyway).
pub const SERVER_CERT_LIFETIME_S: i64 = 365 * 86_400;

/// The CA folder.
pub fn dir(data: &Path) -> PathBuf {
    data.join("ca")
}

/// Path of the CA certificate (give it to edges as `--ca`).
pub fn ca_cert_path(data: &Path) -> PathBuf {
    dir(data).join("ca.crt")
}

/// Unix time in seconds.
pub fn now_s() -> i64 {
    crate::fleet::now_ms() / 1000
}

/// Writes `bytes` to `path` atomically with `mode`.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The fleet CA of this data dir, created on first use.
pub fn load_or_create(data: &Path) -> anyhow::Result<FleetCa> {
    let d = dir(data);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
    }
    let (cert, key) = (ca_cert_path(data), d.join("ca.key"));
    if cert.exists() && key.exists() {
        let c = std::fs::read_to_string(&cert)?;
        let k = std::fs::read_to_string(&key)?;
        return FleetCa::from_pem(&c, &k).with_context(|| format!("loading {}", d.display()));
    }
    let (ca, key_pem) = FleetCa::generate("tapfleet fleet CA", now_s(), CA_LIFETIME_S)?;
    write_file(&key, key_pem.0.as_bytes(), 0o600)?;
    write_file(&cert, ca.cert_pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert.display(), "fleet CA created");
    Ok(ca)
}

/// Issues the broker's server certificate for `hosts` into `DATA/ca/server.{crt,key}`; returns
/// their paths.
pub fn write_server_cert(
    data: &Path,
    ca: &FleetCa,
    hosts: &[String],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    write_cert(data, ca, hosts, "server", "broker")
}

/// Issues the HTTPS listener's certificate for `hosts` into `DATA/ca/http.{crt,key}`; returns
/// their paths.
pub fn write_http_cert(
    data: &Path,
    ca: &FleetCa,
    hosts: &[String],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    write_cert(data, ca, hosts, "http", "HTTPS")
}

/// A server certificate for `hosts` + `localhost` + `127.0.0.1` into `DATA/ca/STEM.{crt,key}`.
fn write_cert(
    data: &Path,
    ca: &FleetCa,
    hosts: &[String],
    stem: &str,
    what: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let mut all: Vec<String> = Vec::new();
    for h in hosts
        .iter()
        .map(String::as_str)
        .chain(["localhost", "127.0.0.1"])
    {
        if !h.is_empty() && !all.iter().any(|x| x == h) {
            all.push(h.to_owned());
        }
    }
    let issued = ca.issue_server(&all, now_s(), SERVER_CERT_LIFETIME_S)?;
    let d = dir(data);
    let (cert, key) = (d.join(format!("{stem}.crt")), d.join(format!("{stem}.key")));
    write_file(&key, issued.key_pem.0.as_bytes(), 0o600)?;
    write_file(&cert, issued.cert_pem.as_bytes(), 0o644)?;
    tracing::info!(hosts = ?all, what, "TLS server certificate issued");
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create(dir.path()).expect("created");
        let b = load_or_create(dir.path()).expect("loaded");
        assert_eq!(a.cert_pem(), b.cert_pem());
        let (_, key) =
            write_server_cert(dir.path(), &b, &["broker.example".into()]).expect("server");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [super::dir(dir.path()).join("ca.key"), key] {
                let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", p.display());
            }
        }
    }
}
