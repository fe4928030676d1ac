//! `tapfleet-edge`: the site service (`run`) and the offline recorder (`record`).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tapfleet-edge",
    version,
    about = "tapfleet edge: records SIP calls and their media"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Record calls from pcap/pcapng files into a folder, offline (no broker).
    Record(tapfleet_edge::offline::RecordArgs),
    /// Run the edge service: enroll, take config, record, cache, upload.
    Run(tapfleet_edge::service::RunArgs),
    /// Inspect the local cache (while the service is stopped).
    Cache(tapfleet_edge::admin::CacheArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Record(args) => tapfleet_edge::offline::main(args),
        Cmd::Run(args) => tapfleet_edge::service::main(args),
        Cmd::Cache(args) => tapfleet_edge::admin::main(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tapfleet-edge: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
