//! Packet sources: capture files ([`pcapfile`]) and live interfaces ([`live`]), both yielding
//! [`RawPacket`]s through the [`PacketSource`] trait so the recorder does not care where packets
//! come from.

pub mod live;
pub mod pcapfile;

pub use live::{InterfaceStats, LiveCapture, LiveOptions, LiveSource};
pub use pcapfile::PcapReader;

/// Largest captured packet accepted from any source (bigger records are refused as corrupt).
pub const MAX_PACKET: usize = 256 * 1024;

/// Resolution of a packet's timestamp at its source, so a writer can keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsPrecision {
    Micro,
    Nano,
}

/// The original classic-pcap framing of a packet, so it can be copied byte for byte.
#[derive(Debug, Clone, Copy)]
pub struct ClassicRecord<'a> {
    /// The input file's 24-byte global header (magic, version, snaplen, linktype).
    pub file_header: &'a [u8; 24],
    /// The packet's 16-byte record header, in the file's byte order.
    pub record_header: &'a [u8; 16],
}

/// One captured packet, borrowed from its source until the next call.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    /// Capture time, Unix nanoseconds.
    pub ts_ns: i64,
    /// Length on the wire (may exceed `data.len()` when the snaplen cut it).
    pub orig_len: u32,
    /// Link-layer type (pcap LINKTYPE/DLT value).
    pub linktype: u16,
    pub ts_precision: TsPrecision,
    pub data: &'a [u8],
    /// Present when the packet was read from a classic pcap file.
    pub classic: Option<ClassicRecord<'a>>,
}

/// A packet copied out of its source, for the few that must wait (IP fragments, TCP segments
/// before their message is complete) before they can be written into a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedPacket {
    pub ts_ns: i64,
    pub orig_len: u32,
    pub linktype: u16,
    pub ts_precision: TsPrecision,
    pub data: Vec<u8>,
    /// The classic-pcap file header and record header, when it came from a classic pcap.
    pub classic: Option<Box<([u8; 24], [u8; 16])>>,
}

impl OwnedPacket {
    pub fn from_raw(p: &RawPacket<'_>) -> Self {
        OwnedPacket {
            ts_ns: p.ts_ns,
            orig_len: p.orig_len,
            linktype: p.linktype,
            ts_precision: p.ts_precision,
            data: p.data.to_vec(),
            classic: p
                .classic
                .map(|c| Box::new((*c.file_header, *c.record_header))),
        }
    }

    /// Bytes this copy holds (for memory bounds).
    pub fn cost(&self) -> usize {
        self.data.len() + std::mem::size_of::<Self>() + if self.classic.is_some() { 40 } else { 0 }
    }

    /// A borrowed view, as the source would have returned it.
    pub fn as_raw(&self) -> RawPacket<'_> {
        RawPacket {
            ts_ns: self.ts_ns,
            orig_len: self.orig_len,
            linktype: self.linktype,
            ts_precision: self.ts_precision,
            data: &self.data,
            classic: self.classic.as_deref().map(|(f, r)| ClassicRecord {
                file_header: f,
                record_header: r,
            }),
        }
    }
}

/// What a source has next.
#[derive(Debug)]
pub enum Next<'a> {
    Packet(RawPacket<'a>),
    /// No packet within the source's timeout (live sources); call again.
    Idle,
    /// The source is exhausted (end of file).
    End,
}

/// Counters a source keeps about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Packets the kernel received (live only).
    pub received: Option<u64>,
    /// Packets the kernel dropped for lack of buffer space (live only).
    pub kernel_dropped: Option<u64>,
    /// Packets dropped by the interface or driver (live only).
    pub if_dropped: Option<u64>,
}

/// Turns a source's cumulative drop counters (kernel + interface) into the drops since the last
/// look, for [`crate::recorder::Recorder::note_drops`].
#[derive(Debug, Default, Clone, Copy)]
pub struct DropWatch {
    seen: u64,
}

impl DropWatch {
    /// Packets dropped (kernel and interface) since the last call.
    pub fn delta(&mut self, st: SourceStats) -> u64 {
        let total = st
            .kernel_dropped
            .unwrap_or(0)
            .saturating_add(st.if_dropped.unwrap_or(0));
        let d = total.saturating_sub(self.seen);
        self.seen = self.seen.max(total);
        d
    }
}

/// A source of packets: a capture file or a live interface.
pub trait PacketSource {
    /// The next packet, [`Next::Idle`] when none arrived in time, or [`Next::End`].
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError>;
    /// The source's drop counters.
    fn stats(&mut self) -> SourceStats;
}

/// Why a source could not deliver packets.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a pcap or pcapng file (starts with {magic:02x?})")]
    NotACapture { magic: [u8; 4] },
    #[error("truncated {what} at byte {offset}")]
    Truncated { what: &'static str, offset: u64 },
    #[error("record of {len} bytes at byte {offset} exceeds the {max} byte limit")]
    RecordTooLarge { len: u64, offset: u64, max: usize },
    #[error("corrupt pcapng block at byte {offset}: {reason}")]
    BadBlock { reason: &'static str, offset: u64 },
    #[error("packet for undeclared pcapng interface {id} at byte {offset}")]
    UnknownInterface { id: u32, offset: u64 },
    #[error("live capture: {0}")]
    Live(#[from] pcap::Error),
    #[error("live capture: no interface given")]
    NoInterface,
    #[error("live capture on {interface}: {error}")]
    Interface { interface: String, error: String },
    #[error("live capture stopped: {error}")]
    Reader { error: String },
}
