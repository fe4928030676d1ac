//! `tapfleet-manager`: the fleet manager's command line.
//!
//! ```text
//! tapfleet-manager [--log-level L] serve --data DIR [--http ADDR] [--mqtt-listen ADDR]
//!                  [--broker mqtt://HOST:PORT [--broker-username U --broker-password P]]
//!                  [--config FILE] [--admin-password P] [--api-token T]
//!                  [--mqtt-tls-listen ADDR [--tls-host NAME]...]
//!                  [--edge-binary PATH] [--public-url URL] [--public-broker URL]
//!                  [--https-listen ADDR] [--allow-plain-non-loopback]
//! tapfleet-manager token show --data DIR
//! tapfleet-manager token {create --tenant T [--expires 24h] [--uses N] | list | revoke ID} [--manager URL]
//! tapfleet-manager edge revoke ID [--manager URL]
//! tapfleet-manager job {upload|copy|move|delete|fetch|list|show} ... [--manager URL] [--no-wait]
//! tapfleet-manager hold {set|clear} RECORDING_ID [--manager URL]
//! tapfleet-manager config {get|set|validate} ... [--manager URL]
//! (every API command: [--manager http(s)://HOST:PORT] [--ca-file PEM] [--api-token T])
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tapfleet_fleet_manager::serve::{ServeOptions, run};

#[derive(Parser)]
#[command(
    version,
    about = "tapfleet fleet manager: enrollment, config, catalog, storage"
)]
struct Cli {
    /// Log filter (RUST_LOG syntax); RUST_LOG wins when set.
    #[arg(long, global = true, default_value = "info,rumqttd=warn")]
    log_level: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the manager (embedded broker, MQTT client, HTTP API).
    Serve {
        /// Data directory (database, enroll token, targets).
        #[arg(long)]
        data: PathBuf,
        /// HTTP API listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// Embedded broker listen address (ignored with --broker).
        #[arg(long, default_value = "127.0.0.1:1883")]
        mqtt_listen: SocketAddr,
        /// Use this external broker (mqtt://host:port) instead of the embedded one.
        #[arg(long)]
        broker: Option<String>,
        /// User name on the external broker.
        #[arg(long, requires = "broker")]
        broker_username: Option<String>,
        /// Password on the external broker.
        #[arg(
            long,
            requires = "broker",
            env = "TAPFLEET_BROKER_PASSWORD",
            hide_env_values = true
        )]
        broker_password: Option<String>,
        /// Manager config (TOML: `[targets.NAME] type = "fs" root = ...`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Password of the `admin` dashboard user created at first start (else random, printed
        /// once on stderr).
        #[arg(long, env = "TAPFLEET_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
        /// An admin API token to accept as `Authorization: Bearer TOKEN` (scripts, tests).
        #[arg(long, env = "TAPFLEET_API_TOKEN", hide_env_values = true)]
        api_token: Option<String>,
        /// The embedded broker's TLS listener (e.g. 0.0.0.0:8883): server certificate from the
        /// fleet CA in DATA/ca, client certificates verified against it.
        #[arg(long, env = "TAPFLEET_MQTT_TLS_LISTEN")]
        mqtt_tls_listen: Option<SocketAddr>,
        /// A host name edges reach the TLS listener by (repeatable; localhost and 127.0.0.1
        /// are always in the certificate).
        #[arg(long = "tls-host", value_delimiter = ',')]
        tls_hosts: Vec<String>,
        /// The edge binary served at /download/tapfleet-edge for /install.sh (default:
        /// tapfleet-edge beside this executable).
        #[arg(long, env = "TAPFLEET_EDGE_BINARY")]
        edge_binary: Option<PathBuf>,
        /// The URL edges reach this manager's HTTP at, for /install.sh (default: the request's
        /// Host header).
        #[arg(long, env = "TAPFLEET_PUBLIC_URL")]
        public_url: Option<String>,
        /// The broker URL /install.sh gives edges ({host} = the manager URL's host; default:
        /// mqtts://{host}:TLS-PORT with --mqtt-tls-listen, else the broker the manager uses).
        #[arg(long, env = "TAPFLEET_PUBLIC_BROKER")]
        public_broker: Option<String>,
        /// HTTPS listener for the API and dashboard (e.g. 0.0.0.0:8443): server certificate
        /// from the fleet CA in DATA/ca for the --tls-host names, localhost and 127.0.0.1.
        #[arg(long, env = "TAPFLEET_HTTPS_LISTEN")]
        https_listen: Option<SocketAddr>,
        /// Allow --http and --mqtt-listen on a non-loopback address (plain text: passwords and
        /// session cookies in clear); refused without this flag.
        #[arg(long)]
        allow_plain_non_loopback: bool,
    },
    /// Claim token commands (`show` reads DATA; the others go through the HTTP API).
    Token {
        #[command(flatten)]
        remote: tapfleet_fleet_manager::cli::Remote,
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Edge commands through the HTTP API (revoke).
    Edge {
        #[command(flatten)]
        remote: tapfleet_fleet_manager::cli::Remote,
        #[command(subcommand)]
        cmd: tapfleet_fleet_manager::revoke::EdgeCmd,
    },
    /// Jobs through the HTTP API: upload, copy, move, delete, fetch recordings (see cli.rs).
    Job {
        #[command(flatten)]
        remote: tapfleet_fleet_manager::cli::Remote,
        #[command(subcommand)]
        cmd: tapfleet_fleet_manager::cli::JobCmd,
    },
    /// Config layers through the HTTP API: defaults, groups, edge overrides, history.
    Config {
        #[command(flatten)]
        remote: tapfleet_fleet_manager::cli::Remote,
        #[command(subcommand)]
        cmd: tapfleet_fleet_manager::config_api::ConfigCmd,
    },
    /// Legal hold of a recording through the HTTP API.
    Hold {
        #[command(flatten)]
        remote: tapfleet_fleet_manager::cli::Remote,
        #[command(subcommand)]
        cmd: tapfleet_fleet_manager::cli::HoldCmd,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print the default tenant's enrollment token.
    Show {
        #[arg(long)]
        data: PathBuf,
    },
    #[command(flatten)]
    Api(tapfleet_fleet_manager::tokens::cli::TokenApiCmd),
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    // Storage credentials are never logged, even at debug level.
    for krate in tapfleet_fleet_manager::targets::SECRET_LOGGING_CRATES {
        filter = filter.add_directive(format!("{krate}=info").parse()?);
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.cmd {
        Cmd::Serve {
            data,
            http,
            mqtt_listen,
            broker,
            broker_username,
            broker_password,
            config,
            admin_password,
            api_token,
            mqtt_tls_listen,
            tls_hosts,
            edge_binary,
            public_url,
            public_broker,
            https_listen,
            allow_plain_non_loopback,
        } => {
            let opts = ServeOptions {
                https_listen,
                allow_plain_non_loopback,
                edge_binary,
                public_url,
                public_broker,
                mqtt_tls_listen,
                tls_hosts,
                admin_password,
                api_token,
                data,
                http,
                mqtt_listen,
                broker,
                broker_username,
                broker_password,
                config,
            };
            run(opts, shutdown_signal()).await
        }
        Cmd::Token {
            cmd: TokenCmd::Api(cmd),
            remote,
        } => tapfleet_fleet_manager::tokens::cli::run(&remote, cmd),
        Cmd::Edge { remote, cmd } => tapfleet_fleet_manager::revoke::run(&remote, cmd),
        Cmd::Token {
            cmd: TokenCmd::Show { data },
            ..
        } => {
            let t = tapfleet_fleet_manager::token::read_token(&data)?
                .context("no enroll token yet: run `tapfleet-manager serve --data DIR` once")?;
            println!("{t}");
            Ok(())
        }
        Cmd::Job { remote, cmd } => tapfleet_fleet_manager::cli::job(&remote, cmd),
        Cmd::Hold { remote, cmd } => tapfleet_fleet_manager::cli::hold(&remote, cmd),
        Cmd::Config { remote, cmd } => tapfleet_fleet_manager::config_api::run(&remote, cmd),
    }
}
