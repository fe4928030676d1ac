//! The broker process: binds the public listener, starts rumqttd on an internal loopback port and
//! the gate in front of it ([`start`]), and the errors of doing so.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;

use sha2::Digest;
use std::thread;
use std::time::{Duration, Instant};

pub use crate::acl::Identity;
pub use crate::config::{BrokerConfig, TlsListenConfig};
pub use crate::credentials::{
    ClaimValidator, CredentialStore, CredentialsFile, ENROLL_CLIENT_PREFIX, ENROLL_USERNAME,
    LoginError, PasswordHash, Role, claim_token_digest, watch_file,
};
pub use crate::gate::GateCounts;
pub use crate::gate::PeerCert;
use crate::gate::{self, Gate, GateStats};
pub use crate::local::{LocalLinkError, LocalReceiver, LocalSender};
pub use crate::pki::{FleetCa, Issued, PkiError, Secret};
pub use crate::tls::{server_config, server_config_from_files};
use std::sync::Arc;

/// How long [`start`] waits for the listener to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the broker could not start, or credentials could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid broker config: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("broker did not accept connections on {0} within {START_TIMEOUT:?}")]
    NotListening(SocketAddr),
    #[error("cannot start the broker thread: {0}")]
    Thread(std::io::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad credentials: {0}")]
    Credentials(String),
    #[error("no randomness: {0}")]
    Random(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// A running broker.
#[derive(Debug)]
pub struct BrokerHandle {
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    credentials: CredentialStore,
    thread: thread::JoinHandle<()>,
    gate_thread: thread::JoinHandle<()>,
    stats: Arc<GateStats>,
    connector: crate::local::Connector,
}

impl BrokerHandle {
    /// The gate's counters (connections, refusals).
    pub fn gate_counts(&self) -> GateCounts {
        self.stats.snapshot()
    }

    /// The address the public listener (the gate) is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the TLS listener, if one is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The store that decides logins (shared: changes apply to the next CONNECT).
    pub fn credentials(&self) -> &CredentialStore {
        &self.credentials
    }

    /// A client inside this process ([`crate::local`]): it reaches rumqttd's router directly,
    /// not through the gate. Blocks until the router acknowledges the link.
    pub fn connect_local(
        &self,
        client_id: &str,
    ) -> Result<(LocalSender, LocalReceiver), LocalLinkError> {
        (self.connector.0)(client_id)
    }

    /// Whether the broker's threads are still running.
    pub fn is_running(&self) -> bool {
        !self.thread.is_finished() && !self.gate_thread.is_finished()
    }

    /// Blocks until the broker stops (it normally never does).
    pub fn join(self) {
        let _ = self.gate_thread.join();
        let _ = self.thread.join();
    }
}

/// Starts rumqttd and the gate with `cfg`, deciding logins with `creds`; returns once the broker
/// accepts connections.
///
/// The public listener is bound here (port 0 picks a free port: see
/// [`BrokerHandle::local_addr`]), so another process on the port is reported as
/// [`BrokerError::Bind`]. rumqttd gets a free loopback port of its own.
pub fn start(cfg: BrokerConfig, creds: CredentialStore) -> Result<BrokerHandle, BrokerError> {
    cfg.validate()?;
    let bind_err = |addr: SocketAddr| move |source| BrokerError::Bind { addr, source };
    let public = TcpListener::bind(cfg.listen).map_err(bind_err(cfg.listen))?;
    let local_addr = public.local_addr().map_err(bind_err(cfg.listen))?;
    public.set_nonblocking(true).map_err(bind_err(cfg.listen))?;
    if !local_addr.ip().is_loopback() {
        tracing::warn!(listen = %local_addr, "plain MQTT listener beyond loopback: passwords and traffic travel in clear; use [tls]");
    }
    let tls = match &cfg.tls {
        None => None,
        Some(t) => {
            let server = crate::tls::server_config_from_files(&t.cert, &t.key, &t.client_ca)?;
            let l = TcpListener::bind(t.listen).map_err(bind_err(t.listen))?;
            let addr = l.local_addr().map_err(bind_err(t.listen))?;
            l.set_nonblocking(true).map_err(bind_err(t.listen))?;
            Some((l, addr, crate::tls::TlsAccept::new(server)))
        }
    };
    let tls_addr = tls.as_ref().map(|(_, a, _)| *a);
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let internal = {
        let probe = TcpListener::bind(loopback).map_err(bind_err(loopback))?;
        probe.local_addr().map_err(bind_err(loopback))?
    };
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| BrokerError::Random(e.to_string()))?;
    let secret = hex::encode(secret);

    let mut rcfg = cfg.to_rumqttd(internal);
    if let Some(servers) = rcfg.v4.as_mut() {
        for server in servers.values_mut() {
            let expected = sha2::Sha256::digest(secret.as_bytes());
            server.set_auth_handler(move |client_id: String, _user: String, pass: String| {
                let ok = sha2::Sha256::digest(pass.as_bytes()) == expected;
                if !ok {
                    tracing::warn!(%client_id, "internal broker: login without the gate refused");
                }
                async move { ok }
            });
        }
    }
    // rumqttd's router on its own thread, then its v4 listener (what `rumqttd::Broker::start`
    // does, minus what we keep off: metrics, bridge, console). Done by hand so that local links
    // get `dynamic_filters` (`Broker::link` cannot set it).
    let router_tx = rumqttd::Router::new(rcfg.id, rcfg.router.clone()).spawn();
    // A closure: the router channel's type is not nameable outside rumqttd.
    let link_tx = router_tx.clone();
    let connector = crate::local::Connector(Box::new(move |client_id: &str| {
        let (tx, rx, _connack) = rumqttd::local::LinkBuilder::new(client_id, link_tx.clone())
            .dynamic_filters(true)
            .clean_session(true)
            .build()?;
        Ok(crate::local::from_link(tx, rx))
    }));
    let server = rcfg
        .v4
        .as_ref()
        .and_then(|v| v.values().next().cloned())
        .ok_or_else(|| BrokerError::Config("no v4 listener".into()))?;
    let thread = thread::Builder::new()
        .name("tapfleet-broker".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "broker runtime");
                    return;
                }
            };
            let mut server = rumqttd::Server::new(server, router_tx, rumqttd::protocol::v4::V4);
            runtime.block_on(async move {
                if let Err(e) = server.start(rumqttd::LinkType::Remote).await {
                    tracing::error!(error = %e, "broker stopped");
                }
            });
        })
        .map_err(BrokerError::Thread)?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&internal, Duration::from_millis(200)).is_ok() {
            break;
        }
        if thread.is_finished() || Instant::now() >= deadline {
            return Err(BrokerError::NotListening(internal));
        }
        thread::sleep(Duration::from_millis(20));
    }

    let stats = Arc::new(GateStats::default());
    let gate = Arc::new(Gate {
        creds: creds.clone(),
        internal,
        internal_secret: secret,
        max_packet: cfg.max_payload_size,
        connect_timeout: Duration::from_millis(u64::from(cfg.connection_timeout_ms)),
        max_connections: cfg.max_connections,
        stats: stats.clone(),
        direct: Some(gate::Direct::new(
            (connector.0)("tapfleet-gate").map_err(|e| BrokerError::Config(e.to_string()))?,
        )),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tapfleet-gate")
        .enable_all()
        .build()
        .map_err(BrokerError::Thread)?;
    let gate_thread = thread::Builder::new()
        .name("tapfleet-gate-main".into())
        .spawn(move || {
            runtime.block_on(async move {
                if let Some((l, _, acceptor)) = tls {
                    match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => {
                            tokio::spawn(gate::run(l, Arc::new(acceptor), gate.clone()));
                        }
                        Err(e) => tracing::error!(error = %e, "TLS listener unusable"),
                    }
                }
                match tokio::net::TcpListener::from_std(public) {
                    Ok(l) => gate::run(l, Arc::new(gate::Plain), gate).await,
                    Err(e) => tracing::error!(error = %e, "gate listener unusable"),
                }
            });
        })
        .map_err(BrokerError::Thread)?;
    tracing::info!(listen = %local_addr, tls = ?tls_addr, "mqtt broker listening");
    Ok(BrokerHandle {
        local_addr,
        tls_addr,
        credentials: creds,
        thread,
        gate_thread,
        stats,
        connector,
    })
}
