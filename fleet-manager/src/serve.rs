//! `tapfleet-manager serve`: assembles the manager — store, targets, claim token, embedded
//! broker (or an external one), MQTT client, dispatcher, mover and HTTP API — and runs it until
//! the shutdown future resolves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tapfleet_broker::{BrokerConfig, CredentialStore, PasswordHash, Role};
use tokio::sync::{mpsc, watch};

use crate::fleet::{CredentialSink, Fleet};
use crate::http::{AppState, router};
use crate::metrics::Metrics;
use crate::mover::Mover;
use crate::mqtt::{ClientSettings, MANAGER_USERNAME, Outbox};
use crate::store::{ClaimToken, Store};
use crate::targets::{ManagerConfig, Targets};

/// The tenant of the claim token written to `DATA/enroll.token`.
pub const DEFAULT_TENANT: &str = "default";

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data: PathBuf,
    pub http: SocketAddr,
    pub mqtt_listen: SocketAddr,
    /// `mqtt://host[:port]` of an external broker; none: embedded broker on `mqtt_listen`.
    pub broker: Option<String>,
    pub broker_username: Option<String>,
    pub broker_password: Option<String>,
    pub config: Option<PathBuf>,
    /// The first admin's password (first start only); none: a random one printed once on stderr.
    pub admin_password: Option<String>,
    /// An admin API token to accept (for scripts and tests); none: only tokens made in the API.
    pub api_token: Option<String>,
    /// The embedded broker's TLS listener (client certificates from the fleet CA `DATA/ca/`).
    pub mqtt_tls_listen: Option<SocketAddr>,
    /// Host names (or IPs) edges reach the TLS listener by, for its server certificate
    /// (`localhost` and `127.0.0.1` are always added).
    pub tls_hosts: Vec<String>,
    /// The edge binary `GET /download/tapfleet-edge` serves; none: `tapfleet-edge` beside this
    /// executable, if there is one ([`crate::install`]).
    pub edge_binary: Option<PathBuf>,
    /// The URL edges reach this manager's HTTP at (for `/install.sh`); none: the request's Host.
    pub public_url: Option<String>,
    /// The broker URL `/install.sh` writes into edges' config (`{host}`: the manager URL's
    /// host); none: the TLS listener, else the broker the manager uses.
    pub public_broker: Option<String>,
    /// HTTPS listener for the API and dashboard (server certificate from the fleet CA, for
    /// `tls_hosts` + `localhost` + `127.0.0.1`).
    pub https_listen: Option<SocketAddr>,
    /// Allow the plain HTTP and MQTT listeners beyond loopback (refused otherwise).
    pub allow_plain_non_loopback: bool,
}

/// Parses `mqtt://host[:port]` (port 1883 by default).
pub fn parse_broker_url(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .with_context(|| format!("broker URL {url:?} must start with mqtt://"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.to_owned(),
            p.parse::<u16>()
                .with_context(|| format!("bad port in {url:?}"))?,
        ),
        _ => (rest.to_owned(), 1883),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    anyhow::ensure!(!host.is_empty(), "broker URL {url:?} has no host");
    Ok((host, port))
}

/// The broker URL the installer gives edges (see [`ServeOptions::public_broker`]).
fn public_broker(opts: &ServeOptions, settings: &ClientSettings) -> String {
    match (&opts.public_broker, opts.mqtt_tls_listen, &opts.broker) {
        (Some(b), _, _) => b.clone(),
        (None, Some(tls), _) => format!("mqtts://{{host}}:{}", tls.port()),
        (None, None, Some(external)) => external.clone(),
        (None, None, None) => format!("mqtt://{{host}}:{}", settings.port),
    }
}

/// Runs the manager until `shutdown` resolves.
pub async fn run(
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Plain listeners carry passwords and session cookies in clear: loopback only, unless asked.
    crate::https::check_plain_listener("HTTP", opts.http, opts.allow_plain_non_loopback)?;
    if opts.broker.is_none() {
        crate::https::check_plain_listener(
            "MQTT",
            opts.mqtt_listen,
            opts.allow_plain_non_loopback,
        )?;
    }
    std::fs::create_dir_all(&opts.data)
        .with_context(|| format!("creating data dir {}", opts.data.display()))?;
    let cfg: ManagerConfig = match &opts.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => ManagerConfig::default(),
    };
    let store = Arc::new(
        Store::open(&opts.data.join("manager.redb")).context("opening DATA/manager.redb")?,
    );
    let targets = Targets::build(&cfg, &opts.data)?;

    // The claim token of the default tenant.
    let token = crate::token::load_or_create(&opts.data).context("enroll token")?;
    let digest = tapfleet_broker::claim_token_digest(&token);
    if store.claim(&digest)?.is_none() {
        store.put_claim(
            &digest,
            &ClaimToken {
                tenant: DEFAULT_TENANT.to_owned(),
                created_ms: crate::fleet::now_ms(),
                expires_ms: None,
                max_uses: None,
                uses: 0,
                revoked_ms: None,
            },
        )?;
    }

    // The fleet CA: signs edges' certificates and the broker's TLS certificate.
    let ca = Arc::new(crate::ca::load_or_create(&opts.data).context("fleet CA")?);
    // Operators compare this with `openssl x509 -noout -fingerprint -sha256 -in ca.pem` before
    // trusting a ca.pem fetched over the network (trust on first use).
    tracing::info!(
        sha256 = %crate::https::fingerprint_sha256(ca.cert_pem())?,
        cert = %crate::ca::ca_cert_path(&opts.data).display(),
        "fleet CA fingerprint"
    );

    // The broker and the manager's own MQTT identity.
    let creds_file = opts.data.join("broker-credentials.toml");
    let (settings, sink, _broker, local) = match &opts.broker {
        None => {
            let creds = CredentialStore::new();
            for (user, c) in store.credentials()? {
                creds.insert_hash(
                    &user,
                    c.hash.parse::<PasswordHash>()?,
                    Role::Edge { tenant: c.tenant },
                );
            }
            for (edge, _) in store.revoked_edges()? {
                creds.revoke(&edge);
            }
            // Claim tokens are checked against redb (expiry, revocation), so a token added later
            // works and an expired one is refused at CONNECT.
            let claim_store = store.clone();
            creds.set_claim_validator(move |t| {
                claim_store
                    .claim(&tapfleet_broker::claim_token_digest(t))
                    .ok()
                    .flatten()
                    .is_some_and(|c| {
                        crate::tokens::check(&c, crate::fleet::now_ms(), false).is_ok()
                    })
            });
            let tls = match opts.mqtt_tls_listen {
                None => None,
                Some(listen) => {
                    let mut hosts = opts.tls_hosts.clone();
                    if !listen.ip().is_unspecified() {
                        hosts.push(listen.ip().to_string());
                    }
                    let (cert, key) = crate::ca::write_server_cert(&opts.data, &ca, &hosts)?;
                    Some(tapfleet_broker::TlsListenConfig {
                        listen,
                        cert,
                        key,
                        client_ca: crate::ca::ca_cert_path(&opts.data),
                    })
                }
            };
            let bcfg = BrokerConfig {
                listen: opts.mqtt_listen,
                tls,
                ..BrokerConfig::default()
            };
            let c2 = creds.clone();
            // The manager's own client is the broker's in-process link (not the gate).
            let (handle, local) = tokio::task::spawn_blocking(move || {
                let handle =
                    tapfleet_broker::start(bcfg, c2).context("starting the embedded broker")?;
                let link = handle
                    .connect_local(MANAGER_USERNAME)
                    .context("linking to the embedded broker")?;
                anyhow::Ok((handle, link))
            })
            .await??;
            let addr = handle.local_addr();
            let host = if addr.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                addr.ip().to_string()
            };
            let settings = ClientSettings {
                host,
                port: addr.port(),
                client_id: MANAGER_USERNAME.to_owned(),
                // Not used to connect: the manager's client is the in-process link.
                credentials: None,
            };
            let sink = CredentialSink {
                broker: Some(creds),
                file: creds_file,
                extra_user: None,
            };
            (settings, sink, Some(handle), Some(local))
        }
        Some(url) => {
            anyhow::ensure!(
                opts.mqtt_tls_listen.is_none(),
                "--mqtt-tls-listen is the embedded broker's: configure TLS on the external broker"
            );
            let (host, port) = parse_broker_url(url)?;
            let credentials = match (&opts.broker_username, &opts.broker_password) {
                (Some(u), Some(p)) => Some((u.clone(), p.clone())),
                (None, None) => None,
                _ => anyhow::bail!("--broker-username and --broker-password go together"),
            };
            let extra_user = match &credentials {
                Some((u, p)) => Some((u.clone(), PasswordHash::new(p)?.to_string())),
                None => None,
            };
            let settings = ClientSettings {
                host,
                port,
                client_id: MANAGER_USERNAME.to_owned(),
                credentials,
            };
            let sink = CredentialSink {
                broker: None,
                file: creds_file,
                extra_user,
            };
            (settings, sink, None, None)
        }
    };
    sink.write_file(&store)
        .context("writing the broker credentials file")?;

    let install = crate::install::Install::new(
        opts.public_url.clone(),
        public_broker(&opts, &settings),
        ca.cert_pem().to_owned(),
        crate::install::Install::find_binary(opts.edge_binary.clone()),
    );
    install.prehash();

    let metrics = Arc::new(Metrics::default());
    let live = Arc::new(Mutex::new(Default::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (outbox, outgoing) = Outbox::new();
    let (inbound_tx, inbound_rx) = mpsc::channel(256);
    let (mover_tx, mover_rx) = mpsc::channel(64);
    let telemetry_task = crate::telemetry::spawn_persist(store.clone(), stop_rx.clone());
    let mqtt_tasks = match local {
        Some(link) => crate::mqtt::spawn_local(link, inbound_tx, outgoing, stop_rx),
        None => crate::mqtt::spawn(&settings, inbound_tx, outgoing, stop_rx),
    };
    let mover = Mover::new(
        store.clone(),
        targets.clone(),
        outbox.clone(),
        metrics.clone(),
    );
    let mover_task = tokio::spawn(mover.run(mover_rx));
    let jobs = crate::jobs::Jobs::new(store.clone(), targets.clone(), outbox.clone());
    crate::relay::spawn(store.clone(), targets.clone(), outbox.clone(), &jobs.relay);
    let sipflow = crate::sipflow::router(store.clone(), targets.clone());
    let configs = crate::config_api::ConfigService::new(
        store.clone(),
        outbox.clone(),
        targets.names().map(str::to_owned).collect(),
    );
    let revoker = crate::revoke::Revoker {
        store: store.clone(),
        sink: sink.clone(),
    };
    let mut fleet = Fleet::new(
        store.clone(),
        metrics.clone(),
        outbox,
        mover_tx,
        targets,
        sink,
        live.clone(),
    )?;
    fleet.jobs = Some(jobs.clone());
    fleet.ca = Some(ca.clone());
    cfg.alerts
        .check()
        .map_err(anyhow::Error::msg)
        .context("the manager config")?;
    let webhook_roots = match &cfg.alerts.webhook {
        Some(w) => crate::http_client::roots_for(&w.url, w.ca_file.as_deref())
            .context("alerts.webhook.ca_file")?,
        None => Vec::new(),
    };
    let alerter = crate::alerting::Alerter::start(
        cfg.alerts.clone(),
        store.clone(),
        fleet.outbox.clone(),
        metrics.clone(),
        webhook_roots,
    )?;
    fleet.alerts = Some(alerter.clone());
    let _alert_clock = crate::alerting::spawn_clock(alerter.clone());
    let resumed = jobs.resume()?;
    if resumed > 0 {
        tracing::info!(jobs = resumed, "unfinished jobs resumed");
    }
    let fleet_task = tokio::spawn(fleet.run(inbound_rx));

    // Job routes are merged before any layer, so a layer on `app` wraps them too.
    let (metrics_for_api, live_for_api) = (metrics.clone(), live.clone());
    let alerts_for_api = Some(alerter.clone());
    let app = router(AppState {
        store: store.clone(),
        metrics,
        live,
        alerts: Some(alerter.clone()),
    })
    .merge(crate::jobs_api::router(jobs))
    .merge(sipflow)
    .merge(crate::config_api::router(configs))
    .merge(crate::alerting::router(alerter))
    .merge(crate::tokens::router(store.clone()))
    .merge(crate::revoke::router(revoker))
    .merge(crate::install::router(install));
    let auth = Arc::new(crate::auth::Auth::open(store.clone())?);
    if let Some(pw) = auth.bootstrap(
        opts.admin_password.as_deref(),
        opts.api_token.as_deref(),
        crate::fleet::now_ms(),
    )? {
        // Printed once, on the console of the first start, never logged.
        eprintln!(
            "\n  tapfleet: created the dashboard user `admin` with password: {pw}\n  (shown only now; change it or create users in the API)\n"
        );
    }
    let app = app
        .merge(crate::auth::router(auth.clone()))
        .merge(crate::api::router(AppState {
            store: store.clone(),
            metrics: metrics_for_api,
            live: live_for_api,
            alerts: alerts_for_api,
        }))
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::auth::guard,
        ));
    let listener = tokio::net::TcpListener::bind(opts.http)
        .await
        .with_context(|| format!("binding HTTP on {}", opts.http))?;
    let https = match opts.https_listen {
        None => None,
        Some(listen) => {
            let mut hosts = opts.tls_hosts.clone();
            if !listen.ip().is_unspecified() {
                hosts.push(listen.ip().to_string());
            }
            let (cert, key) = crate::ca::write_http_cert(&opts.data, &ca, &hosts)?;
            let cfg = crate::https::server_config(&std::fs::read(cert)?, &std::fs::read(key)?)?;
            let tcp = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding HTTPS on {listen}"))?;
            Some(crate::https::TlsListener::new(
                tcp,
                cfg,
                crate::https::HANDSHAKE_TIMEOUT,
            )?)
        }
    };
    {
        use axum::serve::Listener as _;
        let https_addr = https.as_ref().and_then(|l| l.local_addr().ok());
        tracing::info!(http = %listener.local_addr()?, https = ?https_addr, mqtt = %format!("{}:{}", settings.host, settings.port), data = %opts.data.display(), "fleet manager running");
    }
    // One shutdown signal for both servers.
    let (down_tx, down_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = down_tx.send(true);
    });
    let down = move || {
        let mut rx = down_rx.clone();
        async move {
            let _ = rx.wait_for(|d| *d).await;
        }
    };
    let app_tls = app.clone().layer(axum::Extension(crate::https::OverTls));
    let plain = axum::serve(listener, app).with_graceful_shutdown(down());
    let tls = async {
        match https {
            Some(l) => axum::serve(l, app_tls)
                .with_graceful_shutdown(down())
                .await
                .context("HTTPS server"),
            None => Ok(()),
        }
    };
    tokio::try_join!(async { plain.await.context("HTTP server") }, tls)?;

    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for t in mqtt_tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), t).await;
    }
    // The poller is gone: the dispatcher's inbound channel closes, then the mover's.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), fleet_task).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), mover_task).await;
    // The last minutes of telemetry history, after the dispatcher stopped recording.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), telemetry_task).await;
    if let Err(e) = crate::telemetry::persist(&store, crate::fleet::now_ms()) {
        tracing::warn!(error = %e, "telemetry history not persisted at shutdown");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse() {
        assert_eq!(
            parse_broker_url("mqtt://h:1884").expect("ok"),
            ("h".into(), 1884)
        );
        assert_eq!(
            parse_broker_url("mqtt://broker.example").expect("ok"),
            ("broker.example".into(), 1883)
        );
        assert_eq!(
            parse_broker_url("mqtt://[::1]:1885").expect("ok"),
            ("::1".into(), 1885)
        );
        assert!(parse_broker_url("http://h").is_err());
        assert!(parse_broker_url("mqtt://h:x").is_err());
    }
}
