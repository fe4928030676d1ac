//! HTTPS for the manager's HTTP API and dashboard (`--https-listen`): a rustls server config from
//! the fleet CA's server certificate ([`crate::ca::write_server_cert`]) and [`TlsListener`], an
//! `axum::serve` listener whose TLS handshakes each run in a task of their own under
//! [`HANDSHAKE_TIMEOUT`], so sockets that never finish a handshake block nobody else. Requests
//! served over it carry the [`OverTls`] extension (the session cookie gets `Secure`, the install
//! script an `https://` URL). Also: the plain-listener policy ([`check_plain_listener`]) and the
//! CA fingerprint the manager prints at start ([`fingerprint_sha256`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a connection may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; a connection beyond that is closed at once.
pub const MAX_HANDSHAKES: usize = 1024;
/// The command-line flag that allows plain listeners beyond loopback.
pub const ALLOW_PLAIN_FLAG: &str = "--allow-plain-non-loopback";

/// Request extension: the request came over TLS.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// Refuses a plain (non-TLS) `what` listener on `addr` beyond loopback unless `allow`.
pub fn check_plain_listener(what: &str, addr: SocketAddr, allow: bool) -> anyhow::Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    anyhow::ensure!(
        allow,
        "refusing a plain {what} listener on {addr} (not loopback): credentials would travel in \
         clear; use the TLS listener instead, or pass {ALLOW_PLAIN_FLAG} to accept the risk"
    );
    tracing::warn!(listen = %addr, what, "plain listener beyond loopback ({ALLOW_PLAIN_FLAG})");
    Ok(())
}

/// SHA-256 fingerprint of a PEM certificate as `AB:CD:...` (what
/// `openssl x509 -noout -fingerprint -sha256` prints).
pub fn fingerprint_sha256(cert_pem: &str) -> anyhow::Result<String> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).context("CA certificate")?;
    let digest = sha2::Sha256::digest(der.as_ref());
    Ok(digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// The rustls server config for `cert_pem` (chain) and `key_pem`; no client certificates
/// (browsers and scripts log in with a session or an API token), HTTP/1.1.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .context("HTTPS server certificate")?;
    anyhow::ensure!(
        !chain.is_empty(),
        "HTTPS server certificate: no PEM certificate"
    );
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("HTTPS server key")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("HTTPS server certificate/key")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A TLS listener for `axum::serve`: a background task accepts TCP connections and spawns a
/// handshake task for each; finished handshakes are handed to [`axum::serve::Listener::accept`].
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp` with `cfg`; each handshake gets `handshake_timeout`.
    pub fn new(
        tcp: TcpListener,
        cfg: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(
            tcp,
            TlsAcceptor::from(cfg),
            handshake_timeout,
            tx,
        ));
        Ok(Self {
            rx,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (sock, peer) = match tcp.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "HTTPS accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = MAX_HANDSHAKES, "HTTPS: too many handshakes in progress; connection closed");
            continue;
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = sock.set_nodelay(true);
            match tokio::time::timeout(handshake_timeout, acceptor.accept(sock)).await {
                Ok(Ok(tls)) => {
                    drop(permit);
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTPS handshake failed"),
                Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop never ends on its own; if it is gone, so is this listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_listeners_beyond_loopback_need_the_flag() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let v6: SocketAddr = "[::1]:8080".parse().expect("addr");
        assert!(check_plain_listener("HTTP", lo, false).is_ok());
        assert!(check_plain_listener("HTTP", v6, false).is_ok());
        let e = check_plain_listener("HTTP", any, false).expect_err("refused");
        assert!(e.to_string().contains(ALLOW_PLAIN_FLAG), "{e}");
        assert!(check_plain_listener("HTTP", any, true).is_ok());
    }
}
