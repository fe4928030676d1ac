//! A streaming, bounded reader of capture files: classic pcap (either byte order, microsecond or
//! nanosecond magic) and pcapng (SHB, IDB, EPB, SPB; per-interface link type and timestamp
//! resolution; several sections). Reads from any [`Input`]: a [`std::io::Read`] (one record
//! copied into the reader's buffer) or a memory-mapped file ([`FileInput`], [`PcapReader::open`]:
//! records borrowed from the mapping, no copy; pages already read are released so resident memory
//! stays bounded). Refuses records over [`MAX_PACKET`] and reports truncation or garbage as typed
//! errors.

use std::fs::File;
use std::io::{BufReader, Read};

use super::{
    CaptureError, ClassicRecord, MAX_PACKET, Next, PacketSource, RawPacket, SourceStats,
    TsPrecision,
};

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;
const BLOCK_IDB: u32 = 1;
const BLOCK_SPB: u32 = 3;
const BLOCK_EPB: u32 = 6;
/// Largest pcapng block: a maximal packet plus room for options.
const MAX_BLOCK: usize = MAX_PACKET + 64 * 1024;

#[derive(Debug, Clone, Copy)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: [u8; 2]) -> u16 {
        match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        }
    }
    fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        }
    }
    fn u64(self, b: [u8; 8]) -> u64 {
        match self {
            Endian::Little => u64::from_le_bytes(b),
            Endian::Big => u64::from_be_bytes(b),
        }
    }
}

/// Timestamp unit of a pcapng interface.
#[derive(Debug, Clone, Copy)]
enum TsResol {
    /// 10^-n seconds.
    Dec(u8),
    /// 2^-n seconds.
    Bin(u8),
}

impl TsResol {
    fn to_ns(self, ticks: u64) -> i64 {
        let ns: u128 = match self {
            TsResol::Dec(n) if n <= 9 => u128::from(ticks) * 10u128.pow(9 - u32::from(n)),
            TsResol::Dec(n) => u128::from(ticks) / 10u128.pow(u32::from(n.min(38)) - 9),
            TsResol::Bin(n) => (u128::from(ticks) * 1_000_000_000) >> n.min(127),
        };
        i64::try_from(ns).unwrap_or(i64::MAX)
    }
    fn precision(self) -> TsPrecision {
        match self {
            TsResol::Dec(n) if n <= 6 => TsPrecision::Micro,
            TsResol::Bin(n) if n <= 20 => TsPrecision::Micro,
            _ => TsPrecision::Nano,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u16,
    snaplen: u32,
    resol: TsResol,
    offset_s: i64,
}

#[derive(Debug)]
enum Format {
    Classic {
        endian: Endian,
        nano: bool,
        linktype: u16,
        file_header: [u8; 24],
    },
    Ng {
        endian: Endian,
        interfaces: Vec<Interface>,
    },
}

/// Where a [`PcapReader`] takes its bytes from.
pub trait Input {
    /// Fills `buf` as far as the input allows; returns the bytes copied (fewer only at its end).
    fn read_into(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Consumes the next `n` bytes (fewer only at the end of the input) and says where they are
    /// ([`Input::span_bytes`]): in the input when it is in memory, else read into `scratch`.
    fn next_span(&mut self, n: usize, scratch: &mut Vec<u8>) -> std::io::Result<Span>;
    /// The bytes of a span the last [`Input::next_span`] returned.
    fn span_bytes<'a>(&'a self, span: Span, scratch: &'a [u8]) -> &'a [u8];
}

/// Where consumed bytes are: `len` bytes from `start` of the input's memory or of the scratch.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    start: usize,
    len: usize,
}

impl<R: Read> Input for R {
    fn read_into(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        read_full(self, buf)
    }
    fn next_span(&mut self, n: usize, scratch: &mut Vec<u8>) -> std::io::Result<Span> {
        scratch.resize(n, 0);
        let len = read_full(self, scratch)?;
        Ok(Span { start: 0, len })
    }
    fn span_bytes<'a>(&'a self, span: Span, scratch: &'a [u8]) -> &'a [u8] {
        scratch.get(..span.len).unwrap_or_default()
    }
}

/// A capture file as input: mapped into memory when it is a regular file (records are borrowed
/// from the mapping), else (a pipe, a device, or a failed mapping) read through a 1 MiB buffer.
/// The mapped file must not be truncated while it is read (the process would get SIGBUS).
#[derive(Debug)]
pub enum FileInput {
    Mapped(Mapped),
    Buffered(BufReader<File>),
}

impl FileInput {
    pub fn new(file: File) -> Self {
        let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
        if regular {
            // SAFETY: read-only mapping of a finished capture; the bytes are only read as `[u8]`.
            // If another process truncates the file while it is mapped, reads past the new end
            // fault (SIGBUS): documented on `FileInput`.
            #[allow(unsafe_code)]
            match unsafe { memmap2::Mmap::map(&file) } {
                Ok(map) => {
                    let _ = map.advise(memmap2::Advice::Sequential);
                    return FileInput::Mapped(Mapped {
                        map,
                        pos: 0,
                        released: 0,
                    });
                }
                Err(e) => tracing::debug!(error = %e, "capture file not mapped, reading it"),
            }
        }
        FileInput::Buffered(BufReader::with_capacity(1 << 20, file))
    }
}

impl Input for FileInput {
    fn read_into(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            FileInput::Mapped(m) => Ok(m.read_into(buf)),
            FileInput::Buffered(r) => read_full(r, buf),
        }
    }
    fn next_span(&mut self, n: usize, scratch: &mut Vec<u8>) -> std::io::Result<Span> {
        match self {
            FileInput::Mapped(m) => Ok(m.next_span(n)),
            FileInput::Buffered(r) => r.next_span(n, scratch),
        }
    }
    fn span_bytes<'a>(&'a self, span: Span, scratch: &'a [u8]) -> &'a [u8] {
        match self {
            FileInput::Mapped(m) => m.span_bytes(span),
            FileInput::Buffered(r) => r.span_bytes(span, scratch),
        }
    }
}

/// A read-only mapping of a capture file and the position of the next byte.
#[derive(Debug)]
pub struct Mapped {
    map: memmap2::Mmap,
    pos: usize,
    /// Pages before this offset were released from this process (they stay in the page cache).
    released: usize,
}

/// Read pages are released from the process once this many bytes have gathered.
const RELEASE_BYTES: usize = 8 << 20;

impl Mapped {
    fn next_span(&mut self, n: usize) -> Span {
        let start = self.pos;
        self.release(start);
        let end = start.saturating_add(n).min(self.map.len()).max(start);
        self.pos = end;
        Span {
            start,
            len: end - start,
        }
    }

    fn span_bytes(&self, span: Span) -> &[u8] {
        self.map
            .get(span.start..span.start + span.len)
            .unwrap_or_default()
    }

    fn read_into(&mut self, buf: &mut [u8]) -> usize {
        let span = self.next_span(buf.len());
        let src = self.span_bytes(span);
        let n = src.len();
        if let Some(dst) = buf.get_mut(..n) {
            dst.copy_from_slice(src);
        }
        n
    }

    /// Unmaps the pages wholly before `upto` (a multiple of the release size) so that resident
    /// memory stays bounded however large the file is; nothing before `upto` is read again.
    fn release(&mut self, upto: usize) {
        if upto - self.released < RELEASE_BYTES {
            return;
        }
        let end = upto - upto % RELEASE_BYTES;
        // SAFETY: `DontNeed` on a read-only shared file mapping drops this process's page table
        // entries; a later access would fault the same bytes back in from the file, so no slice
        // handed out (none is alive: `next_span` borrows `self` mutably) can observe a change.
        #[allow(unsafe_code)]
        let _ = unsafe {
            self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                self.released,
                end - self.released,
            )
        };
        self.released = end;
    }
}

/// Streaming reader of a pcap or pcapng file.
#[derive(Debug)]
pub struct PcapReader<R> {
    inner: R,
    format: Format,
    /// Bytes consumed so far (for error messages).
    offset: u64,
    record_header: [u8; 16],
    buf: Vec<u8>,
    last_ts_ns: i64,
    packets: u64,
}

impl PcapReader<FileInput> {
    /// Reads a capture file, mapped into memory when it is a regular file ([`FileInput`]).
    pub fn open(file: File) -> Result<Self, CaptureError> {
        PcapReader::new(FileInput::new(file))
    }
}

impl<R: Input> PcapReader<R> {
    /// Reads the file header; fails if the input is neither pcap nor pcapng.
    pub fn new(mut inner: R) -> Result<Self, CaptureError> {
        let mut magic = [0u8; 4];
        let got = inner.read_into(&mut magic)?;
        if got < 4 {
            return Err(CaptureError::NotACapture { magic });
        }
        let mut reader = PcapReader {
            inner,
            format: Format::Ng {
                endian: Endian::Little,
                interfaces: Vec::new(),
            },
            offset: 4,
            record_header: [0; 16],
            buf: Vec::new(),
            last_ts_ns: 0,
            packets: 0,
        };
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        let classic = match (le, be) {
            (PCAP_MAGIC_US, _) => Some((Endian::Little, false)),
            (PCAP_MAGIC_NS, _) => Some((Endian::Little, true)),
            (_, PCAP_MAGIC_US) => Some((Endian::Big, false)),
            (_, PCAP_MAGIC_NS) => Some((Endian::Big, true)),
            _ => None,
        };
        if let Some((endian, nano)) = classic {
            let mut file_header = [0u8; 24];
            file_header[..4].copy_from_slice(&magic);
            reader.read_exact_or(&mut file_header[4..], "pcap file header")?;
            let network = endian.u32(le4(&file_header[20..24]));
            reader.format = Format::Classic {
                endian,
                nano,
                linktype: (network & 0xffff) as u16,
                file_header,
            };
            return Ok(reader);
        }
        if le == PCAPNG_SHB {
            reader.read_shb_rest()?;
            return Ok(reader);
        }
        Err(CaptureError::NotACapture { magic })
    }

    /// Packets returned so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Bytes of input consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// The next packet, or `None` at a clean end of file.
    pub fn next_raw(&mut self) -> Result<Option<RawPacket<'_>>, CaptureError> {
        match self.format {
            Format::Classic { .. } => self.next_classic(),
            Format::Ng { .. } => self.next_ng(),
        }
    }

    fn next_classic(&mut self) -> Result<Option<RawPacket<'_>>, CaptureError> {
        let Format::Classic {
            endian,
            nano,
            linktype,
            ref file_header,
        } = self.format
        else {
            return Ok(None);
        };
        let start = self.offset;
        let mut hdr = [0u8; 16];
        let got = self.inner.read_into(&mut hdr)?;
        self.offset += got as u64;
        if got == 0 {
            return Ok(None);
        }
        if got < 16 {
            return Err(CaptureError::Truncated {
                what: "pcap record header",
                offset: start,
            });
        }
        let sec = endian.u32(le4(&hdr[0..4]));
        let frac = endian.u32(le4(&hdr[4..8]));
        let incl = endian.u32(le4(&hdr[8..12]));
        let orig = endian.u32(le4(&hdr[12..16]));
        if incl as usize > MAX_PACKET {
            return Err(CaptureError::RecordTooLarge {
                len: u64::from(incl),
                offset: start,
                max: MAX_PACKET,
            });
        }
        let span = self.inner.next_span(incl as usize, &mut self.buf)?;
        self.offset += span.len as u64;
        if span.len < incl as usize {
            return Err(CaptureError::Truncated {
                what: "pcap packet data",
                offset: start,
            });
        }
        self.record_header = hdr;
        let frac_ns = if nano {
            i64::from(frac)
        } else {
            i64::from(frac) * 1000
        };
        let ts_ns = i64::from(sec) * 1_000_000_000 + frac_ns;
        self.packets += 1;
        self.last_ts_ns = ts_ns;
        Ok(Some(RawPacket {
            ts_ns,
            orig_len: orig,
            linktype,
            ts_precision: if nano {
                TsPrecision::Nano
            } else {
                TsPrecision::Micro
            },
            data: self.inner.span_bytes(span, &self.buf),
            classic: Some(ClassicRecord {
                file_header,
                record_header: &self.record_header,
            }),
        }))
    }

    /// Reads the rest of a section header block after its 4-byte type.
    fn read_shb_rest(&mut self) -> Result<(), CaptureError> {
        let start = self.offset - 4;
        let mut head = [0u8; 8];
        self.read_exact_or(&mut head, "pcapng section header")?;
        self.read_shb_body(start, le4(&head[0..4]), le4(&head[4..8]))
    }

    /// Reads a section header block's body once its length and byte-order magic were read.
    fn read_shb_body(
        &mut self,
        start: u64,
        len: [u8; 4],
        bom: [u8; 4],
    ) -> Result<(), CaptureError> {
        let endian = if u32::from_le_bytes(bom) == PCAPNG_BOM {
            Endian::Little
        } else if u32::from_be_bytes(bom) == PCAPNG_BOM {
            Endian::Big
        } else {
            return Err(CaptureError::BadBlock {
                reason: "bad byte-order magic",
                offset: start,
            });
        };
        let total = endian.u32(len) as usize;
        if !(28..=MAX_BLOCK).contains(&total) || !total.is_multiple_of(4) {
            return Err(CaptureError::BadBlock {
                reason: "bad section header length",
                offset: start,
            });
        }
        // The rest: version, section length, options, trailing length (skipped).
        let got = self.inner.next_span(total - 12, &mut self.buf)?.len;
        self.offset += got as u64;
        if got < total - 12 {
            return Err(CaptureError::Truncated {
                what: "pcapng section header",
                offset: start + 12,
            });
        }
        self.format = Format::Ng {
            endian,
            interfaces: Vec::new(),
        };
        Ok(())
    }

    fn next_ng(&mut self) -> Result<Option<RawPacket<'_>>, CaptureError> {
        // Blocks are parsed in the loop; the packet's bytes are borrowed only once it is found.
        let (ts_ns, orig, iface, span, at, cap) = loop {
            let start = self.offset;
            let mut head = [0u8; 8];
            let got = self.inner.read_into(&mut head)?;
            self.offset += got as u64;
            if got == 0 {
                return Ok(None);
            }
            if got < 8 {
                return Err(CaptureError::Truncated {
                    what: "pcapng block header",
                    offset: start,
                });
            }
            if u32::from_le_bytes(le4(&head[0..4])) == PCAPNG_SHB {
                // A new section (its byte order may differ).
                let mut bom = [0u8; 4];
                self.read_exact_or(&mut bom, "pcapng section header")?;
                self.read_shb_body(start, le4(&head[4..8]), bom)?;
                continue;
            }
            let Format::Ng { endian, .. } = self.format else {
                return Ok(None);
            };
            let btype = endian.u32(le4(&head[0..4]));
            let total = endian.u32(le4(&head[4..8])) as usize;
            if total < 12 || !total.is_multiple_of(4) {
                return Err(CaptureError::BadBlock {
                    reason: "bad block length",
                    offset: start,
                });
            }
            if total > MAX_BLOCK {
                return Err(CaptureError::RecordTooLarge {
                    len: total as u64,
                    offset: start,
                    max: MAX_BLOCK,
                });
            }
            let span = self.inner.next_span(total - 8, &mut self.buf)?;
            self.offset += span.len as u64;
            if span.len < total - 8 {
                return Err(CaptureError::Truncated {
                    what: "pcapng block",
                    offset: start + 8,
                });
            }
            let block = self.inner.span_bytes(span, &self.buf);
            let body_len = total - 12;
            let trailer = endian.u32(le4(block.get(body_len..body_len + 4).unwrap_or(&[])));
            if trailer as usize != total {
                return Err(CaptureError::BadBlock {
                    reason: "trailing length differs from leading length",
                    offset: start,
                });
            }
            match btype {
                BLOCK_IDB => {
                    let iface = parse_idb(endian, block.get(..body_len).unwrap_or(&[])).ok_or(
                        CaptureError::BadBlock {
                            reason: "short interface description",
                            offset: start,
                        },
                    )?;
                    if let Format::Ng { interfaces, .. } = &mut self.format {
                        if interfaces.len() >= 4096 {
                            return Err(CaptureError::BadBlock {
                                reason: "too many interfaces",
                                offset: start,
                            });
                        }
                        interfaces.push(iface);
                    }
                }
                BLOCK_EPB => {
                    let body = block.get(..body_len).unwrap_or(&[]);
                    if body.len() < 20 {
                        return Err(CaptureError::BadBlock {
                            reason: "short enhanced packet block",
                            offset: start,
                        });
                    }
                    let id = endian.u32(le4(&body[0..4]));
                    let hi = endian.u32(le4(&body[4..8]));
                    let lo = endian.u32(le4(&body[8..12]));
                    let cap = endian.u32(le4(&body[12..16])) as usize;
                    let orig = endian.u32(le4(&body[16..20]));
                    if cap > MAX_PACKET {
                        return Err(CaptureError::RecordTooLarge {
                            len: cap as u64,
                            offset: start,
                            max: MAX_PACKET,
                        });
                    }
                    if 20 + cap > body.len() {
                        return Err(CaptureError::BadBlock {
                            reason: "packet data exceeds block",
                            offset: start,
                        });
                    }
                    let iface = interface(&self.format, id, start)?;
                    let ticks = (u64::from(hi) << 32) | u64::from(lo);
                    let ts_ns = iface
                        .resol
                        .to_ns(ticks)
                        .saturating_add(iface.offset_s.saturating_mul(1_000_000_000));
                    break (ts_ns, orig, iface, span, 20, cap);
                }
                BLOCK_SPB => {
                    let body = block.get(..body_len).unwrap_or(&[]);
                    if body.len() < 4 {
                        return Err(CaptureError::BadBlock {
                            reason: "short simple packet block",
                            offset: start,
                        });
                    }
                    let orig = endian.u32(le4(&body[0..4]));
                    let iface = interface(&self.format, 0, start)?;
                    let mut cap = (orig as usize).min(body.len() - 4);
                    if iface.snaplen > 0 {
                        cap = cap.min(iface.snaplen as usize);
                    }
                    // An SPB has no timestamp: it inherits the previous packet's.
                    break (self.last_ts_ns, orig, iface, span, 4, cap);
                }
                _ => {} // name resolution, statistics, custom, ...: skipped
            }
        };
        self.packets += 1;
        self.last_ts_ns = ts_ns;
        let block = self.inner.span_bytes(span, &self.buf);
        Ok(Some(RawPacket {
            ts_ns,
            orig_len: orig,
            linktype: iface.linktype,
            ts_precision: iface.resol.precision(),
            data: block.get(at..at + cap).unwrap_or_default(),
            classic: None,
        }))
    }

    fn read_exact_or(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), CaptureError> {
        let start = self.offset;
        let got = self.inner.read_into(buf)?;
        self.offset += got as u64;
        if got < buf.len() {
            return Err(CaptureError::Truncated {
                what,
                offset: start,
            });
        }
        Ok(())
    }
}

impl<R: Input> PacketSource for PcapReader<R> {
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        Ok(match self.next_raw()? {
            Some(p) => Next::Packet(p),
            None => Next::End,
        })
    }
    fn stats(&mut self) -> SourceStats {
        SourceStats::default()
    }
}

fn interface(format: &Format, id: u32, offset: u64) -> Result<Interface, CaptureError> {
    match format {
        Format::Ng { interfaces, .. } => interfaces
            .get(id as usize)
            .copied()
            .ok_or(CaptureError::UnknownInterface { id, offset }),
        Format::Classic { .. } => Err(CaptureError::UnknownInterface { id, offset }),
    }
}

fn parse_idb(endian: Endian, body: &[u8]) -> Option<Interface> {
    let linktype = endian.u16([*body.first()?, *body.get(1)?]);
    let snaplen = endian.u32(le4(body.get(4..8)?));
    let mut iface = Interface {
        linktype,
        snaplen,
        resol: TsResol::Dec(6),
        offset_s: 0,
    };
    let mut opts = body.get(8..).unwrap_or(&[]);
    while opts.len() >= 4 {
        let code = endian.u16([opts[0], opts[1]]);
        let len = endian.u16([opts[2], opts[3]]) as usize;
        let val = opts.get(4..4 + len)?;
        match code {
            0 => break,
            9 if len == 1 => {
                let v = val[0];
                iface.resol = if v & 0x80 == 0 {
                    TsResol::Dec(v)
                } else {
                    TsResol::Bin(v & 0x7f)
                };
            }
            14 if len == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(val);
                iface.offset_s = endian.u64(b) as i64;
            }
            _ => {}
        }
        let padded = 4 + len.div_ceil(4) * 4;
        opts = opts.get(padded..).unwrap_or(&[]);
    }
    Some(iface)
}

/// Four bytes from a slice known to be at least four long (zeros otherwise).
fn le4(b: &[u8]) -> [u8; 4] {
    let mut out = [0u8; 4];
    if let Some(s) = b.get(..4) {
        out.copy_from_slice(s);
    }
    out
}

/// Reads until `buf` is full or end of file; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classic(endian_be: bool, nano: bool) -> Vec<u8> {
        let magic = if nano { PCAP_MAGIC_NS } else { PCAP_MAGIC_US };
        let w = |v: u32| {
            if endian_be {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = Vec::new();
        f.extend_from_slice(&w(magic));
        f.extend_from_slice(&if endian_be {
            [0, 2, 0, 4]
        } else {
            [2, 0, 4, 0]
        });
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&w(65535));
        f.extend_from_slice(&w(1));
        f.extend_from_slice(&w(10));
        f.extend_from_slice(&w(7));
        f.extend_from_slice(&w(3));
        f.extend_from_slice(&w(5));
        f.extend_from_slice(&[1, 2, 3]);
        f
    }

    #[test]
    fn classic_both_orders_and_resolutions() {
        for be in [false, true] {
            for nano in [false, true] {
                let f = classic(be, nano);
                let mut r = PcapReader::new(&f[..]).expect("header");
                let p = r.next_raw().expect("ok").expect("packet");
                let want = 10_000_000_000 + if nano { 7 } else { 7000 };
                assert_eq!(p.ts_ns, want);
                assert_eq!(p.linktype, 1);
                assert_eq!(p.orig_len, 5);
                assert_eq!(p.data, &[1, 2, 3]);
                let c = p.classic.expect("classic");
                assert_eq!(&c.record_header[..], &f[24..40]);
                assert!(r.next_raw().expect("ok").is_none());
            }
        }
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let f = classic(false, false);
        for cut in [1, 3, 10, 23, 30, 41] {
            let res = PcapReader::new(&f[..cut]).and_then(|mut r| r.next_raw().map(|_| ()));
            assert!(res.is_err(), "cut at {cut} must fail");
        }
        assert!(matches!(
            PcapReader::new(&b"hello world, not a capture"[..]),
            Err(CaptureError::NotACapture { .. })
        ));
        let mut big = classic(false, false);
        big[32..36].copy_from_slice(&(10_000_000u32).to_le_bytes());
        let mut r = PcapReader::new(&big[..]).expect("header");
        assert!(matches!(
            r.next_raw(),
            Err(CaptureError::RecordTooLarge { .. })
        ));
    }

    /// A pcapng block in the given byte order.
    fn block(be: bool, btype: u32, body: &[u8]) -> Vec<u8> {
        let w = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let total = (body.len() + 12) as u32;
        let mut b = Vec::new();
        b.extend_from_slice(&w(btype));
        b.extend_from_slice(&w(total));
        b.extend_from_slice(&body);
        b.extend_from_slice(&w(total));
        b
    }

    fn pcapng_two_sections() -> Vec<u8> {
        let mut f = Vec::new();
        // Section 1, little-endian: Ethernet at nanoseconds, an EPB.
        let mut shb = Vec::new();
        shb.extend_from_slice(&PCAPNG_BOM.to_le_bytes());
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&u64::MAX.to_le_bytes());
        f.extend(block(false, PCAPNG_SHB, &shb));
        let mut idb = vec![1, 0, 0, 0];
        idb.extend_from_slice(&0u32.to_le_bytes());
        idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]); // if_tsresol = 9, end
        f.extend(block(false, BLOCK_IDB, &idb));
        let ts: u64 = 1_700_000_000_123_456_789;
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&3u32.to_le_bytes());
        epb.extend_from_slice(&9u32.to_le_bytes());
        epb.extend_from_slice(&[1, 2, 3]);
        f.extend(block(false, BLOCK_EPB, &epb));
        f.extend(block(false, 0x0000_0004, &[0; 8])); // name resolution: skipped
        // Section 2, big-endian: Linux SLL at microseconds (default), an SPB.
        let mut shb = Vec::new();
        shb.extend_from_slice(&PCAPNG_BOM.to_be_bytes());
        shb.extend_from_slice(&[0, 1, 0, 0]);
        shb.extend_from_slice(&u64::MAX.to_be_bytes());
        f.extend(block(true, PCAPNG_SHB, &shb));
        let mut idb = vec![0, 113, 0, 0];
        idb.extend_from_slice(&2u32.to_be_bytes()); // snaplen 2
        f.extend(block(true, BLOCK_IDB, &idb));
        let mut spb = Vec::new();
        spb.extend_from_slice(&4u32.to_be_bytes());
        spb.extend_from_slice(&[7, 8, 9, 10]);
        f.extend(block(true, BLOCK_SPB, &spb));
        f
    }

    #[test]
    fn pcapng_sections_resolutions_and_block_kinds() {
        let f = pcapng_two_sections();
        let mut r = PcapReader::new(&f[..]).expect("header");
        let p = r.next_raw().expect("ok").expect("epb");
        assert_eq!(p.ts_ns, 1_700_000_000_123_456_789);
        assert_eq!(p.ts_precision, TsPrecision::Nano);
        assert_eq!((p.linktype, p.orig_len, p.data), (1, 9, &[1u8, 2, 3][..]));
        assert!(p.classic.is_none());
        let p = r.next_raw().expect("ok").expect("spb");
        assert_eq!(p.linktype, 113);
        assert_eq!(p.ts_precision, TsPrecision::Micro);
        assert_eq!(p.data, &[7, 8], "cut to the interface's snaplen");
        assert_eq!(
            p.ts_ns, 1_700_000_000_123_456_789,
            "an SPB inherits the last time"
        );
        assert!(r.next_raw().expect("ok").is_none());
        assert_eq!(r.packets(), 2);
    }

    #[test]
    fn pcapng_truncation_and_garbage_never_panic() {
        let f = pcapng_two_sections();
        for cut in 0..f.len() {
            let res = PcapReader::new(&f[..cut]).and_then(|mut r| {
                while r.next_raw()?.is_some() {}
                Ok(())
            });
            // Cuts at block boundaries end cleanly; everything else is a typed error.
            let _ = res;
        }
        let mut bad = f.clone();
        bad[4] = 13; // block length not a multiple of 4
        assert!(PcapReader::new(&bad[..]).is_err());
        let mut bad = f.clone();
        let epb_start = 28 + 32;
        bad[epb_start + 8] = 5; // EPB for undeclared interface 5
        let mut r = PcapReader::new(&bad[..]).expect("header");
        assert!(matches!(
            r.next_raw(),
            Err(CaptureError::UnknownInterface { id: 5, .. })
        ));
    }

    /// Every packet of `r` as (timestamp, original length, link type, bytes, classic framing).
    type Seen = (i64, u32, u16, Vec<u8>, Option<[u8; 16]>);
    fn all<R: Input>(mut r: PcapReader<R>) -> Vec<Seen> {
        let mut out = Vec::new();
        while let Some(p) = r.next_raw().expect("packet") {
            let classic = p.classic.map(|c| *c.record_header);
            out.push((p.ts_ns, p.orig_len, p.linktype, p.data.to_vec(), classic));
        }
        out
    }

    /// A mapped file, a pipe (read through a buffer) and a plain reader yield the same packets,
    /// for real pcap and pcapng captures.
    #[test]
    fn mapped_piped_and_read_inputs_agree() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/captures");
        for name in [
            "rtp-pcap/examples/SIP_DTMF2.pcap",
            "heplify/example/pcap/erspan_sip_ipv4_udp.pcapng",
        ] {
            let path = format!("{dir}/{name}");
            let bytes = std::fs::read(&path).expect("capture");
            let want = all(PcapReader::new(&bytes[..]).expect("header"));
            assert!(want.len() > 10, "{name}");
            let mapped = PcapReader::open(File::open(&path).expect("open")).expect("header");
            assert!(
                matches!(mapped.inner, FileInput::Mapped(_)),
                "{name}: not mapped"
            );
            assert!(all(mapped) == want, "{name}: mapped differs");

            let (rx, mut tx) = std::io::pipe().expect("pipe");
            let writer = std::thread::spawn(move || {
                std::io::Write::write_all(&mut tx, &bytes).expect("write pipe");
            });
            let piped = PcapReader::open(File::from(std::os::fd::OwnedFd::from(rx)));
            let piped = piped.expect("header");
            assert!(
                matches!(piped.inner, FileInput::Buffered(_)),
                "{name}: pipe mapped"
            );
            assert!(all(piped) == want, "{name}: piped differs");
            writer.join().expect("writer");
        }
    }

    /// Reading a mapped file larger than the release size releases the pages behind it and
    /// still yields every packet, and a file cut in a record is a truncation error.
    #[test]
    fn mapped_large_file_releases_pages_and_reports_truncation() {
        let mut f = classic(false, false);
        f.truncate(24);
        let mut n = 0u32;
        while f.len() < 2 * RELEASE_BYTES + 4096 {
            let len = 100 + n % 1300;
            for v in [n, 0, len, len] {
                f.extend_from_slice(&v.to_le_bytes());
            }
            f.extend((0..len).map(|i| (i ^ n) as u8));
            n += 1;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.pcap");
        std::fs::write(&path, &f).expect("write");
        let mut r = PcapReader::open(File::open(&path).expect("open")).expect("header");
        let mut count = 0u32;
        while let Some(p) = r.next_raw().expect("packet") {
            let len = 100 + count % 1300;
            assert_eq!(p.orig_len, len);
            assert!(
                p.data
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == (i as u32 ^ count) as u8)
            );
            count += 1;
        }
        assert_eq!(count, n);
        assert_eq!(r.bytes_read(), f.len() as u64);
        let FileInput::Mapped(m) = &r.inner else {
            panic!("not mapped");
        };
        assert_eq!(m.released, 2 * RELEASE_BYTES);

        std::fs::write(&path, &f[..f.len() - 7]).expect("write");
        let mut r = PcapReader::open(File::open(&path).expect("open")).expect("header");
        let err = loop {
            match r.next_raw() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("cut file read to its end"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, CaptureError::Truncated { .. }), "{err:?}");
    }
}
