//! `tapfleet-edge record --interface IF...`: records calls live from one or more interfaces into
//! a folder, without the service (no broker, no cache), through the same [`Recorder`] and
//! [`LiveCapture`] the service uses. Stops after `--duration` or at SIGINT/SIGTERM, finishes
//! every call (those still active end as `capture_end`) and prints the summary plus each
//! interface's kernel counters. Drops the kernel reports while calls are active mark those
//! recordings incomplete ([`Recorder::note_drops`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::capture::{DropWatch, LiveCapture, LiveOptions, Next, PacketSource};
use crate::offline::{RecordArgs, collect, print_summary};
use crate::recorder::{FinishedRecording, Recorder, RecorderOptions};

/// Parses `90`, `90s`, `500ms`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("duration {s:?}: expected a number and s, ms, m or h"))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => anyhow::bail!("duration {s:?}: unknown unit {unit:?} (s, ms, m, h)"),
    })
}

/// Sets `stop` at SIGINT or SIGTERM.
fn stop_on_signal(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                match signal(SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = term.recv() => {}
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            });
            stop.store(true, Ordering::Relaxed);
        })?;
    Ok(())
}

fn wall_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Runs `record --interface`.
pub fn main(args: &RecordArgs, opts: RecorderOptions) -> anyhow::Result<()> {
    // Warnings (drops while calls are active, write failures) on stderr; RUST_LOG to see more.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let duration = args.duration.as_deref().map(parse_duration).transpose()?;
    let mut live = LiveOptions::new("any");
    live.filter = args.filter.clone();
    live.buffer_size = i32::try_from(u64::from(args.buffer_mib) * 1024 * 1024)
        .context("--buffer-mib: at most 2047")?;
    let mut src = LiveCapture::open(&args.interface, &live)?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone())?;
    let deadline = duration.map(|d| Instant::now() + d);
    eprintln!(
        "capturing on {} (link types {:?}), recording into {}",
        args.interface.join(","),
        src.interfaces()
            .iter()
            .map(|i| i.link_type)
            .collect::<Vec<_>>(),
        args.out.display()
    );
    let mut rec = Recorder::new(args.out.clone(), opts);
    let mut finished: Vec<FinishedRecording> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut drops = DropWatch::default();
    let mut last_tick = Instant::now();
    let result = loop {
        let next = match src.next_packet() {
            Ok(n) => n,
            Err(e) => break Err(anyhow::Error::new(e)),
        };
        match next {
            Next::Packet(p) => {
                if let Err(e) = rec.process(&p) {
                    tracing::error!(error = %e, "recording write failed");
                }
            }
            Next::Idle => {}
            Next::End => break Ok(()),
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            let now = wall_ns();
            rec.tick(now);
            rec.note_drops(now, drops.delta(src.stats()));
            collect(&mut rec, &mut finished, &mut failed);
            if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                break Ok(());
            }
        }
    };
    // The last second's drops count for the calls still active.
    std::thread::sleep(Duration::from_millis(1100));
    rec.note_drops(wall_ns(), drops.delta(src.stats()));
    rec.finish();
    collect(&mut rec, &mut finished, &mut failed);
    let _ = print_summary(&rec, &finished, &failed, started.elapsed());
    for i in src.interfaces() {
        let s = i.snapshot();
        eprintln!(
            "{}: {} packets received by the kernel, {} delivered, {} dropped by the kernel, {} by the interface",
            i.interface,
            s.received.unwrap_or(0),
            i.delivered.load(Ordering::Relaxed),
            s.kernel_dropped.unwrap_or(0),
            s.if_dropped.unwrap_or(0),
        );
    }
    result?;
    if !failed.is_empty() {
        anyhow::bail!("{} recordings failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10s").ok(), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("5m").ok(), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h").ok(), Some(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
