//! TLS on the gate's public listener (rustls via tokio-rustls): [`TlsAccept`] is the gate's
//! [`Accept`] for a TLS listener. The handshake runs inside the connection's own task under the
//! gate's CONNECT deadline, so sockets that never finish a handshake block nobody else.
//!
//! Client certificates are verified against the fleet CA (`WebPkiClientVerifier`, expiry
//! included) but optional: an enrolling client without a certificate still logs in with the
//! claim token over TLS. A verified certificate's identity ([`crate::pki::cert_identity`])
//! becomes the connection's [`PeerCert`]; the gate then ignores user name and password.
//! Sessions are never resumed, so every connection presents and proves its certificate.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::BrokerError;
use crate::gate::{Accept, PeerCert};

/// The rustls server config: `cert_pem` (chain), `key_pem`, clients verified against
/// `client_ca_pem` when they present a certificate.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, BrokerError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| BrokerError::Tls(format!("{what}: {e}"));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad("server certificate", &e))?;
    if chain.is_empty() {
        return Err(BrokerError::Tls(
            "server certificate: no PEM certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad("server key", &e))?;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca_pem) {
        let c = c.map_err(|e| bad("client CA", &e))?;
        roots.add(c).map_err(|e| bad("client CA", &e))?;
    }
    if roots.is_empty() {
        return Err(BrokerError::Tls("client CA: no PEM certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad("client verifier", &e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("protocols", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad("server certificate/key", &e))?;
    // No session resumption: a resumed session would carry the first session's client
    // certificate (or none) and skip its expiry check; every connection proves its identity anew.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// [`server_config`] from PEM files.
pub fn server_config_from_files(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<Arc<rustls::ServerConfig>, BrokerError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| BrokerError::Io {
            path: p.to_owned(),
            source,
        })
    };
    server_config(&read(cert)?, &read(key)?, &read(client_ca)?)
}

/// The gate's TLS stream setup.
#[derive(Clone)]
pub struct TlsAccept {
    acceptor: TlsAcceptor,
}

impl TlsAccept {
    pub fn new(cfg: Arc<rustls::ServerConfig>) -> Self {
        TlsAccept {
            acceptor: TlsAcceptor::from(cfg),
        }
    }
}

impl Accept for TlsAccept {
    type Stream = TlsStream<TcpStream>;

    async fn accept(&self, tcp: TcpStream) -> io::Result<(Self::Stream, PeerCert)> {
        let stream = self.acceptor.accept(tcp).await?;
        let peer = match stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        {
            None => PeerCert::None,
            Some(leaf) => match crate::pki::cert_identity(leaf) {
                Ok(Some((tenant, edge))) => PeerCert::Edge { tenant, edge },
                Ok(None) => PeerCert::Invalid("the certificate names no edge".into()),
                Err(e) => PeerCert::Invalid(e.to_string()),
            },
        };
        Ok((stream, peer))
    }
}
