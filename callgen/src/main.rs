//! The `tapfleet-callgen` command: parses options, writes `OUT` (pcap) and its truth JSON, and
//! prints a one-screen summary.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;
use tapfleet_callgen::{CodecChoice, GenOptions, default_truth_path, generate_to_file};

/// Generate a pcap of realistic SIP/RTP G.711 calls plus a ground-truth JSON beside it.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Output pcap file.
    #[arg(long, short)]
    out: PathBuf,
    /// Truth JSON path [default: OUT with extension .truth.json].
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Number of calls.
    #[arg(long, default_value_t = 5)]
    calls: u32,
    /// About how many calls are active at once.
    #[arg(long, default_value_t = 2)]
    concurrency: u32,
    /// Talk time per call, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Relative spread of call durations, 0..1 (0.2 = ±20%).
    #[arg(long, default_value_t = 0.0)]
    duration_jitter: f64,
    /// pcmu, pcma or mixed.
    #[arg(long, default_value = "pcmu")]
    codec: CodecChoice,
    /// RTP packet loss probability, 0..1.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Maximum random arrival delay of RTP packets, ms.
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Unix time (s) of the first INVITE [default: 2026-01-15T09:00:00Z].
    #[arg(long)]
    start: Option<u64>,
    /// Mean ring time (INVITE to 200 OK), ms.
    #[arg(long, default_value_t = 1000)]
    ring_ms: u32,
    /// Base address of callers.
    #[arg(long, default_value = "10.1.0.0")]
    caller_net: Ipv4Addr,
    /// Base address of callees.
    #[arg(long, default_value = "10.2.0.0")]
    callee_net: Ipv4Addr,
    /// SIP port.
    #[arg(long, default_value_t = 5060)]
    sip_port: u16,
    /// First RTP port.
    #[arg(long, default_value_t = 16384)]
    rtp_port_base: u16,
    /// Nanosecond timestamps (pcap magic a1b23c4d).
    #[arg(long)]
    nanos: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let opts = GenOptions {
        calls: cli.calls,
        concurrency: cli.concurrency,
        duration_s: cli.duration,
        duration_jitter: cli.duration_jitter,
        codec: cli.codec,
        loss: cli.loss,
        jitter_ms: cli.jitter_ms,
        seed: cli.seed,
        start_unix_s: cli.start.unwrap_or(tapfleet_callgen::DEFAULT_START_UNIX_S),
        ring_ms: cli.ring_ms,
        caller_net: cli.caller_net,
        callee_net: cli.callee_net,
        sip_port: cli.sip_port,
        rtp_port_base: cli.rtp_port_base,
        nanosecond_timestamps: cli.nanos,
    };
    let truth_path = cli.truth.unwrap_or_else(|| default_truth_path(&cli.out));
    let started = Instant::now();
    let truth = generate_to_file(&opts, &cli.out, Some(&truth_path))
        .with_context(|| format!("generating {}", cli.out.display()))?;
    let secs = started.elapsed().as_secs_f64();
    let t = &truth.totals;
    println!("file:    {}", cli.out.display());
    println!("truth:   {}", truth_path.display());
    println!("calls:   {}", truth.calls.len());
    println!(
        "packets: {} (SIP {}, RTP {}, RTP dropped {})",
        t.packets, t.sip_packets, t.rtp_packets, t.rtp_dropped
    );
    println!(
        "bytes:   {} ({:.1} MB), capture spans {:.1} s",
        t.file_bytes,
        t.file_bytes as f64 / 1e6,
        t.last_ns.saturating_sub(t.first_ns) as f64 / 1e9
    );
    println!(
        "took:    {secs:.2} s ({:.0} packets/s)",
        t.packets as f64 / secs.max(1e-9)
    );
    Ok(())
}
