//! Writes a call's audio as a 16-bit PCM, 8 kHz, stereo WAV file (caller left, callee right).
//!
//! Samples are placed by frame index (8 kHz frames since the call's start) into a ring of
//! [`WINDOW_FRAMES`] frames; frames that fall out of the ring are written to disk, so memory per
//! call is bounded and late packets within the window still land in place. Frames nobody wrote are
//! silence. The RIFF sizes are patched at [`WavWriter::finish`], which then hashes the file.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub const SAMPLE_RATE: u32 = 8000;
/// Frames kept in memory for reordering (1 s: 32 KiB).
pub const WINDOW_FRAMES: usize = 8000;
const HEADER_LEN: u64 = 44;

/// An open `audio.wav`.
#[derive(Debug)]
pub struct WavWriter {
    path: PathBuf,
    out: BufWriter<File>,
    ring: Vec<[i16; 2]>,
    /// Frame index of the oldest frame still in the ring (= frames written to disk).
    base: u64,
    /// Samples that arrived after their frame had been written.
    pub late_samples: u64,
}

impl WavWriter {
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut out = BufWriter::with_capacity(32 * 1024, File::create(path)?);
        out.write_all(&header(0))?;
        Ok(WavWriter {
            path: path.to_path_buf(),
            out,
            ring: vec![[0, 0]; WINDOW_FRAMES],
            base: 0,
            late_samples: 0,
        })
    }

    /// Puts samples of one channel (0 = left, 1 = right) starting at frame `pos`.
    pub fn put(&mut self, channel: usize, pos: u64, samples: &[i16]) -> io::Result<()> {
        let ch = channel.min(1);
        let len = samples.len() as u64;
        let window = WINDOW_FRAMES as u64;
        let end = pos + len;
        if end > self.base + window {
            self.flush_until(end - window)?;
        }
        // Frames already on disk are lost for this channel.
        let skip = self.base.saturating_sub(pos).min(len);
        self.late_samples += skip;
        let mut i = skip;
        while i < len {
            let idx = ((pos + i) % window) as usize;
            let n = (len - i).min(window - idx as u64);
            let dst = self.ring.get_mut(idx..idx + n as usize).unwrap_or_default();
            let src = samples
                .get(i as usize..(i + n) as usize)
                .unwrap_or_default();
            for (frame, &s) in dst.iter_mut().zip(src) {
                frame[ch] = s;
            }
            i += n;
        }
        Ok(())
    }

    /// Writes frames up to (excluding) `frame` to disk, clearing their ring slots.
    fn flush_until(&mut self, frame: u64) -> io::Result<()> {
        const CHUNK: usize = 1024;
        let window = WINDOW_FRAMES as u64;
        let mut scratch = [0u8; CHUNK * 4];
        while self.base < frame {
            let idx = (self.base % window) as usize;
            let n = ((frame - self.base) as usize)
                .min(WINDOW_FRAMES - idx)
                .min(CHUNK);
            let frames = self.ring.get_mut(idx..idx + n).unwrap_or_default();
            for (fr, out) in frames.iter_mut().zip(scratch.chunks_exact_mut(4)) {
                let [l, r] = std::mem::take(fr);
                out[0..2].copy_from_slice(&l.to_le_bytes());
                out[2..4].copy_from_slice(&r.to_le_bytes());
            }
            self.out
                .write_all(scratch.get(..n * 4).unwrap_or_default())?;
            self.base += n as u64;
        }
        Ok(())
    }

    /// Writes exactly `total_frames` frames (padding with silence or dropping what lies beyond),
    /// patches the header, fsyncs, and returns the file's size and SHA-256.
    pub fn finish(mut self, total_frames: u64) -> io::Result<(u64, [u8; 32])> {
        let keep = total_frames.max(self.base);
        let in_ring = keep.min(self.base + WINDOW_FRAMES as u64);
        self.flush_until(in_ring)?;
        // Anything beyond the ring is silence.
        let zeros = [0u8; 4096];
        let mut rest = (keep - in_ring) * 4;
        while rest > 0 {
            let n = rest.min(zeros.len() as u64) as usize;
            self.out.write_all(&zeros[..n])?;
            rest -= n as u64;
        }
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        let data_len = keep * 4;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header(data_len))?;
        file.sync_all()?;
        // The header changed after the data was written: hash the finished file.
        let mut f = File::open(&self.path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(buf.get(..n).unwrap_or(&[]));
            size += n as u64;
        }
        debug_assert_eq!(size, HEADER_LEN + data_len);
        Ok((size, h.finalize().into()))
    }
}

fn header(data_len: u64) -> [u8; 44] {
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
    h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    h[28..32].copy_from_slice(&(SAMPLE_RATE * u32::from(block)).to_le_bytes());
    h[32..34].copy_from_slice(&block.to_le_bytes());
    h[34..36].copy_from_slice(&bits.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_samples_by_frame_and_pads_to_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.wav");
        let mut w = WavWriter::create(&p).expect("create");
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
}
