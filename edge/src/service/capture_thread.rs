//! The capture thread: reads packets from a file (replay) or a live interface, feeds the
//! recorder, and forwards the recorder's events to the core. Blocking IO, so a plain thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tapfleet_schemas::CaptureConfig;
use tokio::sync::mpsc::Sender;

use crate::capture::{
    DropWatch, InterfaceStats, LiveCapture, LiveOptions, Next, PacketSource, PcapReader,
};
use crate::recorder::{Recorder, RecorderEvent, RecorderOptions};

/// Where packets come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A capture file, paced at `speed` times real time (0: as fast as possible).
    Replay {
        path: PathBuf,
        speed: f64,
    },
    Live(Vec<String>),
}

/// What the capture thread tells the core.
#[derive(Debug)]
pub enum CaptureMsg {
    Recorder(RecorderEvent),
    /// A recording could not be written (disk error); its call was dropped, the others go on.
    Failed {
        recording_id: String,
        error: String,
    },
    /// The source ended (replay done) or failed.
    Ended {
        error: Option<String>,
    },
}

/// Counters the capture thread keeps for telemetry.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub kernel_drops: AtomicU64,
    pub interface_drops: AtomicU64,
    pub active_calls: AtomicU64,
    /// TCP segments of SIP over TLS since the service started (counted by the recorder, not
    /// recorded: their SIP is encrypted).
    pub sip_tls_packets: AtomicU64,
    /// The live capture's interfaces and their counters (empty for a replay).
    pub interfaces: std::sync::Mutex<Vec<Arc<InterfaceStats>>>,
}

/// Each live interface's counters, for telemetry.
pub fn interface_counters(c: &CaptureCounters) -> Vec<tapfleet_schemas::InterfaceCounters> {
    let Ok(list) = c.interfaces.lock() else {
        return Vec::new();
    };
    list.iter()
        .map(|i| {
            let s = i.snapshot();
            tapfleet_schemas::InterfaceCounters {
                interface: i.interface.clone(),
                received: s.received.unwrap_or(0),
                kernel_drops: s.kernel_dropped.unwrap_or(0),
                interface_drops: s.if_dropped.unwrap_or(0),
            }
        })
        .collect()
}

/// Starts the capture thread. Setting `stop` ends it (within about a second: checked at the
/// recorder's 1 s tick) as if the source had ended: every call is finished, then `Ended`.
pub fn spawn(
    source: Source,
    capture: CaptureConfig,
    out_dir: PathBuf,
    opts: RecorderOptions,
    tx: Sender<CaptureMsg>,
    counters: Arc<CaptureCounters>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("capture".to_owned())
        .spawn(move || {
            let error = match run(source, &capture, out_dir, opts, &tx, &counters, &stop) {
                Ok(()) => None,
                Err(e) => Some(format!("{e:#}")),
            };
            let _ = tx.blocking_send(CaptureMsg::Ended { error });
        })
}

fn run(
    source: Source,
    capture: &CaptureConfig,
    out_dir: PathBuf,
    opts: RecorderOptions,
    tx: &Sender<CaptureMsg>,
    counters: &CaptureCounters,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut pace = None;
    let mut src: Box<dyn PacketSource> = match source {
        Source::Replay { path, speed } => {
            if speed > 0.0 {
                pace = Some(Pace { speed, start: None });
            }
            let file = std::fs::File::open(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Box::new(PcapReader::new(std::io::BufReader::with_capacity(
                1 << 20,
                file,
            ))?)
        }
        Source::Live(mut ifaces) => {
            // Every interface, each on its own reader thread (capture::live).
            if ifaces.is_empty() {
                ifaces.push("any".to_owned());
            }
            let mut o = LiveOptions::new("any");
            o.snaplen = i32::try_from(capture.snaplen).unwrap_or(65_535);
            o.buffer_size = i32::try_from(capture.buffer_bytes).unwrap_or(i32::MAX);
            o.promiscuous = capture.promiscuous;
            o.filter = capture.bpf_filter.clone();
            let live = LiveCapture::open(&ifaces, &o)?;
            tracing::info!(interfaces = ?ifaces, buffer_bytes = o.buffer_size, "live capture started");
            if let Ok(mut i) = counters.interfaces.lock() {
                *i = live.interfaces().to_vec();
            }
            Box::new(live)
        }
    };
    let mut recorder = Recorder::new(out_dir, opts);
    let result = feed(&mut *src, pace, &mut recorder, tx, counters, stop);
    if result.is_err() {
        // Calls that ended before the source failed are finished (by the recorder's finisher
        // thread): hand their events over before reporting the error.
        recorder.wait_finishing();
        let _ = forward(&mut recorder, tx, counters);
    }
    result
}

/// Feeds every packet of `src` to the recorder, then finishes all calls.
fn feed(
    src: &mut dyn PacketSource,
    mut pace: Option<Pace>,
    recorder: &mut Recorder,
    tx: &Sender<CaptureMsg>,
    counters: &CaptureCounters,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut last_tick_ns = i64::MIN;
    let mut drops = DropWatch::default();
    // Drops since the service started: a restarted capture's source counts from 0 again.
    let (kernel_base, if_base, tls_base) = (
        counters.kernel_drops.load(Ordering::Relaxed),
        counters.interface_drops.load(Ordering::Relaxed),
        counters.sip_tls_packets.load(Ordering::Relaxed),
    );
    let sync_tls = |recorder: &Recorder| {
        counters.sip_tls_packets.store(
            tls_base.saturating_add(recorder.stats().sip_tls_packets),
            Ordering::Relaxed,
        );
    };
    loop {
        let now = match src.next_packet()? {
            Next::Packet(pkt) => {
                if let Some(p) = pace.as_mut() {
                    p.wait_for(pkt.ts_ns);
                }
                counters.packets.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes
                    .fetch_add(pkt.data.len() as u64, Ordering::Relaxed);
                let ts = pkt.ts_ns;
                if let Err(e) = recorder.process(&pkt) {
                    // Only the call concerned is dropped; it is reported through drain_failures.
                    tracing::error!(error = %e, "recording write failed");
                }
                ts
            }
            Next::Idle => super::now_ns(),
            Next::End => break,
        };
        if now.saturating_sub(last_tick_ns) >= 1_000_000_000 {
            last_tick_ns = now;
            recorder.tick(now);
            sync_tls(recorder);
            let st = src.stats();
            // Drops while calls are active make their recordings say so.
            recorder.note_drops(now, drops.delta(st));
            if let Some(d) = st.kernel_dropped {
                counters
                    .kernel_drops
                    .store(kernel_base.saturating_add(d), Ordering::Relaxed);
            }
            if let Some(d) = st.if_dropped {
                counters
                    .interface_drops
                    .store(if_base.saturating_add(d), Ordering::Relaxed);
            }
            if stop.load(Ordering::Relaxed) {
                break; // a restart (new capture settings): finish every call as at the end
            }
        }
        forward(recorder, tx, counters)?;
    }
    recorder.finish();
    sync_tls(recorder);
    forward(recorder, tx, counters)?;
    Ok(())
}

fn forward(
    recorder: &mut Recorder,
    tx: &Sender<CaptureMsg>,
    counters: &CaptureCounters,
) -> anyhow::Result<()> {
    counters
        .active_calls
        .store(recorder.stats().active_calls, Ordering::Relaxed);
    let failures: Vec<CaptureMsg> = recorder
        .drain_failures()
        .map(|f| CaptureMsg::Failed {
            recording_id: f.recording_id,
            error: f.error,
        })
        .collect();
    for msg in recorder
        .drain_events()
        .map(CaptureMsg::Recorder)
        .chain(failures)
    {
        tx.blocking_send(msg)
            .map_err(|_| anyhow::anyhow!("the service is shutting down"))?;
    }
    Ok(())
}

/// Paces a replay: packet `ts` is processed `(ts - first ts) / speed` after the first one.
struct Pace {
    speed: f64,
    start: Option<(i64, std::time::Instant)>,
}

impl Pace {
    fn wait_for(&mut self, ts_ns: i64) {
        let (first_ts, started) = *self.start.get_or_insert((ts_ns, std::time::Instant::now()));
        let offset_ns = (ts_ns.saturating_sub(first_ts)).max(0) as f64 / self.speed;
        let due = started + std::time::Duration::from_nanos(offset_ns as u64);
        let now = std::time::Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}
