//! The manager's outgoing HTTP(S): ureq agents with rustls on the aws-lc-rs provider (the one the
//! manager's own TLS servers use; ureq is built without ring and without its bundled roots), and
//! the roots they trust:
//! - the CLI (`job`, `config`, `token`, `edge`, `hold` against `--manager https://...`): the
//!   system's roots plus `--ca-file` (default [`DEFAULT_CA_FILE`], the manager's own CA when the
//!   CLI runs on the manager host of the packaged unit and may read it);
//! - the alert webhook: the system's roots plus its optional `ca_file`.
//!
//! The system's roots come from `rustls-native-certs` (the OS store: `/etc/ssl/certs` on Debian,
//! `SSL_CERT_FILE`/`SSL_CERT_DIR` honoured). They are read only for an `https://` URL.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// The fleet CA of the packaged manager (`serve --data /var/lib/tapfleet-manager`).
pub const DEFAULT_CA_FILE: &str = "/var/lib/tapfleet-manager/ca/ca.crt";

/// Why the trusted roots could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsClientError {
    #[error("CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
}

/// The certificates of a PEM file (one or more `CERTIFICATE` blocks).
pub fn pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>, TlsClientError> {
    let bad = |reason: String| TlsClientError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs: Vec<Certificate<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .map(|c| c.map(|der| Certificate::from_der(der.as_ref()).to_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

/// The system's trusted roots (none if the store cannot be read; logged).
pub fn system_roots() -> Vec<Certificate<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "a system root certificate was not read");
    }
    if found.certs.is_empty() {
        tracing::warn!("no system root certificates: only an explicit CA file is trusted");
    }
    found
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect()
}

/// Roots for `url`: for `https://`, the system's plus the certificates of `extra`; for anything
/// else none are needed (an empty list).
pub fn roots_for(
    url: &str,
    extra: Option<&Path>,
) -> Result<Vec<Certificate<'static>>, TlsClientError> {
    if !url.starts_with("https://") {
        return Ok(Vec::new());
    }
    let mut roots = system_roots();
    if let Some(path) = extra {
        roots.extend(pem_certs(path)?);
    }
    Ok(roots)
}

/// A ureq agent: status codes are answers (not errors), `timeout` for a whole call, TLS with
/// rustls (aws-lc-rs) trusting exactly `roots`.
pub fn agent(timeout: Duration, roots: Vec<Certificate<'static>>) -> ureq::Agent {
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .build();
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .tls_config(tls)
            .build(),
    )
}

/// The CA file the CLI trusts besides the system's roots: `--ca-file`, else
/// [`DEFAULT_CA_FILE`] when it is readable.
pub fn cli_ca_file(ca_file: Option<&Path>) -> Option<PathBuf> {
    match ca_file {
        Some(p) => Some(p.to_owned()),
        None => {
            let p = Path::new(DEFAULT_CA_FILE);
            std::fs::File::open(p).is_ok().then(|| p.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_are_read_or_refused_with_their_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, _) =
            tapfleet_broker::FleetCa::generate("test CA", 1_700_000_000, 86_400).expect("CA");
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, format!("{}{}", ca.cert_pem(), ca.cert_pem())).expect("write");
        assert_eq!(pem_certs(&good).expect("two certificates").len(), 2);
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = pem_certs(&empty).expect_err("refused").to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = pem_certs(&dir.path().join("missing.pem")).expect_err("refused");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        // Plain http needs no roots, not even a readable CA file.
        assert!(
            roots_for("http://h/x", Some(&empty))
                .expect("plain")
                .is_empty()
        );
        let roots = roots_for("https://h/x", Some(&good)).expect("https");
        assert!(roots.len() >= 2);
        assert!(roots_for("https://h/x", Some(&empty)).is_err());
    }
}
