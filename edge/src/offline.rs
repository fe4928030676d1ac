//! `tapfleet-edge record`: records calls from capture files into a folder, offline, through the
//! same [`Recorder`] the service uses, and prints a summary.

use std::fs::File;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;

use crate::calls::direction::{Cidr, SiteNetworks};
use crate::capture::PcapReader;
use crate::recorder::{FinishedRecording, Recorder, RecorderEvent, RecorderOptions};

/// Arguments of `tapfleet-edge record`.
#[derive(clap::Args, Debug, Clone)]
pub struct RecordArgs {
    /// Capture files (pcap or pcapng), read in this order as one capture.
    #[arg(required_unless_present = "interface", conflicts_with = "interface")]
    pub files: Vec<PathBuf>,
    /// Folder receiving one sub-folder per recording.
    #[arg(long, short, default_value = "recordings")]
    pub out: PathBuf,
    /// Seconds without a packet after which an answered call ends.
    #[arg(long, default_value_t = 60)]
    pub rtp_timeout: u64,
    /// Do not write audio.wav.
    #[arg(long)]
    pub no_audio: bool,
    /// Sync each recording to disk before its manifest is published (as the service does);
    /// by default the kernel writes the files back in its own time, as for `cp`.
    #[arg(long)]
    pub sync: bool,
    /// A call longer than this many seconds is cut and goes on as a chained next part.
    #[arg(long, default_value_t = 4 * 3600)]
    pub max_call_secs: u64,
    /// Capture live on these interfaces instead of reading files (repeatable or
    /// comma-separated; `any` for all): see [`crate::live_record`].
    #[arg(long, short, value_delimiter = ',')]
    pub interface: Vec<String>,
    /// Live: stop after this long (`90`, `90s`, `5m`, `1h`); default: until Ctrl-C.
    #[arg(long, requires = "interface")]
    pub duration: Option<String>,
    /// Live: BPF filter, e.g. `udp or tcp`.
    #[arg(long, requires = "interface")]
    pub filter: Option<String>,
    /// Live: kernel capture buffer in MiB.
    #[arg(long, default_value_t = 64, requires = "interface")]
    pub buffer_mib: u32,
    /// The site's own network as a CIDR (`10.0.0.0/8`; repeatable or comma-separated): each
    /// call's manifest `direction` (inbound, outbound, internal) comes from its INVITE's source
    /// and destination relative to them (config `capture.local_networks`).
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    pub local_net: Vec<String>,
    /// A SIP trunk / SBC / carrier address or network counted as outside the site even within
    /// `--local-net` (repeatable; config `capture.trunk_networks`).
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    pub trunk_net: Vec<String>,
}

/// Runs `record`.
pub fn main(args: RecordArgs) -> anyhow::Result<()> {
    let nets = |flag: &str, list: &[String]| -> anyhow::Result<Vec<Cidr>> {
        list.iter()
            .map(|s| s.parse().map_err(|e| anyhow::anyhow!("{flag}: {e}")))
            .collect()
    };
    let networks = SiteNetworks {
        local: nets("--local-net", &args.local_net)?,
        trunks: nets("--trunk-net", &args.trunk_net)?,
    };
    let opts = RecorderOptions {
        networks,
        rtp_timeout_ns: i64::try_from(args.rtp_timeout)
            .unwrap_or(i64::MAX / 1_000_000_000)
            .saturating_mul(1_000_000_000),
        audio: !args.no_audio,
        durable: args.sync,
        max_call_ns: i64::try_from(args.max_call_secs)
            .unwrap_or(i64::MAX / 1_000_000_000)
            .saturating_mul(1_000_000_000),
        ..RecorderOptions::default()
    };
    if !args.interface.is_empty() {
        return crate::live_record::main(&args, opts);
    }
    // Open every file first: a missing file fails before anything is written.
    let mut total = 0u64;
    for f in &args.files {
        let md = std::fs::metadata(f).with_context(|| format!("cannot read {}", f.display()))?;
        if !md.is_file() {
            anyhow::bail!("{} is not a file", f.display());
        }
        total += md.len();
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut rec = Recorder::new(args.out.clone(), opts);
    let mut finished: Vec<FinishedRecording> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let started = std::time::Instant::now();
    let result = record_files(&args, &mut rec, bar.as_ref(), &mut finished, &mut failed);
    rec.finish();
    collect(&mut rec, &mut finished, &mut failed);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    // A closed stdout (e.g. piped into `head`) must not fail the recording.
    let _ = print_summary(&rec, &finished, &failed, started.elapsed());
    result?;
    if !failed.is_empty() {
        anyhow::bail!("{} recordings failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

fn record_files(
    args: &RecordArgs,
    rec: &mut Recorder,
    bar: Option<&indicatif::ProgressBar>,
    finished: &mut Vec<FinishedRecording>,
    failed: &mut Vec<String>,
) -> anyhow::Result<()> {
    for path in &args.files {
        if let Some(b) = bar {
            b.set_message(path.display().to_string());
        }
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // Mapped when it is a regular file: packets are borrowed, not copied.
        let mut reader = PcapReader::open(file)
            .with_context(|| format!("{}: not a readable capture", path.display()))?;
        let mut shown = 0;
        loop {
            let pkt = match reader.next_raw() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "{}: corrupt capture after {} packets",
                        path.display(),
                        reader.packets()
                    )));
                }
            };
            rec.process(&pkt)
                .with_context(|| format!("recording {}", path.display()))?;
            // Events only feed the summary: taking them now and then is enough.
            if reader.packets() % 1024 == 0 {
                collect(rec, finished, failed);
                if let Some(b) = bar {
                    b.inc(reader.bytes_read() - shown);
                    shown = reader.bytes_read();
                }
            }
        }
        if let Some(b) = bar {
            b.inc(reader.bytes_read() - shown);
        }
    }
    Ok(())
}

pub(crate) fn collect(
    rec: &mut Recorder,
    finished: &mut Vec<FinishedRecording>,
    failed: &mut Vec<String>,
) {
    for ev in rec.drain_events() {
        match ev {
            RecorderEvent::Started { .. } => {}
            RecorderEvent::Finished(f) => finished.push(*f),
        }
    }
    for f in rec.drain_failures() {
        failed.push(format!("{}: {}", f.recording_id, f.error));
    }
}

pub(crate) fn print_summary(
    rec: &Recorder,
    finished: &[FinishedRecording],
    failed: &[String],
    elapsed: std::time::Duration,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let s = rec.stats();
    writeln!(
        out,
        "{} calls recorded, {} packets ({} bytes) in {:.2}s: {} SIP messages, {} RTP, {} RTCP, \
         {} orphan RTP, {} SIP over TLS (encrypted, not recorded), {} other, {} undecodable, \
         {} IP fragments, {} SIP parse errors",
        finished.len(),
        s.packets,
        s.bytes,
        elapsed.as_secs_f64(),
        s.sip_messages,
        s.rtp_packets,
        s.rtcp_packets,
        s.orphan_rtp_packets,
        s.sip_tls_packets,
        s.other_packets,
        s.undecoded,
        s.ip_fragments,
        s.sip_parse_errors,
    )?;
    for f in finished {
        let m = &f.manifest;
        let who = |p: &tapfleet_schemas::Party| {
            if p.number.is_empty() {
                p.uri.clone()
            } else {
                p.number.clone()
            }
        };
        writeln!(
            out,
            "{}  Call-ID {}  {} -> {}{}  {} streams  {:.1}s  {} packets  {:?}{}",
            m.recording_id,
            m.call_id,
            who(&m.caller),
            who(&m.callee),
            match m.direction {
                tapfleet_schemas::CallDirection::Unknown => "",
                tapfleet_schemas::CallDirection::Inbound => " (inbound)",
                tapfleet_schemas::CallDirection::Outbound => " (outbound)",
                tapfleet_schemas::CallDirection::Internal => " (internal)",
            },
            m.streams.len(),
            (m.end_ns - m.start_ns) as f64 / 1e9,
            m.packets,
            m.end_reason,
            m.sip_status.map(|s| format!(" {s}")).unwrap_or_default(),
        )?;
    }
    for f in failed {
        writeln!(out, "FAILED {f}")?;
    }
    Ok(())
}
