//! `tapfleet-edge run`: the site service. Wires the pure parts (recorder, cache policy, transfer
//! sender) to the world: a capture thread, two MQTT connections (control and bulk), the cache on
//! disk, and the clock.
//!
//! Tasks:
//! - capture thread (`capture_thread`): packet source -> `Recorder` -> recorder events;
//! - two MQTT poll tasks (`net`): they only poll their event loop and forward what arrives, so
//!   publishing never waits on a task that waits on us;
//! - the upload task (`upload`): sends accepted transfers on the bulk connection;
//! - the download task (`download`): receives the manager's downloads (on the bulk connection)
//!   into `held/` of the cache;
//! - the core task (`core`): owns the cache and the config; handles config, acks, jobs, recorder
//!   events and timers, and publishes manifests, offers, state and telemetry.

mod capture_thread;
mod core;
mod download;
pub mod identity;
mod inflight;
mod metrics;
mod net;
pub mod recover;
mod upload;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use tapfleet_schemas::{DesiredConfig, decode, encode};

/// Arguments of `tapfleet-edge run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Folder for the edge's identity, config, cache and index.
    #[arg(long, env = "TAPFLEET_DATA")]
    pub data: PathBuf,
    /// The fleet's MQTT broker: mqtt://host[:port] (loopback), or mqtts://host[:port] (TLS,
    /// port 8883 by default: the edge's certificate from the fleet CA).
    #[arg(long, env = "TAPFLEET_BROKER", default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// The fleet CA certificate (PEM) to trust for mqtts:// before the first enrollment (the
    /// manager's DATA/ca/ca.crt); afterwards the CA from the enrollment is used.
    #[arg(long = "ca", env = "TAPFLEET_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Claim token for the first enrollment (not needed once enrolled).
    #[arg(long, env = "TAPFLEET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the claim token from this file instead.
    #[arg(long, env = "TAPFLEET_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Play a pcap/pcapng file through the capture pipeline instead of a live interface.
    #[arg(long, conflicts_with = "interface")]
    pub replay: Option<PathBuf>,
    /// Replay pace: 1 plays the capture in real time, 2 twice as fast, 0 as fast as possible.
    #[arg(long, default_value_t = 0.0, requires = "replay")]
    pub replay_speed: f64,
    /// Capture live on this interface (repeatable or comma-separated; `any` for all).
    #[arg(long, env = "TAPFLEET_INTERFACE", value_delimiter = ',')]
    pub interface: Vec<String>,
    /// Serve Prometheus metrics on this address (`GET /metrics`); `off` to disable.
    #[arg(long, env = "TAPFLEET_METRICS", default_value = "127.0.0.1:9464")]
    pub metrics_listen: String,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, env = "TAPFLEET_LOG", default_value = "info")]
    pub log: String,
}

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: connect with TLS.
    pub secure: bool,
    /// The TLS setup (set once the fleet CA is known); none: plain TCP.
    pub tls: Option<net::TlsClient>,
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl BrokerAddr {
    /// Parses `mqtt://host[:port]` (port 1883 by default) or `mqtts://host[:port]` (8883); IPv6
    /// hosts in brackets.
    pub fn parse(url: &str) -> anyhow::Result<BrokerAddr> {
        let (secure, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, Some(r))
        } else {
            (
                false,
                url.strip_prefix("mqtt://")
                    .or_else(|| url.strip_prefix("tcp://")),
            )
        };
        let rest = rest.with_context(|| format!("broker {url:?}: expected mqtt(s)://host:port"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, p) = v6
                .split_once(']')
                .with_context(|| format!("broker {url:?}: unclosed '['"))?;
            (h, p.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            bail!("broker {url:?}: no host");
        }
        let port = match port {
            Some(p) => p
                .parse()
                .with_context(|| format!("broker {url:?}: bad port {p:?}"))?,
            None if secure => 8883,
            None => 1883,
        };
        Ok(BrokerAddr {
            host: host.to_owned(),
            port,
            secure,
            tls: None,
        })
    }
}

/// Entry point of `tapfleet-edge run`.
pub fn main(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log)?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut broker = BrokerAddr::parse(&args.broker)?;
    if args.replay.is_none() && args.interface.is_empty() {
        bail!("give --replay FILE or --interface IF");
    }
    let metrics = match args.metrics_listen.as_str() {
        "off" | "" => None,
        a => Some(
            a.parse::<std::net::SocketAddr>()
                .with_context(|| format!("--metrics-listen {a:?}: expected IP:PORT or off"))?,
        ),
    };
    if !(args.replay_speed.is_finite() && args.replay_speed >= 0.0) {
        bail!("--replay-speed must be a number >= 0");
    }
    create_private_dir(&args.data)?;
    let hostname = hostname();
    let slot = Arc::new(net::CertSlot::default());
    let saved = identity::load(&args.data)?;
    if broker.secure {
        let ca = match (saved.as_ref().and_then(|i| i.ca_pem.clone()), &args.ca_file) {
            (Some(ca), _) => ca,
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("reading the fleet CA {}", f.display()))?,
            (None, None) => {
                bail!("{broker} needs the fleet CA: give --ca FILE (the manager's DATA/ca/ca.crt)")
            }
        };
        if let Some(id) = &saved
            && let (Some(cert), Some(key)) = (&id.certificate_pem, identity::load_key(&args.data)?)
        {
            slot.set(cert, &key)?;
        }
        broker.tls = Some(net::TlsClient::new(&ca, slot.clone())?);
    }
    let identity = match saved {
        Some(id) => id,
        None => {
            let token = match (&args.token, &args.token_file) {
                (Some(t), _) => t.trim().to_owned(),
                (None, Some(f)) => std::fs::read_to_string(f)
                    .with_context(|| format!("reading token file {}", f.display()))?
                    .trim()
                    .to_owned(),
                (None, None) => {
                    bail!("this edge is not enrolled yet: give --token or --token-file")
                }
            };
            tracing::info!(broker = %broker, "enrolling");
            let id = identity::enroll(&broker, &token, &hostname, &args.data).await?;
            if let (Some(cert), Some(key)) = (&id.certificate_pem, identity::load_key(&args.data)?)
            {
                slot.set(cert, &key)?;
            }
            id
        }
    };
    tracing::info!(tenant = %identity.tenant, edge = %identity.edge_id, certificate = identity.certificate_pem.is_some(), "edge identity");
    if broker.secure {
        identity::spawn_renewal(
            broker.clone(),
            identity.clone(),
            hostname.clone(),
            args.data.clone(),
            slot.clone(),
            std::time::Duration::from_secs(3600),
        );
    }
    let config = load_config(&args.data);
    let source = match (&args.replay, args.interface.as_slice()) {
        (Some(file), _) => capture_thread::Source::Replay {
            path: file.clone(),
            speed: args.replay_speed,
        },
        (None, ifaces) => capture_thread::Source::Live(ifaces.to_vec()),
    };
    core::run(core::Setup {
        data: args.data,
        broker,
        identity,
        hostname,
        config,
        source,
        metrics,
    })
    .await
}

/// The last config the edge applied, so that it records after a reboot with the cloud away.
fn load_config(data: &Path) -> Option<DesiredConfig> {
    let p = data.join("config.cbor");
    let bytes = std::fs::read(&p).ok()?;
    match decode::<DesiredConfig>(&bytes) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %p.display(), error = %e, "ignoring unreadable saved config");
            None
        }
    }
}

fn save_config(data: &Path, cfg: &DesiredConfig) -> anyhow::Result<()> {
    write_private_atomic(&data.join("config.cbor"), &encode(cfg)?)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes a file readable by the service only: temporary file, fsync, rename.
pub(crate) fn write_private_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

pub(crate) fn random_hex(n: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(buf))
}

fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let clean = clean.trim_matches('-').to_owned();
    if clean.is_empty() {
        "edge".to_owned()
    } else {
        clean
    }
}

pub(crate) fn now_ms() -> i64 {
    now_ns() / 1_000_000
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let a = BrokerAddr::parse("mqtt://127.0.0.1:1883").expect("parses");
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 1883));
        let b = BrokerAddr::parse("mqtt://broker.example.com").expect("parses");
        assert_eq!(b.port, 1883);
        let c = BrokerAddr::parse("mqtt://[::1]:1884").expect("parses");
        assert_eq!((c.host.as_str(), c.port), ("::1", 1884));
        assert!(BrokerAddr::parse("http://x").is_err());
        assert!(BrokerAddr::parse("mqtt://x:notaport").is_err());
        assert!(BrokerAddr::parse("mqtt://:1883").is_err());
        let s = BrokerAddr::parse("mqtts://localhost").expect("parses");
        assert!(s.secure && s.port == 8883 && s.tls.is_none());
        assert_eq!(s.to_string(), "mqtts://localhost:8883");
    }
}
