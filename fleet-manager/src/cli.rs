//! The `tapfleet-manager job ...` and `hold ...` commands: a thin client of the manager's HTTP
//! API (`--manager URL`, http or https (`--ca-file`, see [`crate::http_client`]),
//! `Authorization: Bearer` from `--api-token` / `TAPFLEET_API_TOKEN`). A job
//! is submitted with `POST /api/v1/jobs`; unless `--no-wait`, its progress is polled and shown
//! with a progress bar until it is done (exit 0) or failed (error with the job's reason).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::jobs::{JobKind, JobRecord, JobRequest, JobState};

/// Where the manager is and how to talk to it.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// The manager's HTTP API.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    pub manager: String,
    /// API token (sent as `Authorization: Bearer`).
    #[arg(
        long,
        global = true,
        env = "TAPFLEET_API_TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,
    /// PEM CA file trusted for an https:// manager, besides the system's roots (default: the
    /// packaged manager's own CA, /var/lib/tapfleet-manager/ca/ca.crt, when readable; the
    /// manager serves it at /ca.pem).
    #[arg(long, global = true, env = "TAPFLEET_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

impl Remote {
    /// An agent for the manager's API (`timeout` per call): rustls trusting the system's roots
    /// and the CA file when the manager URL is https.
    pub(crate) fn agent(&self, timeout: Duration) -> anyhow::Result<ureq::Agent> {
        let ca = crate::http_client::cli_ca_file(self.ca_file.as_deref());
        let roots = crate::http_client::roots_for(&self.manager, ca.as_deref())?;
        Ok(crate::http_client::agent(timeout, roots))
    }
}

/// `tapfleet-manager job ...`
#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// Ask the recording's edge to upload it now (into its storage policy target or --to).
    Upload {
        recording_id: String,
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Copy a recording into another target, or into an edge's local storage with
    /// `--to edge:<edge_id>` (SHA-256 verified).
    Copy(Transfer),
    /// Move a recording: copy, verify, then delete the source copy.
    Move(Transfer),
    /// Delete a recording's copy in one target (--from), or every copy.
    Delete {
        recording_id: String,
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Make recordings available in a target, by id or by attributes; --out downloads them.
    Fetch {
        recording_id: Option<String>,
        #[arg(long)]
        call_id: Option<String>,
        /// Caller number prefix.
        #[arg(long)]
        caller: Option<String>,
        /// Callee number prefix.
        #[arg(long)]
        callee: Option<String>,
        /// Calls started at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Calls started before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Target to copy them into (default: where they are, else `cloud`).
        #[arg(long)]
        to: Option<String>,
        /// Download every file into DIR/<recording_id>/ once the job is done.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        wait: Wait,
    },
    /// List jobs.
    List,
    /// Show one job.
    Show { id: u64 },
}

/// The arguments of `job copy` and `job move`.
#[derive(Args, Debug)]
pub struct Transfer {
    recording_id: String,
    /// Source target or `edge:<edge_id>` (default: a target holding a complete copy).
    #[arg(long)]
    from: Option<String>,
    /// Destination target, or `edge:<edge_id>`: the edge's local storage (the manager relays
    /// the files; the job waits while that edge is offline).
    #[arg(long)]
    to: String,
    #[command(flatten)]
    wait: Wait,
}

/// `tapfleet-manager hold ...`
#[derive(Subcommand, Debug)]
pub enum HoldCmd {
    /// Put a recording under legal hold (no copy may be deleted or moved).
    Set { recording_id: String },
    /// Clear a recording's legal hold.
    Clear { recording_id: String },
}

#[derive(Args, Debug, Clone, Copy)]
pub struct Wait {
    /// Return once the job is accepted (print it) instead of waiting for it.
    #[arg(long)]
    pub no_wait: bool,
}

/// A client of the manager's HTTP API (also used by `config ...`).
pub(crate) struct Client {
    pub(crate) agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    pub(crate) fn new(r: &Remote) -> anyhow::Result<Client> {
        Ok(Client {
            agent: r.agent(Duration::from_secs(60))?,
            base: r.manager.trim_end_matches('/').to_owned(),
            token: r.api_token.clone(),
        })
    }

    pub(crate) fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    fn check(
        &self,
        what: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let mut resp = resp.with_context(|| format!("{what}: cannot reach {}", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            let msg = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            bail!("{what}: {status}: {msg}");
        }
        Ok(resp)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Checks the answer to `what` and decodes its JSON body.
    fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<T> {
        let mut r = self.check(what, resp)?;
        r.body_mut().read_json().context("decoding the answer")
    }

    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let r = self.auth(self.agent.get(self.url(path))).call();
        self.json(&format!("GET {path}"), r)
    }

    fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        let r = match method {
            "POST" => self.auth(self.agent.post(self.url(path))).send_json(body),
            _ => self.auth(self.agent.put(self.url(path))).send_json(body),
        };
        self.json(&format!("{method} {path}"), r)
    }

    fn delete<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let r = self.auth(self.agent.delete(self.url(path))).call();
        self.json(&format!("DELETE {path}"), r)
    }
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Waits for a job to end, with a progress bar on a terminal (plain lines otherwise).
fn wait_job(c: &Client, mut job: JobRecord) -> anyhow::Result<JobRecord> {
    let bar = indicatif::ProgressBar::new(job.total_bytes.max(1));
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "job {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("{} {:?}", job.id, job.request.kind));
    while !matches!(job.state, JobState::Done | JobState::Failed) {
        std::thread::sleep(Duration::from_millis(200));
        job = c.get(&format!("/api/v1/jobs/{}", job.id))?;
        bar.set_length(job.total_bytes.max(1));
        bar.set_position(job.progress_bytes);
        if let Some(s) = &job.status {
            bar.set_message(format!("{} {:?}: {s}", job.id, job.request.kind));
        }
    }
    bar.finish_and_clear();
    Ok(job)
}

fn submit(c: &Client, req: JobRequest, wait: Wait) -> anyhow::Result<JobRecord> {
    let job: JobRecord = c.send_json("POST", "/api/v1/jobs", &req)?;
    if wait.no_wait {
        print_json(&job)?;
        return Ok(job);
    }
    let job = wait_job(c, job)?;
    if job.state == JobState::Failed {
        bail!(
            "job {} failed: {}",
            job.id,
            job.error.as_deref().unwrap_or("no reason given")
        );
    }
    eprintln!(
        "job {} done: {:?} of {} recording(s), {} bytes",
        job.id,
        job.request.kind,
        job.recording_ids.len(),
        job.progress_bytes
    );
    print_json(&job)?;
    Ok(job)
}

/// Downloads every file of a recording (and `manifest.json`) into `dir/<id>/`.
fn download(c: &Client, id: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let rec: serde_json::Value = c.get(&format!("/api/v1/recordings/{id}"))?;
    let out = dir.join(id);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let names = rec["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str().map(str::to_owned))
        .chain(["manifest.json".to_owned()]);
    for name in names {
        if !crate::catalog::is_safe_file_name(&name) && name != "manifest.json" {
            bail!("refusing to write the file name {name:?}");
        }
        let path = format!("/api/v1/recordings/{id}/files/{name}");
        let r = c.auth(c.agent.get(c.url(&path))).call();
        let mut r = c.check(&format!("GET {path}"), r)?;
        let dest = out.join(&name);
        let tmp = out.join(format!(".{name}.part"));
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("{}", tmp.display()))?;
        std::io::copy(&mut r.body_mut().as_reader(), &mut f)
            .with_context(|| format!("downloading {name}"))?;
        f.flush()?;
        std::fs::rename(&tmp, &dest)?;
        eprintln!("{}", dest.display());
    }
    Ok(())
}

/// Submits a copy or move job.
fn transfer(c: &Client, kind: JobKind, t: Transfer) -> anyhow::Result<()> {
    let mut r = JobRequest::new(kind, Some(t.recording_id));
    r.from = t.from;
    r.to = Some(t.to);
    submit(c, r, t.wait)?;
    Ok(())
}

/// Runs `tapfleet-manager job ...`.
pub fn job(remote: &Remote, cmd: JobCmd) -> anyhow::Result<()> {
    let c = Client::new(remote)?;
    let req = |kind, id: Option<String>| JobRequest::new(kind, id);
    match cmd {
        JobCmd::Upload {
            recording_id,
            to,
            wait,
        } => {
            let mut r = req(JobKind::Upload, Some(recording_id));
            r.to = to;
            submit(&c, r, wait)?;
        }
        JobCmd::Copy(t) => transfer(&c, JobKind::Copy, t)?,
        JobCmd::Move(t) => transfer(&c, JobKind::Move, t)?,
        JobCmd::Delete {
            recording_id,
            from,
            wait,
        } => {
            let mut r = req(JobKind::Delete, Some(recording_id));
            r.from = from;
            submit(&c, r, wait)?;
        }
        JobCmd::Fetch {
            recording_id,
            call_id,
            caller,
            callee,
            since,
            until,
            to,
            out,
            wait,
        } => {
            let mut r = req(JobKind::Fetch, recording_id);
            r.call_id = call_id;
            r.caller = caller;
            r.callee = callee;
            r.since = since;
            r.until = until;
            r.to = to;
            if out.is_some() && wait.no_wait {
                bail!("--out needs to wait for the job (drop --no-wait)");
            }
            let job = submit(&c, r, wait)?;
            if let Some(dir) = out {
                for id in &job.recording_ids {
                    download(&c, id, &dir)?;
                }
            }
        }
        JobCmd::List => print_json(&c.get::<serde_json::Value>("/api/v1/jobs")?)?,
        JobCmd::Show { id } => {
            print_json(&c.get::<serde_json::Value>(&format!("/api/v1/jobs/{id}"))?)?
        }
    }
    Ok(())
}

/// Runs `tapfleet-manager hold ...`.
pub fn hold(remote: &Remote, cmd: HoldCmd) -> anyhow::Result<()> {
    let c = Client::new(remote)?;
    let v: serde_json::Value = match cmd {
        HoldCmd::Set { recording_id } => c.send_json(
            "PUT",
            &format!("/api/v1/recordings/{recording_id}/hold"),
            &serde_json::json!({}),
        )?,
        HoldCmd::Clear { recording_id } => {
            c.delete(&format!("/api/v1/recordings/{recording_id}/hold"))?
        }
    };
    println!(
        "{}: legal_hold = {}",
        v["recording_id"].as_str().unwrap_or_default(),
        v["legal_hold"]
    );
    Ok(())
}
