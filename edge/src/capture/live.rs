//! Live capture with libpcap (the `pcap` crate) on one or more interfaces, `any` included.
//!
//! [`LiveSource`] is one interface read directly: snaplen, kernel buffer size, promiscuous mode,
//! BPF filter, immediate or timeout delivery, nanosecond timestamps where the platform has them,
//! and the kernel's drop counters.
//!
//! [`LiveCapture`] is what the recorder reads live: one reader thread per interface, each with its
//! own libpcap handle, feeding the one recorder through a bounded channel of **batches** (up to
//! [`BATCH_PACKETS`] packets / [`BATCH_BYTES`] bytes, copied out of libpcap's ring into a reused
//! buffer: no allocation per packet). Readers only drain the kernel ring, so a recorder that is
//! busy for a moment (a full finisher queue) costs queue space, not kernel drops. Ordering: within
//! an interface packets keep libpcap's order; across interfaces the consumer merges the batches it
//! has received by timestamp (the packet with the smallest timestamp among the interfaces' current
//! batches goes first), so two interfaces interleave in time order up to one batch of latency.
//! Every second each reader reads `pcap_stats` (ps_drop: no room in the kernel buffer; ps_ifdrop:
//! dropped by the interface/driver) into its [`InterfaceStats`], totals kept in 64 bits across
//! the 32-bit counters' wrap.
//!
//! On `any` the link type is Linux SLL2 (interface index and packet direction kept) where libpcap
//! offers it, else SLL; the packet decoder handles both.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{CaptureError, Next, PacketSource, RawPacket, SourceStats, TsPrecision};

/// Linux "cooked" capture v2, what `any` delivers when asked.
pub const LINKTYPE_LINUX_SLL2: i32 = 276;
/// Packets in one batch handed from a reader thread to the recorder.
pub const BATCH_PACKETS: usize = 1024;
/// Bytes of packet data in one batch (a bigger packet travels alone).
pub const BATCH_BYTES: usize = 512 * 1024;
/// Batches per interface: in the channel, being filled or being read. They are a second buffer
/// after the kernel's, for when the recorder is held up (a burst of call starts on a slow disk):
/// up to 64 x 512 KiB per interface, grown only as traffic fills them and then reused.
pub const BATCHES_PER_INTERFACE: usize = 64;
/// Default kernel buffer: 64 MiB, far above libpcap's 2 MiB (about 0.3 s of 200,000 packets/s of
/// 1,000-byte frames before the kernel must drop).
pub const DEFAULT_BUFFER_BYTES: i32 = 64 * 1024 * 1024;

/// How to open a live capture.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub interface: String,
    /// Bytes kept of each packet.
    pub snaplen: i32,
    /// Kernel ring buffer size in bytes (default [`DEFAULT_BUFFER_BYTES`]).
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
            buffer_size: DEFAULT_BUFFER_BYTES,
            promiscuous: true,
            filter: None,
            immediate: false,
            timeout_ms: 100,
        }
    }

    /// The same options on another interface.
    pub fn on(&self, interface: &str) -> Self {
        LiveOptions {
            interface: interface.to_owned(),
            ..self.clone()
        }
    }
}

/// A live capture on one interface.
pub struct LiveSource {
    cap: pcap::Capture<pcap::Active>,
    linktype: u16,
    counters: DropCounters,
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
        if opts.interface == "any" {
            // SLL2 keeps the interface index; older libpcaps only have SLL, which is fine too.
            let _ = cap.set_datalink(pcap::Linktype(LINKTYPE_LINUX_SLL2));
        }
        if let Some(f) = &opts.filter {
            cap.filter(f, true)?;
        }
        let linktype = u16::try_from(cap.get_datalink().0).unwrap_or(u16::MAX);
        Ok(LiveSource {
            cap,
            linktype,
            counters: DropCounters::default(),
        })
    }

    /// The interface's link type.
    pub fn linktype(&self) -> u16 {
        self.linktype
    }
}

/// Nanosecond timestamp of a libpcap header opened with nanosecond precision (libpcap then puts
/// nanoseconds in `tv_usec`).
fn header_ts_ns(h: &pcap::PacketHeader) -> i64 {
    // The casts are needed where time_t/suseconds_t are not i64.
    #[allow(clippy::unnecessary_cast)]
    (h.ts.tv_sec as i64)
        .saturating_mul(1_000_000_000)
        .saturating_add(h.ts.tv_usec as i64)
}

impl PacketSource for LiveSource {
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        let linktype = self.linktype;
        match self.cap.next_packet() {
            Ok(p) => Ok(Next::Packet(RawPacket {
                ts_ns: header_ts_ns(p.header),
                orig_len: p.header.len,
                linktype,
                ts_precision: TsPrecision::Nano,
                data: p.data,
                classic: None,
            })),
            Err(pcap::Error::TimeoutExpired) => Ok(Next::Idle),
            Err(pcap::Error::NoMorePackets) => Ok(Next::End),
            Err(e) => Err(CaptureError::Live(e)),
        }
    }

    fn stats(&mut self) -> SourceStats {
        match self.cap.stats() {
            Ok(s) => self.counters.update(&s),
            Err(_) => SourceStats::default(),
        }
    }
}

/// libpcap's 32-bit counters as 64-bit totals (they wrap after 4 G packets).
#[derive(Debug, Default, Clone, Copy)]
struct DropCounters {
    last: Option<(u32, u32, u32)>,
    total: (u64, u64, u64),
}

impl DropCounters {
    fn update(&mut self, s: &pcap::Stat) -> SourceStats {
        let now = (s.received, s.dropped, s.if_dropped);
        let (r0, d0, i0) = self.last.unwrap_or((0, 0, 0));
        self.total.0 += u64::from(now.0.wrapping_sub(r0));
        self.total.1 += u64::from(now.1.wrapping_sub(d0));
        self.total.2 += u64::from(now.2.wrapping_sub(i0));
        self.last = Some(now);
        SourceStats {
            received: Some(self.total.0),
            kernel_dropped: Some(self.total.1),
            if_dropped: Some(self.total.2),
        }
    }
}

/// One interface's counters, updated every second by its reader thread.
#[derive(Debug, Default)]
pub struct InterfaceStats {
    pub interface: String,
    pub link_type: u16,
    /// Packets the kernel handed to the capture (`ps_recv`).
    pub received: AtomicU64,
    /// Packets dropped for lack of room in the kernel buffer (`ps_drop`).
    pub kernel_dropped: AtomicU64,
    /// Packets dropped by the interface or its driver (`ps_ifdrop`).
    pub if_dropped: AtomicU64,
    /// Packets the reader passed to the recorder.
    pub delivered: AtomicU64,
}

impl InterfaceStats {
    /// The counters as a [`SourceStats`].
    pub fn snapshot(&self) -> SourceStats {
        SourceStats {
            received: Some(self.received.load(Ordering::Relaxed)),
            kernel_dropped: Some(self.kernel_dropped.load(Ordering::Relaxed)),
            if_dropped: Some(self.if_dropped.load(Ordering::Relaxed)),
        }
    }
}

/// Packets of one interface, copied out of libpcap's ring.
#[derive(Debug)]
struct Batch {
    iface: usize,
    data: Vec<u8>,
    /// (timestamp ns, length on the wire, offset in `data`, captured length).
    packets: Vec<(i64, u32, u32, u32)>,
}

impl Batch {
    fn new(iface: usize) -> Self {
        Batch {
            iface,
            data: Vec::new(),
            packets: Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.data.clear();
        self.packets.clear();
    }

    fn full_for(&self, len: usize) -> bool {
        self.packets.len() >= BATCH_PACKETS
            || (!self.packets.is_empty() && self.data.len() + len > BATCH_BYTES)
    }

    fn head_ts(&self, pos: usize) -> Option<i64> {
        self.packets.get(pos).map(|p| p.0)
    }
}

/// A batch being read by the consumer, and where.
#[derive(Debug)]
struct Reading {
    batch: Batch,
    pos: usize,
}

/// Live capture on several interfaces (or one), merged for one recorder (see the module doc).
#[derive(Debug)]
pub struct LiveCapture {
    rx: Option<Receiver<Batch>>,
    /// Per interface: where its reader takes empty batches from.
    pools: Vec<SyncSender<Batch>>,
    /// Per interface: the batch being read, and the ones received after it.
    current: Vec<Option<Reading>>,
    queued: Vec<VecDeque<Batch>>,
    linktypes: Vec<u16>,
    stats: Vec<Arc<InterfaceStats>>,
    stop: Arc<AtomicBool>,
    /// The first error a reader hit (it stopped; the others go on).
    error: Arc<Mutex<Option<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    wait: Duration,
}

impl LiveCapture {
    /// Opens every interface with `opts` (its `interface` is ignored) and starts one reader
    /// thread per interface. Fails, capturing nothing, if any interface cannot be opened.
    pub fn open(interfaces: &[String], opts: &LiveOptions) -> Result<Self, CaptureError> {
        if interfaces.is_empty() {
            return Err(CaptureError::NoInterface);
        }
        let mut sources = Vec::with_capacity(interfaces.len());
        for name in interfaces {
            let failed = |e: CaptureError| CaptureError::Interface {
                interface: name.clone(),
                error: e.to_string(),
            };
            let src = LiveSource::open(&opts.on(name)).map_err(failed)?;
            // Non-blocking: with TPACKET_V3 a blocking read waits forever on a silent
            // interface, so the reader could neither stop nor read its counters.
            let linktype = src.linktype;
            let cap = src
                .cap
                .setnonblock()
                .map_err(|e| failed(CaptureError::Live(e)))?;
            sources.push((cap, linktype));
        }
        let n = sources.len();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(n * BATCHES_PER_INTERFACE);
        let stop = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let mut me = LiveCapture {
            rx: Some(rx),
            pools: Vec::with_capacity(n),
            current: (0..n).map(|_| None).collect(),
            queued: (0..n).map(|_| VecDeque::new()).collect(),
            linktypes: Vec::with_capacity(n),
            stats: Vec::with_capacity(n),
            stop: stop.clone(),
            error: error.clone(),
            threads: Vec::with_capacity(n),
            wait: Duration::from_millis(u64::try_from(opts.timeout_ms.max(1)).unwrap_or(100)),
        };
        for (i, ((cap, linktype), name)) in sources.into_iter().zip(interfaces).enumerate() {
            let (pool_tx, pool_rx) = std::sync::mpsc::sync_channel(BATCHES_PER_INTERFACE);
            for _ in 0..BATCHES_PER_INTERFACE {
                // The pool has exactly this many slots: never full here.
                let _ = pool_tx.try_send(Batch::new(i));
            }
            let st = Arc::new(InterfaceStats {
                interface: name.clone(),
                link_type: linktype,
                ..InterfaceStats::default()
            });
            me.linktypes.push(linktype);
            me.stats.push(st.clone());
            me.pools.push(pool_tx);
            let reader = Reader {
                cap,
                counters: DropCounters::default(),
                tx: tx.clone(),
                pool: pool_rx,
                stats: st,
                stop: stop.clone(),
                error: error.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("pcap-{name}"))
                .spawn(move || reader.run())?;
            me.threads.push(handle);
        }
        Ok(me)
    }

    /// Each interface's counters (updated every second by its reader).
    pub fn interfaces(&self) -> &[Arc<InterfaceStats>] {
        &self.stats
    }

    /// Moves every batch already received into its interface's queue.
    fn take_arrived(&mut self) {
        let Some(rx) = self.rx.as_ref() else { return };
        loop {
            match rx.try_recv() {
                Ok(b) => {
                    if let Some(q) = self.queued.get_mut(b.iface) {
                        q.push_back(b);
                    }
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Gives read batches back to their readers and moves queued ones up. Returns whether some
    /// interface has a packet to read.
    fn refill(&mut self) -> bool {
        let mut any = false;
        for i in 0..self.current.len() {
            let done = self
                .current
                .get(i)
                .and_then(Option::as_ref)
                .is_none_or(|r| r.pos >= r.batch.packets.len());
            if done {
                if let Some(mut r) = self.current.get_mut(i).and_then(Option::take) {
                    r.batch.clear();
                    if let Some(p) = self.pools.get(i) {
                        let _ = p.try_send(r.batch);
                    }
                }
                if let (Some(slot), Some(b)) = (
                    self.current.get_mut(i),
                    self.queued.get_mut(i).and_then(VecDeque::pop_front),
                ) {
                    *slot = Some(Reading { batch: b, pos: 0 });
                }
            }
            any |= self.current.get(i).is_some_and(Option::is_some);
        }
        any
    }

    /// The interface whose next packet is the oldest.
    fn oldest(&self) -> Option<usize> {
        if self.current.len() == 1 {
            return self.current.first().and_then(Option::as_ref).map(|_| 0);
        }
        self.current
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.as_ref()
                    .and_then(|r| r.batch.head_ts(r.pos))
                    .map(|t| (t, i))
            })
            .min()
            .map(|(_, i)| i)
    }

    fn reader_error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }
}

impl PacketSource for LiveCapture {
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        let exhausted = self
            .current
            .iter()
            .any(|r| r.as_ref().is_none_or(|r| r.pos >= r.batch.packets.len()));
        if exhausted {
            self.take_arrived();
            if !self.refill() {
                let Some(rx) = self.rx.as_ref() else {
                    return Ok(Next::End);
                };
                match rx.recv_timeout(self.wait) {
                    Ok(b) => {
                        if let Some(q) = self.queued.get_mut(b.iface) {
                            q.push_back(b);
                        }
                        self.take_arrived();
                        self.refill();
                    }
                    Err(RecvTimeoutError::Timeout) => return Ok(Next::Idle),
                    Err(RecvTimeoutError::Disconnected) => {
                        return match self.reader_error() {
                            Some(error) => Err(CaptureError::Reader { error }),
                            None => Ok(Next::End),
                        };
                    }
                }
            }
        }
        let Some(i) = self.oldest() else {
            return Ok(Next::Idle);
        };
        let linktype = self.linktypes.get(i).copied().unwrap_or(u16::MAX);
        let Some(r) = self.current.get_mut(i).and_then(Option::as_mut) else {
            return Ok(Next::Idle);
        };
        let Some(&(ts_ns, orig_len, off, len)) = r.batch.packets.get(r.pos) else {
            return Ok(Next::Idle);
        };
        r.pos += 1;
        let (off, len) = (off as usize, len as usize);
        let data = r.batch.data.get(off..off + len).unwrap_or(&[]);
        Ok(Next::Packet(RawPacket {
            ts_ns,
            orig_len,
            linktype,
            ts_precision: TsPrecision::Nano,
            data,
            classic: None,
        }))
    }

    /// Sums of every interface's counters, as of their last reading (at most 1 s old).
    fn stats(&mut self) -> SourceStats {
        let mut out = SourceStats {
            received: Some(0),
            kernel_dropped: Some(0),
            if_dropped: Some(0),
        };
        for s in &self.stats {
            let one = s.snapshot();
            let add = |a: &mut Option<u64>, b: Option<u64>| {
                *a = Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0)));
            };
            add(&mut out.received, one.received);
            add(&mut out.kernel_dropped, one.kernel_dropped);
            add(&mut out.if_dropped, one.if_dropped);
        }
        out
    }
}

impl Drop for LiveCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Readers blocked on a full channel or an empty pool wake up on the disconnect.
        self.rx = None;
        self.pools.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// How long a reader sleeps when libpcap has no packet ready (the kernel keeps filling its
/// buffer meanwhile: 5 ms of 200,000 packets/s is 1,000 packets).
const IDLE_SLEEP: Duration = Duration::from_millis(5);

/// One interface's reader thread.
struct Reader {
    cap: pcap::Capture<pcap::Active>,
    counters: DropCounters,
    tx: SyncSender<Batch>,
    pool: Receiver<Batch>,
    stats: Arc<InterfaceStats>,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
}

impl Reader {
    fn run(mut self) {
        if let Err(e) = self.read_all() {
            tracing::error!(interface = %self.stats.interface, error = %e, "live capture failed");
            if let Ok(mut slot) = self.error.lock() {
                slot.get_or_insert_with(|| format!("{}: {e}", self.stats.interface));
            }
        }
        self.read_stats();
    }

    fn read_stats(&mut self) {
        let Ok(s) = self.cap.stats() else { return };
        let s = self.counters.update(&s);
        let st = &self.stats;
        st.received
            .store(s.received.unwrap_or(0), Ordering::Relaxed);
        st.kernel_dropped
            .store(s.kernel_dropped.unwrap_or(0), Ordering::Relaxed);
        st.if_dropped
            .store(s.if_dropped.unwrap_or(0), Ordering::Relaxed);
    }

    /// Reads until stopped (or the consumer is gone), sending full batches, and a partial one
    /// whenever libpcap has nothing ready (then it sleeps [`IDLE_SLEEP`]).
    fn read_all(&mut self) -> Result<(), CaptureError> {
        let mut last_stats = std::time::Instant::now();
        let Ok(mut batch) = self.pool.recv() else {
            return Ok(());
        };
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let idle = match self.cap.next_packet() {
                Ok(p) => {
                    let len = p.data.len();
                    if batch.full_for(len) {
                        batch = match send(&self.tx, &self.pool, &self.stats, batch) {
                            Some(b) => b,
                            None => return Ok(()),
                        };
                    }
                    let off = u32::try_from(batch.data.len()).unwrap_or(u32::MAX);
                    batch.data.extend_from_slice(p.data);
                    batch.packets.push((
                        header_ts_ns(p.header),
                        p.header.len,
                        off,
                        u32::try_from(len).unwrap_or(0),
                    ));
                    false
                }
                Err(pcap::Error::TimeoutExpired) => true,
                Err(pcap::Error::NoMorePackets) => return Ok(()),
                Err(e) => return Err(CaptureError::Live(e)),
            };
            if idle {
                if !batch.packets.is_empty() {
                    batch = match send(&self.tx, &self.pool, &self.stats, batch) {
                        Some(b) => b,
                        None => return Ok(()),
                    };
                }
                std::thread::sleep(IDLE_SLEEP);
            }
            if last_stats.elapsed() >= Duration::from_secs(1) {
                last_stats = std::time::Instant::now();
                self.read_stats();
            }
        }
    }
}

/// Sends a filled batch and takes an empty one (waiting while all are in use). None: the
/// consumer is gone.
fn send(
    tx: &SyncSender<Batch>,
    pool: &Receiver<Batch>,
    stats: &InterfaceStats,
    batch: Batch,
) -> Option<Batch> {
    let n = batch.packets.len() as u64;
    tx.send(batch).ok()?;
    stats.delivered.fetch_add(n, Ordering::Relaxed);
    pool.recv().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_counters_survive_the_32_bit_wrap() {
        let mut c = DropCounters::default();
        let stat = |r, d, i| pcap::Stat {
            received: r,
            dropped: d,
            if_dropped: i,
        };
        assert_eq!(c.update(&stat(10, 1, 0)).kernel_dropped, Some(1));
        let s = c.update(&stat(u32::MAX, 3, 0));
        assert_eq!(s.received, Some(u64::from(u32::MAX)));
        let s = c.update(&stat(5, 4, 2));
        assert_eq!(s.received, Some(u64::from(u32::MAX) + 6));
        assert_eq!((s.kernel_dropped, s.if_dropped), (Some(4), Some(2)));
    }
}
