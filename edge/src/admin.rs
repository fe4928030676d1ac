//! Operator commands that inspect the edge's local state while the service is stopped:
//! `tapfleet-edge cache list --data DIR [--json]`.

use std::path::PathBuf;

use crate::cache::Cache;

/// `tapfleet-edge cache ...`
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub cmd: CacheCmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheCmd {
    /// List the recordings in the cache with their states.
    List {
        /// The service's data folder.
        #[arg(long, env = "TAPFLEET_DATA")]
        data: PathBuf,
        /// Print JSON (one object with a `recordings` array).
        #[arg(long)]
        json: bool,
    },
}

/// Entry point of `tapfleet-edge cache`.
pub fn main(args: CacheArgs) -> anyhow::Result<()> {
    match args.cmd {
        CacheCmd::List { data, json } => {
            let cache = Cache::open(&data.join("cache"))?;
            let entries = cache.entries()?;
            if json {
                let rows: Vec<serde_json::Value> = entries
                    .iter()
                    .map(|(id, e)| {
                        serde_json::json!({
                            "recording_id": id,
                            "state": e.state,
                            "call_id": e.manifest.as_ref().map(|m| m.call_id.clone()),
                            "bytes": e.bytes(),
                            "stored_files": e.stored_files,
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "recordings": rows }));
            } else {
                for (id, e) in &entries {
                    let call = e.manifest.as_ref().map_or("", |m| m.call_id.as_str());
                    println!(
                        "{id}  {:<10} {:>10} B  {call}",
                        format!("{:?}", e.state),
                        e.bytes()
                    );
                }
                let s = cache.summary()?;
                println!(
                    "{} recordings: {} recording, {} finalized, {} announced, {} stored, {} evicted; {} B used (of which {} B held for other edges), {} B not yet stored",
                    entries.len(),
                    s.counts.recording,
                    s.counts.finalized,
                    s.counts.announced,
                    s.counts.stored,
                    s.counts.evicted,
                    s.used_bytes,
                    s.held_bytes,
                    s.backlog_bytes
                );
            }
            Ok(())
        }
    }
}
