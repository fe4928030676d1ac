//! The edge's Prometheus metrics: counters and gauges kept in atomics (the capture thread and the
//! core update them), rendered as Prometheus text on `GET /metrics` by a small HTTP server.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::capture_thread::CaptureCounters;

/// Gauges and counters the core keeps (the capture thread's are in [`CaptureCounters`]).
#[derive(Debug, Default)]
pub struct CoreMetrics {
    pub recordings_recording: AtomicU64,
    pub recordings_finalized: AtomicU64,
    pub recordings_announced: AtomicU64,
    pub recordings_stored: AtomicU64,
    pub recordings_evicted: AtomicU64,
    pub cache_used_bytes: AtomicU64,
    pub cache_capacity_bytes: AtomicU64,
    pub backlog_bytes: AtomicU64,
    pub backlog_oldest_seconds: AtomicU64,
    pub upload_bytes_total: AtomicU64,
    /// Bytes received by downloads into this edge's local storage (held for others).
    pub download_bytes_total: AtomicU64,
    pub manifests_published_total: AtomicU64,
    pub errors_total: AtomicU64,
    pub bad_messages_total: AtomicU64,
    pub connected: AtomicU64,
    pub config_version: AtomicU64,
    /// Capture threads started: 1 at start, one more per restart (capture settings changed).
    pub capture_starts_total: AtomicU64,
}

/// Renders every metric in the Prometheus text format.
pub fn render(core: &CoreMetrics, capture: &CaptureCounters) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, v: &AtomicU64| {
        let _ = writeln!(out, "# HELP tapfleet_edge_{name} {help}");
        let _ = writeln!(out, "# TYPE tapfleet_edge_{name} {kind}");
        let _ = writeln!(out, "tapfleet_edge_{name} {}", v.load(Ordering::Relaxed));
    };
    metric(
        "packets_total",
        "counter",
        "Packets captured.",
        &capture.packets,
    );
    metric("bytes_total", "counter", "Bytes captured.", &capture.bytes);
    metric(
        "kernel_drops_total",
        "counter",
        "Packets the kernel dropped.",
        &capture.kernel_drops,
    );
    metric(
        "interface_drops_total",
        "counter",
        "Packets the interface dropped.",
        &capture.interface_drops,
    );
    metric(
        "active_calls",
        "gauge",
        "Calls being recorded.",
        &capture.active_calls,
    );
    metric(
        "sip_tls_packets_total",
        "counter",
        "TCP segments of SIP over TLS (port 5061): counted, not recorded (encrypted).",
        &capture.sip_tls_packets,
    );
    metric(
        "upload_bytes_total",
        "counter",
        "File bytes published for upload.",
        &core.upload_bytes_total,
    );
    metric(
        "download_bytes_total",
        "counter",
        "File bytes received by downloads into the local storage (held for others).",
        &core.download_bytes_total,
    );
    metric(
        "manifests_published_total",
        "counter",
        "Manifests published (with re-sends).",
        &core.manifests_published_total,
    );
    metric(
        "errors_total",
        "counter",
        "Errors of the service.",
        &core.errors_total,
    );
    metric(
        "bad_messages_total",
        "counter",
        "Undecodable messages received.",
        &core.bad_messages_total,
    );
    metric(
        "connected",
        "gauge",
        "1 when the control connection is up.",
        &core.connected,
    );
    metric(
        "config_version",
        "gauge",
        "Version of the applied config.",
        &core.config_version,
    );
    metric(
        "capture_starts_total",
        "counter",
        "Capture starts (1 + restarts for new capture settings).",
        &core.capture_starts_total,
    );
    metric(
        "cache_used_bytes",
        "gauge",
        "Bytes of recordings in the cache.",
        &core.cache_used_bytes,
    );
    metric(
        "cache_capacity_bytes",
        "gauge",
        "Configured cache capacity.",
        &core.cache_capacity_bytes,
    );
    metric(
        "backlog_bytes",
        "gauge",
        "Bytes not yet stored by the manager.",
        &core.backlog_bytes,
    );
    metric(
        "backlog_oldest_seconds",
        "gauge",
        "Age of the oldest recording not yet stored.",
        &core.backlog_oldest_seconds,
    );
    let _ = writeln!(
        out,
        "# HELP tapfleet_edge_recordings Recordings in the cache, per state."
    );
    let _ = writeln!(out, "# TYPE tapfleet_edge_recordings gauge");
    for (state, v) in [
        ("recording", &core.recordings_recording),
        ("finalized", &core.recordings_finalized),
        ("announced", &core.recordings_announced),
        ("stored", &core.recordings_stored),
        ("evicted", &core.recordings_evicted),
    ] {
        let _ = writeln!(
            out,
            "tapfleet_edge_recordings{{state=\"{state}\"}} {}",
            v.load(Ordering::Relaxed)
        );
    }
    render_interfaces(
        &mut out,
        &super::capture_thread::interface_counters(capture),
    );
    out
}

/// libpcap's counters per live interface (since its capture started).
fn render_interfaces(out: &mut String, list: &[tapfleet_schemas::InterfaceCounters]) {
    if list.is_empty() {
        return;
    }
    type Get = fn(&tapfleet_schemas::InterfaceCounters) -> u64;
    let families: [(&str, &str, Get); 3] = [
        (
            "interface_received_total",
            "Packets the kernel handed to the capture, per interface (ps_recv).",
            |i| i.received,
        ),
        (
            "interface_kernel_drops_total",
            "Packets dropped for lack of room in the kernel buffer, per interface (ps_drop).",
            |i| i.kernel_drops,
        ),
        (
            "interface_if_drops_total",
            "Packets the interface or driver dropped, per interface (ps_ifdrop).",
            |i| i.interface_drops,
        ),
    ];
    for (name, help, get) in families {
        let _ = writeln!(out, "# HELP tapfleet_edge_{name} {help}");
        let _ = writeln!(out, "# TYPE tapfleet_edge_{name} counter");
        for i in list {
            let label = i.interface.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "tapfleet_edge_{name}{{interface=\"{label}\"}} {}",
                get(i)
            );
        }
    }
}

/// Serves `GET /metrics` on `addr` until the process ends.
pub async fn serve(
    addr: SocketAddr,
    core: Arc<CoreMetrics>,
    capture: Arc<CaptureCounters>,
) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = render(&core, &capture);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("metrics listener {addr}: {e}"))?;
    tracing::info!(%addr, "metrics on /metrics");
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::RecorderOptions;
    use crate::service::capture_thread::{self, CaptureMsg, Source};
    use std::sync::atomic::AtomicBool;

    /// A classic pcap (Ethernet, IPv4, TCP): `n` TLS application-data records from a SIP client
    /// to port 5061, and one to port 443 (TLS, but not SIP).
    fn tls_capture(n: u32) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65_535, 1] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        for i in 0..=n {
            let dport: u16 = if i < n { 5061 } else { 443 };
            let record = [0x17, 3, 3, 0, 4, 0xde, 0xad, 0xbe, 0xef];
            let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&((20 + 20 + record.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
            f.extend_from_slice(&40_000u16.to_be_bytes());
            f.extend_from_slice(&dport.to_be_bytes());
            f.extend_from_slice(&(1 + i * 9).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
            f.extend_from_slice(&record);
            for w in [1_700_000_000 + i, 0, f.len() as u32, f.len() as u32] {
                b.extend_from_slice(&w.to_le_bytes());
            }
            b.extend_from_slice(&f);
        }
        b
    }

    #[test]
    fn sip_over_tls_segments_are_exported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tls.pcap");
        std::fs::write(&path, tls_capture(3)).expect("write capture");
        let counters = Arc::new(CaptureCounters::default());
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let thread = capture_thread::spawn(
            Source::Replay { path, speed: 0.0 },
            tapfleet_schemas::CaptureConfig::default(),
            dir.path().join("recordings"),
            RecorderOptions::default(),
            tx,
            counters.clone(),
            Arc::new(AtomicBool::new(false)),
        )
        .expect("capture thread");
        loop {
            match rx.blocking_recv() {
                Some(CaptureMsg::Ended { error }) => {
                    assert_eq!(error, None);
                    break;
                }
                Some(_) => {}
                None => panic!("the capture thread ended without saying so"),
            }
        }
        thread.join().expect("capture thread ends");
        let text = render(&CoreMetrics::default(), &counters);
        assert!(
            text.contains(
                "# TYPE tapfleet_edge_sip_tls_packets_total counter\n\
                 tapfleet_edge_sip_tls_packets_total 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("tapfleet_edge_packets_total 4\n"), "{text}");
    }
}
