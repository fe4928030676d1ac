//! `tapfleet-broker`: the embedded broker as a standalone process.
//!
//! `tapfleet-broker [--config broker.toml] [--credentials FILE]` — the credentials file is the one
//! the fleet manager writes (`DATA/broker-credentials.toml`); it is reloaded when it changes.
//! Without it nobody can log in.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tapfleet_broker::{BrokerConfig, CredentialStore};

#[derive(Parser)]
#[command(
    version,
    about = "tapfleet's MQTT broker (rumqttd) with the fleet's credentials"
)]
struct Cli {
    /// Broker config (TOML); defaults apply without it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Credentials file written by tapfleet-manager (reloaded when it changes).
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// Override the config's listen address.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Log filter (RUST_LOG syntax); RUST_LOG wins when set.
    #[arg(long, default_value = "info,rumqttd=warn")]
    log_level: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let mut cfg = match &cli.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            BrokerConfig::from_toml(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => BrokerConfig::default(),
    };
    if let Some(l) = cli.listen {
        cfg.listen = l;
    }
    let creds = match &cli.credentials {
        Some(p) => {
            let store = CredentialStore::load(p)?;
            tapfleet_broker::watch_file(p.clone(), store.clone(), Duration::from_secs(1))?;
            store
        }
        None => {
            tracing::warn!("no --credentials: every login will be refused");
            CredentialStore::new()
        }
    };
    let handle = tapfleet_broker::start(cfg, creds)?;
    println!("listening on {}", handle.local_addr());
    handle.join();
    Ok(())
}
