//! Alerts, wired: runs the pure rules of [`crate::alerts`] on what the dispatcher sees (state,
//! telemetry) and on a 1 s clock, and delivers every raise and clear to
//! - the store (`alerts` table: sequence number -> [`StoredAlert`] JSON; the newest
//!   [`MAX_KEPT`] are kept; active ones are restored into the rules at start),
//! - the tenant's events topic (`Event` `alert_raised` / `alert_cleared`),
//! - the webhook, if configured (POST JSON [`WebhookBody`] to an `http://` or `https://` URL
//!   (verified against the system's roots plus the optional `ca_file`), per attempt timeout,
//!   retries with backoff, on its own thread so a slow receiver delays nothing else; a full queue
//!   drops and counts),
//! - the API (`GET /api/v1/alerts[?active=true][&edge=ID]`) and `/metrics`
//!   (`tapfleet_manager_alerts_active{rule=...}`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tapfleet_schemas::{Event, EventBody, Telemetry, Topic};

use crate::alerts::{Alert, AlertConfig, Change, Engine, Rule, WebhookConfig};
use crate::metrics::{Metrics, inc};
use crate::mqtt::Outbox;
use crate::store::{Store, StoreError};

const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
/// Alerts kept in the store (oldest dropped first).
pub const MAX_KEPT: u64 = 10_000;
/// Webhook deliveries waiting at most.
const WEBHOOK_QUEUE: usize = 1024;

/// An alert as stored and shown by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    pub id: u64,
    pub tenant: String,
    #[serde(flatten)]
    pub alert: Alert,
}

/// What the webhook receives.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookBody {
    /// `alert_raised` or `alert_cleared`.
    pub event: &'static str,
    pub tenant: String,
    pub alert: Alert,
}

/// Active alerts per rule, for `/metrics`.
#[derive(Debug, Default)]
pub struct ActiveGauges([AtomicU64; 7]);

impl ActiveGauges {
    fn set(&self, active: &[Alert]) {
        for (n, rule) in Rule::ALL.iter().enumerate() {
            let count = active.iter().filter(|a| a.rule == *rule).count() as u64;
            if let Some(g) = self.0.get(n) {
                g.store(count, Ordering::Relaxed);
            }
        }
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP tapfleet_manager_alerts_active Active alerts, per rule."
        );
        let _ = writeln!(out, "# TYPE tapfleet_manager_alerts_active gauge");
        for (rule, g) in Rule::ALL.iter().zip(self.0.iter()) {
            let _ = writeln!(
                out,
                "tapfleet_manager_alerts_active{{rule=\"{}\"}} {}",
                rule.as_str(),
                g.load(Ordering::Relaxed)
            );
        }
        out
    }
}

fn dbr<T, E: Into<redb::Error>>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Db(e.into()))
}

/// The alerting service. Cheap to share (`Arc`).
pub struct Alerter {
    engine: Mutex<Engine>,
    store: Arc<Store>,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    webhook: Option<std::sync::mpsc::SyncSender<WebhookBody>>,
    /// edge id -> tenant, learned from what the dispatcher reports.
    tenants: Mutex<HashMap<String, String>>,
}

impl Alerter {
    /// Opens the alerts table, restores the active alerts, starts the webhook thread.
    /// `webhook_roots`: the certificates an `https://` webhook is verified against
    /// ([`crate::http_client::roots_for`]).
    pub fn start(
        cfg: AlertConfig,
        store: Arc<Store>,
        outbox: Outbox,
        metrics: Arc<Metrics>,
        webhook_roots: Vec<ureq::tls::Certificate<'static>>,
    ) -> Result<Arc<Self>, StoreError> {
        {
            let tx = dbr(store.db().begin_write())?;
            dbr(tx.open_table(ALERTS))?;
            dbr(tx.commit())?;
        }
        let webhook = cfg
            .webhook
            .clone()
            .map(|w| spawn_webhook(w, webhook_roots, metrics.clone()));
        let mut engine = Engine::new(cfg);
        let stored = all(&store)?;
        let mut tenants = HashMap::new();
        let active: Vec<Alert> = stored
            .into_iter()
            .filter(|s| s.alert.cleared_ms.is_none())
            .map(|s| {
                tenants.insert(s.alert.edge_id.clone(), s.tenant);
                s.alert
            })
            .collect();
        metrics.alerts_active.set(&active);
        engine.restore(active);
        Ok(Arc::new(Alerter {
            engine: Mutex::new(engine),
            store,
            outbox,
            metrics,
            webhook,
            tenants: Mutex::new(tenants),
        }))
    }

    fn learn(&self, tenant: &str, edge: &str) {
        if let Ok(mut t) = self.tenants.lock()
            && t.get(edge).map(String::as_str) != Some(tenant)
        {
            t.insert(edge.to_owned(), tenant.to_owned());
        }
    }

    fn with_engine(&self, f: impl FnOnce(&mut Engine) -> Vec<Change>) {
        let (changes, active) = {
            let mut e = self.engine.lock().unwrap_or_else(|p| p.into_inner());
            let c = f(&mut e);
            let a = if c.is_empty() { Vec::new() } else { e.active() };
            (c, a)
        };
        if changes.is_empty() {
            return;
        }
        self.metrics.alerts_active.set(&active);
        for c in changes {
            if let Err(e) = self.deliver(c) {
                tracing::error!(error = %e, "alert not stored");
            }
        }
    }

    /// The edge's state said online or offline.
    pub fn presence(&self, tenant: &str, edge: &str, online: bool, now_ms: i64) {
        self.learn(tenant, edge);
        self.with_engine(|e| e.presence(edge, online, now_ms));
    }

    /// A telemetry sample arrived.
    pub fn telemetry(&self, tenant: &str, edge: &str, t: &Telemetry, now_ms: i64) {
        self.learn(tenant, edge);
        self.with_engine(|e| e.telemetry(edge, t, now_ms));
    }

    /// The alerts active now, by edge then rule (in memory, cheap: the event stream polls it).
    pub fn active(&self) -> Vec<Alert> {
        self.engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .active()
    }

    /// Time passed (rules that fire or clear with time alone).
    pub fn tick(&self, now_ms: i64) {
        self.with_engine(|e| e.tick(now_ms));
    }

    fn deliver(&self, change: Change) -> Result<(), StoreError> {
        let (raised, alert) = match change {
            Change::Raised(a) => (true, a),
            Change::Cleared(a) => (false, a),
        };
        let tenant = self
            .tenants
            .lock()
            .ok()
            .and_then(|t| t.get(&alert.edge_id).cloned())
            .unwrap_or_default();
        if raised {
            inc(&self.metrics.alerts_raised_total);
            tracing::warn!(edge = %alert.edge_id, rule = alert.rule.as_str(), severity = %alert.severity, message = %alert.message, "ALERT raised");
        } else {
            tracing::info!(edge = %alert.edge_id, rule = alert.rule.as_str(), message = ?alert.clear_message, "alert cleared");
        }
        self.persist(&tenant, &alert)?;
        let body = if raised {
            EventBody::AlertRaised {
                rule: alert.rule.as_str().to_owned(),
                severity: alert.severity.clone(),
                message: alert.message.clone(),
                value: alert.value,
                threshold: alert.threshold,
            }
        } else {
            EventBody::AlertCleared {
                rule: alert.rule.as_str().to_owned(),
                message: alert.clear_message.clone().unwrap_or_default(),
                value: alert.value,
            }
        };
        let at = alert.cleared_ms.unwrap_or(alert.raised_ms);
        match Topic::events(&tenant) {
            Ok(t) => self
                .outbox
                .send(&t, &Event::new(at, alert.edge_id.clone(), body)),
            Err(e) => {
                tracing::warn!(edge = %alert.edge_id, error = %e, "alert not published: tenant unknown")
            }
        }
        if let Some(w) = &self.webhook {
            let msg = WebhookBody {
                event: if raised {
                    "alert_raised"
                } else {
                    "alert_cleared"
                },
                tenant,
                alert,
            };
            if w.try_send(msg).is_err() {
                inc(&self.metrics.webhook_failures_total);
                tracing::warn!("webhook queue full: alert not sent to the webhook");
            }
        }
        Ok(())
    }

    /// A raise is a new row; a clear updates the newest row of that edge and rule.
    fn persist(&self, tenant: &str, alert: &Alert) -> Result<(), StoreError> {
        let tx = dbr(self.store.db().begin_write())?;
        {
            let mut t = dbr(tx.open_table(ALERTS))?;
            let mut existing = None;
            if alert.cleared_ms.is_some() {
                for row in dbr(t.iter())?.rev() {
                    let (k, v) = dbr(row)?;
                    let s: StoredAlert = from_json(v.value())?;
                    if s.alert.edge_id == alert.edge_id
                        && s.alert.rule == alert.rule
                        && s.alert.cleared_ms.is_none()
                    {
                        existing = Some(k.value());
                        break;
                    }
                }
            }
            let id = match existing {
                Some(id) => id,
                None => dbr(t.last())?.map_or(1, |(k, _)| k.value() + 1),
            };
            let row = StoredAlert {
                id,
                tenant: tenant.to_owned(),
                alert: alert.clone(),
            };
            let bytes = serde_json::to_vec(&row).map_err(|e| StoreError::Encode(e.to_string()))?;
            dbr(t.insert(id, bytes.as_slice()))?;
            while dbr(t.len())? > MAX_KEPT {
                if dbr(t.pop_first())?.is_none() {
                    break;
                }
            }
        }
        dbr(tx.commit())
    }
}

fn from_json(b: &[u8]) -> Result<StoredAlert, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt {
        what: "alert",
        reason: e.to_string(),
    })
}

/// Every stored alert, oldest first.
pub fn all(store: &Store) -> Result<Vec<StoredAlert>, StoreError> {
    let tx = dbr(store.db().begin_read())?;
    let t = match tx.open_table(ALERTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::Db(e.into())),
    };
    let mut out = Vec::new();
    for row in dbr(t.iter())? {
        let (_, v) = dbr(row)?;
        out.push(from_json(v.value())?);
    }
    Ok(out)
}

fn spawn_webhook(
    cfg: WebhookConfig,
    roots: Vec<ureq::tls::Certificate<'static>>,
    metrics: Arc<Metrics>,
) -> std::sync::mpsc::SyncSender<WebhookBody> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<WebhookBody>(WEBHOOK_QUEUE);
    let spawned = std::thread::Builder::new()
        .name("alert-webhook".to_owned())
        .spawn(move || {
            let agent =
                crate::http_client::agent(Duration::from_secs(cfg.timeout_secs.max(1)), roots);
            for msg in rx {
                let mut backoff = Duration::from_millis(500);
                let mut ok = false;
                for attempt in 0..=cfg.retries {
                    if attempt > 0 {
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                    match agent.post(&cfg.url).send_json(&msg) {
                        Ok(r) if r.status().is_success() => {
                            ok = true;
                            break;
                        }
                        Ok(r) => tracing::warn!(status = %r.status(), attempt, "webhook refused an alert"),
                        Err(e) => tracing::warn!(error = %e, attempt, "webhook unreachable"),
                    }
                }
                if ok {
                    inc(&metrics.webhook_deliveries_total);
                } else {
                    inc(&metrics.webhook_failures_total);
                    tracing::error!(edge = %msg.alert.edge_id, rule = msg.alert.rule.as_str(), "alert not delivered to the webhook");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "webhook thread not started");
    }
    tx
}

/// Runs the 1 s clock of the time-based rules until the alerter is the last reference.
pub fn spawn_clock(alerter: Arc<Alerter>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if Arc::strong_count(&alerter) == 1 {
                return;
            }
            alerter.tick(crate::fleet::now_ms());
        }
    })
}

// ---- HTTP

#[derive(Deserialize)]
struct AlertQuery {
    active: Option<bool>,
    edge: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/alerts[?active=true][&edge=ID][&limit=N]` -> `{"alerts": [StoredAlert...]}`,
/// newest first.
pub fn router(alerter: Arc<Alerter>) -> Router {
    Router::new()
        .route("/api/v1/alerts", get(list))
        .with_state(alerter)
}

async fn list(State(a): State<Arc<Alerter>>, Query(q): Query<AlertQuery>) -> Response {
    match all(&a.store) {
        Ok(v) => {
            let alerts: Vec<StoredAlert> = v
                .into_iter()
                .rev()
                .filter(|s| !q.active.unwrap_or(false) || s.alert.cleared_ms.is_none())
                .filter(|s| q.edge.as_ref().is_none_or(|e| &s.alert.edge_id == e))
                .take(q.limit.unwrap_or(1000))
                .collect();
            Json(serde_json::json!({ "alerts": alerts })).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "alerts not read");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
