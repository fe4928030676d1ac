//! tapfleet's embedded MQTT broker: rumqttd 0.20 run from our own [`BrokerConfig`], with every
//! login decided by a [`CredentialStore`] (only credentials the fleet manager issued connect).
//!
//! [`start`] runs rumqttd on its own threads (its `Broker::start` blocks) and returns once the
//! listener accepts TCP connections. rumqttd has no shutdown: the broker lives until the process
//! ends. It keeps nothing on disk: retained messages are gone after a restart, so the manager
//! republishes them on every CONNACK.
//!
//! Only a plain listener is exposed; TLS termination and per-namespace ACLs are not here yet (any
//! authenticated client may publish and subscribe anywhere in rumqttd).

mod config;
mod credentials;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

pub use config::BrokerConfig;
pub use credentials::{
    ClaimValidator, CredentialStore, CredentialsFile, ENROLL_CLIENT_PREFIX, ENROLL_USERNAME,
    PasswordHash, claim_token_digest, watch_file,
};

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
}

/// A running broker.
#[derive(Debug)]
pub struct BrokerHandle {
    local_addr: SocketAddr,
    credentials: CredentialStore,
    thread: thread::JoinHandle<()>,
}

impl BrokerHandle {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The store that decides logins (shared: changes apply to the next CONNECT).
    pub fn credentials(&self) -> &CredentialStore {
        &self.credentials
    }

    /// Whether the broker's threads are still running.
    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }

    /// Blocks until the broker stops (it normally never does).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Starts rumqttd with `cfg`, deciding logins with `creds`; returns once the listener accepts TCP.
///
/// Port 0 is resolved to a free port first (rumqttd does not report the port it bound). The
/// address is checked free before rumqttd binds it, so another process on the port is reported as
/// [`BrokerError::Bind`] instead of being mistaken for this broker.
pub fn start(cfg: BrokerConfig, creds: CredentialStore) -> Result<BrokerHandle, BrokerError> {
    cfg.validate()?;
    let local_addr = {
        let probe = TcpListener::bind(cfg.listen).map_err(|source| BrokerError::Bind {
            addr: cfg.listen,
            source,
        })?;
        probe.local_addr().map_err(|source| BrokerError::Bind {
            addr: cfg.listen,
            source,
        })?
    };
    let mut rcfg = cfg.to_rumqttd(local_addr);
    if let Some(servers) = rcfg.v4.as_mut() {
        for server in servers.values_mut() {
            let store = creds.clone();
            server.set_auth_handler(move |client_id: String, user: String, pass: String| {
                let store = store.clone();
                async move {
                    let ok = store.check_login(&client_id, &user, &pass);
                    if !ok {
                        tracing::warn!(%client_id, username = %user, "mqtt login refused");
                    }
                    ok
                }
            });
        }
    }
    let thread = thread::Builder::new()
        .name("tapfleet-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(rcfg);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    let connect_to = if local_addr.ip().is_unspecified() {
        match local_addr {
            SocketAddr::V4(a) => SocketAddr::from(([127, 0, 0, 1], a.port())),
            SocketAddr::V6(a) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port())),
        }
    } else {
        local_addr
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&connect_to, Duration::from_millis(200)).is_ok() {
            break;
        }
        if thread.is_finished() || Instant::now() >= deadline {
            return Err(BrokerError::NotListening(local_addr));
        }
        thread::sleep(Duration::from_millis(20));
    }
    tracing::info!(listen = %local_addr, "mqtt broker listening");
    Ok(BrokerHandle {
        local_addr,
        credentials: creds,
        thread,
    })
}
