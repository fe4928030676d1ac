//! Writes a call's packets as a classic pcap file, hashing the bytes as they go out.
//!
//! Classic-pcap input keeps its global header and every record header byte for byte; other
//! input (pcapng, live) gets little-endian records at microsecond or nanosecond resolution,
//! whichever keeps the source's timestamps exact. One link type per file: the first packet's.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::capture::{RawPacket, TsPrecision};

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const SNAPLEN: u32 = 262_144;

/// A writer that hashes and counts what it writes.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
    pub fn written(&self) -> u64 {
        self.written
    }
    /// The inner writer and the digest of everything written.
    pub fn finish(self) -> (W, [u8; 32]) {
        (self.inner, self.hasher.finalize().into())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[derive(Debug, Clone, Copy)]
struct RecordFormat {
    big_endian: bool,
    nano: bool,
}

/// An open `call.pcap`.
#[derive(Debug)]
pub struct PcapWriter {
    out: HashingWriter<BufWriter<File>>,
    /// The input's global header when it was classic pcap (records of the same file are copied).
    classic_header: Option<[u8; 24]>,
    format: RecordFormat,
    linktype: u16,
    packets: u64,
}

impl PcapWriter {
    /// Creates the file, writing the global header suited to `first`.
    pub fn create(path: &Path, first: &RawPacket<'_>) -> io::Result<Self> {
        let file = File::create(path)?;
        let mut out = HashingWriter::new(BufWriter::with_capacity(32 * 1024, file));
        let (classic_header, format) = match first.classic {
            Some(c) => {
                let h = *c.file_header;
                let le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                let be = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                let format = RecordFormat {
                    big_endian: le != MAGIC_US && le != MAGIC_NS,
                    nano: le == MAGIC_NS || be == MAGIC_NS,
                };
                out.write_all(&h)?;
                (Some(h), format)
            }
            None => {
                let nano = first.ts_precision == TsPrecision::Nano;
                let mut h = [0u8; 24];
                h[0..4].copy_from_slice(&(if nano { MAGIC_NS } else { MAGIC_US }).to_le_bytes());
                h[4..6].copy_from_slice(&2u16.to_le_bytes());
                h[6..8].copy_from_slice(&4u16.to_le_bytes());
                h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
                h[20..24].copy_from_slice(&u32::from(first.linktype).to_le_bytes());
                out.write_all(&h)?;
                (
                    None,
                    RecordFormat {
                        big_endian: false,
                        nano,
                    },
                )
            }
        };
        Ok(PcapWriter {
            out,
            classic_header,
            format,
            linktype: first.linktype,
            packets: 0,
        })
    }

    /// Appends a packet. Returns false (writing nothing) when its link type differs from the
    /// file's.
    pub fn write(&mut self, pkt: &RawPacket<'_>) -> io::Result<bool> {
        if pkt.linktype != self.linktype {
            return Ok(false);
        }
        match (pkt.classic, &self.classic_header) {
            (Some(c), Some(h)) if c.file_header == h => {
                self.out.write_all(c.record_header)?;
            }
            _ => {
                let f = self.format;
                let secs = pkt.ts_ns.div_euclid(1_000_000_000);
                let sub = pkt.ts_ns.rem_euclid(1_000_000_000);
                let frac = if f.nano { sub } else { sub / 1000 };
                let fields = [
                    u32::try_from(secs).unwrap_or(0),
                    frac as u32,
                    pkt.data.len() as u32,
                    pkt.orig_len.max(pkt.data.len() as u32),
                ];
                let mut rec = [0u8; 16];
                for (i, v) in fields.iter().enumerate() {
                    let b = if f.big_endian {
                        v.to_be_bytes()
                    } else {
                        v.to_le_bytes()
                    };
                    rec[i * 4..i * 4 + 4].copy_from_slice(&b);
                }
                self.out.write_all(&rec)?;
            }
        }
        self.out.write_all(pkt.data)?;
        self.packets += 1;
        Ok(true)
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Flushes and fsyncs; returns the file's size and SHA-256.
    pub fn finish(self) -> io::Result<(u64, [u8; 32])> {
        let size = self.out.written();
        let (buf, digest) = self.out.finish();
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok((size, digest))
    }
}
