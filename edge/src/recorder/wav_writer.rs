//! Writes a call's audio as a 16-bit PCM stereo WAV file (caller left, callee right) at 8 kHz
//! ([`NARROWBAND_RATE`]) or 16 kHz ([`WIDEBAND_RATE`]), chosen when the file is created.
//!
//! Samples are placed by frame index (frames since the call's start) into a ring of interleaved
//! little-endian frames — already the file's bytes — so that late packets within one second
//! (the window: `rate` frames) of the newest frame still land in place. One second matches the
//! recorder's anchor tolerance (a stream whose timestamps stray more than 1 s from arrival is
//! re-anchored), so the two channels may be that far apart. Frames older than the window are
//! final: they are written straight from the ring to disk in pieces of [`CHUNK_BYTES`] (8 KiB at
//! 8 kHz, a quarter second; no per-packet write, no copy through an extra buffer), which bounds
//! memory per call (39.3 KiB at 8 kHz, 78.5 KiB at 16 kHz); a writer that got the extra bytes from
//! the process's write-buffer pool ([`super::budget`]) writes pieces of [`LARGE_CHUNK_BYTES`] (32 KiB
//! at 8 kHz, about a second; a ring of 63.3 KiB). Each piece ends at a multiple of its size in the
//! file (the 44-byte header included), so the kernel caches it in one large folio instead of page
//! by page. The file's bytes are the same either way. Frames nobody wrote are silence. The RIFF
//! sizes are patched at [`WavWriter::finish`], which then hashes the file.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::budget::Grant;
use crate::rtp::g711::Law;

/// The rate of a recording whose audio codecs are all narrowband (G.711, G.729).
pub const NARROWBAND_RATE: u32 = 8000;
/// The rate of a recording with a wideband codec (G.722, Opus).
pub const WIDEBAND_RATE: u32 = 16_000;
const FRAME_BYTES: usize = 4;
const HEADER_LEN: u64 = 44;
/// Bytes of a piece written at 8 kHz (twice at 16 kHz) with the minimal ring.
pub const CHUNK_BYTES: usize = 8 * 1024;
/// Bytes of a piece written at 8 kHz (twice at 16 kHz) with bytes from the pool.
pub const LARGE_CHUNK_BYTES: usize = 32 * 1024;

/// An open `audio.wav`. `repr(C)`: what placing samples uses first, the file behind.
#[derive(Debug)]
#[repr(C)]
pub struct WavWriter {
    /// Frames per second.
    rate: u32,
    /// Frames a sample may arrive late and still be placed (1 s).
    window: u64,
    /// Final frames are written to disk in pieces of this many (a power of two: 2048 frames at
    /// 8 kHz, 8192 with `grant`), each ending where the file's offset is a multiple of its size.
    flush: u64,
    /// The pool's bytes the ring holds beyond the minimal 1.25 s.
    _grant: Grant,
    /// Ring size: the window plus the final frames not yet written.
    ring_frames: usize,
    /// Frame `f` lives at bytes `(f % ring_frames) * 4 ..+ 4`: left then right, i16 LE.
    ring: Vec<u8>,
    /// Start of the window: samples for earlier frames are late (lost).
    base: u64,
    /// Frames written to disk (`written <= base`, `base - written < flush` between calls).
    written: u64,
    /// Samples that arrived after their frame had left the window.
    pub late_samples: u64,
    /// The frame after the last put, and its length: where the same stream's next packet goes.
    next: (u64, u64),
    path: PathBuf,
    file: File,
}

impl WavWriter {
    /// Creates the file at `rate` frames per second (8000 or 16000; others are taken as 8000).
    pub fn create(path: &Path, rate: u32) -> io::Result<Self> {
        let rate = if rate == WIDEBAND_RATE {
            WIDEBAND_RATE
        } else {
            NARROWBAND_RATE
        };
        let mut file = File::create(path)?;
        file.write_all(&header(0, rate))?;
        let scale = (rate / NARROWBAND_RATE) as usize;
        let (small, large) = (CHUNK_BYTES * scale, LARGE_CHUNK_BYTES * scale);
        let grant = Grant::take(large - small);
        let flush = (if grant.bytes() > 0 { large } else { small } / FRAME_BYTES) as u32;
        let ring_frames = (rate + flush) as usize;
        Ok(WavWriter {
            path: path.to_path_buf(),
            file,
            rate,
            window: u64::from(rate),
            flush: u64::from(flush),
            _grant: grant,
            ring_frames,
            ring: vec![0u8; ring_frames * FRAME_BYTES],
            base: 0,
            written: 0,
            late_samples: 0,
            next: (0, 0),
        })
    }

    /// Frames per second.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Puts samples of one channel (0 = left, 1 = right) starting at frame `pos`.
    pub fn put(&mut self, channel: usize, pos: u64, samples: &[i16]) -> io::Result<()> {
        self.place(channel, pos, samples, |s| s)
    }

    /// Decodes G.711 `payload` into one channel (0 = left, 1 = right) starting at frame `pos`.
    pub fn put_g711(
        &mut self,
        channel: usize,
        pos: u64,
        law: Law,
        payload: &[u8],
    ) -> io::Result<()> {
        let table = law.table();
        self.place(channel, pos, payload, |b| table[usize::from(b)])
    }

    /// Places `src[i]` (converted by `conv`) at frame `pos + i` of `channel`.
    #[inline]
    fn place<T: Copy>(
        &mut self,
        channel: usize,
        pos: u64,
        src: &[T],
        conv: impl Fn(T) -> i16,
    ) -> io::Result<()> {
        let len = src.len() as u64;
        let window = self.window;
        let ring_frames = self.ring_frames;
        let end = pos + len;
        self.next = (end, len);
        if end > self.base + window {
            self.base = end - window;
            if self.base - self.written >= self.flush {
                // Up to the last piece boundary: the ring then holds less than a piece of final
                // frames besides the window.
                self.write_until(self.piece_boundary(self.base))?;
            }
        }
        // Frames that left the window are lost for this channel.
        let skip = self.base.saturating_sub(pos).min(len);
        self.late_samples += skip;
        let mut src = src.get(skip as usize..).unwrap_or_default();
        let mut frame = pos + skip;
        while !src.is_empty() {
            let idx = (frame % ring_frames as u64) as usize;
            let n = src.len().min(ring_frames - idx);
            let (now, rest) = src.split_at(n);
            let dst = self
                .ring
                .get_mut(idx * FRAME_BYTES..(idx + n) * FRAME_BYTES)
                .unwrap_or_default();
            let frames = dst.chunks_exact_mut(FRAME_BYTES);
            // One loop per channel so the byte offsets are constants.
            if channel == 0 {
                for (f, &s) in frames.zip(now) {
                    let [lo, hi] = conv(s).to_le_bytes();
                    f[0] = lo;
                    f[1] = hi;
                }
            } else {
                for (f, &s) in frames.zip(now) {
                    let [lo, hi] = conv(s).to_le_bytes();
                    f[2] = lo;
                    f[3] = hi;
                }
            }
            src = rest;
            frame += n as u64;
        }
        Ok(())
    }

    /// Where in memory the same number of frames as the last put would go right after it (the
    /// ring's slots up to its end): address and bytes, for a prefetch hint.
    pub(super) fn next_slot(&self) -> (usize, usize) {
        let (frame, len) = self.next;
        let idx = (frame % self.ring_frames as u64) as usize * FRAME_BYTES;
        let bytes = (len as usize * FRAME_BYTES).min(self.ring.len().saturating_sub(idx));
        (self.ring.as_ptr() as usize + idx, bytes)
    }

    /// The last frame at or before `frame` where a piece ends: the file offset of the frame
    /// (header included) is a multiple of the piece size. At least `frame - flush + 1`.
    fn piece_boundary(&self, frame: u64) -> u64 {
        let header_frames = HEADER_LEN / FRAME_BYTES as u64;
        let f = self.flush;
        ((frame + header_frames) / f * f).saturating_sub(header_frames)
    }

    /// Writes frames `written..frame` from the ring to disk and clears their slots (slots of
    /// frames never placed are zero, so a jump past the ring writes silence).
    fn write_until(&mut self, frame: u64) -> io::Result<()> {
        while self.written < frame {
            let idx = (self.written % self.ring_frames as u64) as usize;
            let n = ((frame - self.written) as usize).min(self.ring_frames - idx);
            let bytes = self
                .ring
                .get_mut(idx * FRAME_BYTES..(idx + n) * FRAME_BYTES)
                .unwrap_or_default();
            self.file.write_all(bytes)?;
            bytes.fill(0);
            self.written += n as u64;
        }
        Ok(())
    }

    /// Writes exactly `total_frames` frames (padding with silence or dropping what lies beyond),
    /// patches the header, and returns the file's size and SHA-256. Not synced: the finisher makes
    /// a whole batch of recordings durable at once.
    pub fn finish(mut self, total_frames: u64) -> io::Result<(u64, [u8; 32])> {
        let keep = total_frames.max(self.base);
        let in_ring = keep.min(self.base + self.window);
        self.write_until(in_ring)?;
        // Anything beyond the window is silence.
        let zeros = [0u8; 4096];
        let mut rest = (keep - in_ring) * FRAME_BYTES as u64;
        while rest > 0 {
            let n = rest.min(zeros.len() as u64) as usize;
            self.file.write_all(&zeros[..n])?;
            rest -= n as u64;
        }
        let mut file = self.file;
        let data_len = keep * FRAME_BYTES as u64;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header(data_len, self.rate))?;
        file.flush()?;
        // The header changed after the data was written: hash the finished file.
        let (size, sha) = super::video::hash_file(&self.path)?;
        debug_assert_eq!(size, HEADER_LEN + data_len);
        Ok((size, sha))
    }
}

fn header(data_len: u64, rate: u32) -> [u8; 44] {
    let data_len = u32::try_from(data_len).unwrap_or(u32::MAX - 36);
    let mut h = [0u8; 44];
    let channels: u16 = 2;
    let bits: u16 = 16;
    let block = channels * bits / 8;
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36u32.saturating_add(data_len)).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * u32::from(block)).to_le_bytes());
    h[32..34].copy_from_slice(&block.to_le_bytes());
    h[34..36].copy_from_slice(&bits.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn places_samples_by_frame_and_pads_to_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.wav");
        let mut w = WavWriter::create(&p, NARROWBAND_RATE).expect("create");
        w.put(0, 10, &[1i16, 2, 3]).expect("put");
        w.put(1, 20_000, &[7i16; 160]).expect("put");
        // Late: frame 5 was flushed when frame 20_000 arrived.
        w.put(1, 5, &[9i16]).expect("put");
        assert_eq!(w.late_samples, 1);
        let (size, _) = w.finish(24_000).expect("finish");
        assert_eq!(size, 44 + 24_000 * 4);
        let bytes = std::fs::read(&p).expect("read");
        let frame = |i: usize| {
            let o = 44 + i * 4;
            (
                i16::from_le_bytes([bytes[o], bytes[o + 1]]),
                i16::from_le_bytes([bytes[o + 2], bytes[o + 3]]),
            )
        };
        assert_eq!(frame(10), (1, 0));
        assert_eq!(frame(12), (3, 0));
        assert_eq!(frame(5), (0, 0));
        assert_eq!(frame(20_000), (0, 7));
        assert_eq!(frame(23_999), (0, 0));
    }

    /// The writer's output equals a plain model of its rules (a sample lands unless its frame is
    /// more than the window behind the newest frame; the file is cut or padded to the length), over
    /// in-order, reordered, late, jumping and overlapping puts on both channels, at both rates;
    /// its writes end at multiples of the piece size.
    #[test]
    fn matches_model_across_ring_wraps_jumps_and_late_puts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rnd = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for case in 0..8u64 {
            let rate = if case < 6 {
                NARROWBAND_RATE
            } else {
                WIDEBAND_RATE
            };
            let window = u64::from(rate);
            let ring = window * 5 / 4;
            let p = dir.path().join(format!("{case}.wav"));
            let mut w = WavWriter::create(&p, rate).expect("create");
            assert_eq!(w.rate(), rate);
            let mut model: Vec<[i16; 2]> = Vec::new();
            let mut base = 0u64;
            let mut late = 0u64;
            let mut next = [0u64; 2];
            for _ in 0..3000 {
                let ch = rnd(2) as usize;
                let len = 1 + rnd(400);
                let pos = match rnd(20) {
                    0 => next[ch].saturating_sub(rnd(2 * window)),
                    1 => next[ch] + rnd(5 * ring),
                    _ => next[ch],
                };
                next[ch] = next[ch].max(pos + len);
                let samples: Vec<i16> = (0..len).map(|_| rnd(65_536) as u16 as i16).collect();
                if case % 2 == 0 {
                    w.put(ch, pos, &samples).expect("put");
                } else {
                    let codes: Vec<u8> = samples.iter().map(|&s| s as u8).collect();
                    w.put_g711(ch, pos, Law::Alaw, &codes).expect("put");
                }
                // Pieces end at multiples of their size in the file; less than a piece waits.
                let piece = w.flush * FRAME_BYTES as u64;
                assert!(w.written == 0 || (HEADER_LEN + w.written * 4).is_multiple_of(piece));
                assert!(w.base - w.written < w.flush);
                base = base.max((pos + len).saturating_sub(window));
                for (i, &s) in samples.iter().enumerate() {
                    let f = pos + i as u64;
                    if f < base {
                        late += 1;
                        continue;
                    }
                    if model.len() <= f as usize {
                        model.resize(f as usize + 1, [0, 0]);
                    }
                    model[f as usize][ch] = if case % 2 == 0 {
                        s
                    } else {
                        Law::Alaw.decode(s as u8)
                    };
                }
            }
            assert_eq!(w.late_samples, late);
            let newest = next[0].max(next[1]);
            let total = match case / 2 {
                0 | 3 => newest + 3 * window,
                1 => newest.saturating_sub(window / 2),
                _ => 0,
            };
            let keep = total.max(base);
            model.resize(keep as usize, [0, 0]);
            let mut want = header(keep * 4, rate).to_vec();
            for [l, r] in &model {
                want.extend_from_slice(&l.to_le_bytes());
                want.extend_from_slice(&r.to_le_bytes());
            }
            let (size, sha) = w.finish(total).expect("finish");
            let got = std::fs::read(&p).expect("read");
            assert_eq!(size, got.len() as u64);
            assert!(got == want, "case {case}: bytes differ from the model");
            assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(&got)));
        }
    }
}
