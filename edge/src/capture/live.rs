//! Live capture on a network interface with libpcap (the `pcap` crate): snaplen, kernel buffer
//! size, promiscuous mode, BPF filter, immediate or timeout delivery, nanosecond timestamps where
//! the platform has them, and the kernel's drop counters.

use super::{CaptureError, Next, PacketSource, RawPacket, SourceStats, TsPrecision};

/// How to open a live capture.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub interface: String,
    /// Bytes kept of each packet.
    pub snaplen: i32,
    /// Kernel ring buffer size in bytes (default 64 MiB).
    pub buffer_size: i32,
    pub promiscuous: bool,
    /// BPF filter expression, e.g. `udp or tcp port 5060`.
    pub filter: Option<String>,
    /// Deliver packets as they arrive instead of batching them.
    pub immediate: bool,
    /// Longest wait for a packet before [`Next::Idle`], in milliseconds.
    pub timeout_ms: i32,
}

impl LiveOptions {
    /// Defaults for an interface: snaplen 65535, 64 MiB buffer, promiscuous, 100 ms timeout.
    pub fn new(interface: impl Into<String>) -> Self {
        LiveOptions {
            interface: interface.into(),
            snaplen: 65_535,
            buffer_size: 64 * 1024 * 1024,
            promiscuous: true,
            filter: None,
            immediate: false,
            timeout_ms: 100,
        }
    }
}

/// A live capture on one interface.
pub struct LiveSource {
    cap: pcap::Capture<pcap::Active>,
    linktype: u16,
}

impl std::fmt::Debug for LiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSource")
            .field("linktype", &self.linktype)
            .finish_non_exhaustive()
    }
}

impl LiveSource {
    /// Opens the interface and applies the filter.
    pub fn open(opts: &LiveOptions) -> Result<Self, CaptureError> {
        let mut cap = pcap::Capture::from_device(opts.interface.as_str())?
            .snaplen(opts.snaplen)
            .buffer_size(opts.buffer_size)
            .promisc(opts.promiscuous)
            .immediate_mode(opts.immediate)
            .timeout(opts.timeout_ms)
            .precision(pcap::Precision::Nano)
            .open()?;
        if let Some(f) = &opts.filter {
            cap.filter(f, true)?;
        }
        let linktype = u16::try_from(cap.get_datalink().0).unwrap_or(u16::MAX);
        Ok(LiveSource { cap, linktype })
    }

    /// The interface's link type.
    pub fn linktype(&self) -> u16 {
        self.linktype
    }
}

impl PacketSource for LiveSource {
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        let linktype = self.linktype;
        match self.cap.next_packet() {
            Ok(p) => {
                // With nanosecond precision libpcap puts nanoseconds in tv_usec. The casts are
                // needed where time_t/suseconds_t are not i64.
                #[allow(clippy::unnecessary_cast)]
                let ts_ns = (p.header.ts.tv_sec as i64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(p.header.ts.tv_usec as i64);
                Ok(Next::Packet(RawPacket {
                    ts_ns,
                    orig_len: p.header.len,
                    linktype,
                    ts_precision: TsPrecision::Nano,
                    data: p.data,
                    classic: None,
                }))
            }
            Err(pcap::Error::TimeoutExpired) => Ok(Next::Idle),
            Err(pcap::Error::NoMorePackets) => Ok(Next::End),
            Err(e) => Err(CaptureError::Live(e)),
        }
    }

    fn stats(&mut self) -> SourceStats {
        match self.cap.stats() {
            Ok(s) => SourceStats {
                received: Some(u64::from(s.received)),
                kernel_dropped: Some(u64::from(s.dropped)),
                if_dropped: Some(u64::from(s.if_dropped)),
            },
            Err(_) => SourceStats::default(),
        }
    }
}
