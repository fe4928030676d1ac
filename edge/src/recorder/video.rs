//! Video of a recording: each H.264 or VP8 RTP stream is depacketized ([`crate::rtp::h264`],
//! [`crate::rtp::vp8`]) and its frames written to a file a normal player opens:
//! - H.264: an Annex B elementary stream `video-<ssrc hex>.h264` (`video/h264`), hashed as written;
//! - VP8: an IVF file `video-<ssrc hex>.ivf` (`video/x-ivf`): 32-byte header (size from the first
//!   key frame, time base 1/90000), 12-byte frame headers whose timestamps are the RTP timestamps
//!   (extended) since the first frame; the frame count is patched at the end, so the file is
//!   hashed by reading it back.
//!
//! The file is created when the first frame is complete: a stream that never yields a decodable
//! frame has no file. Memory per stream is bounded by the depacketizers' frame bound.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tapfleet_schemas as schemas;

use super::pcap_writer::HashingWriter;
use crate::rtp::frame::{Frame, FrameStats};
use crate::rtp::h264::{self, H264Depacketizer};
use crate::rtp::vp8::{self, Vp8Depacketizer};

/// A video codec the recorder writes into a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    Vp8,
}

impl VideoCodec {
    /// From an SDP encoding name (`H264`, `VP8`, any case).
    pub fn from_encoding(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("H264") {
            Some(VideoCodec::H264)
        } else if name.eq_ignore_ascii_case("VP8") {
            Some(VideoCodec::Vp8)
        } else {
            None
        }
    }

    /// Content detection for a payload type no SDP describes: a VP8 key frame start, or an H.264
    /// sequence parameter set (see [`vp8::sniff`], [`h264::sniff`]).
    pub fn sniff(payload: &[u8]) -> Option<Self> {
        if vp8::sniff(payload) {
            Some(VideoCodec::Vp8)
        } else if h264::sniff(payload) {
            Some(VideoCodec::H264)
        } else {
            None
        }
    }

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "H264",
            VideoCodec::Vp8 => "VP8",
        }
    }

    /// The file a stream of this codec is written to; `n` > 0 for the n-th other stream of the
    /// recording with the same SSRC.
    pub fn file_name(self, ssrc: u32, n: usize) -> String {
        let ext = match self {
            VideoCodec::H264 => "h264",
            VideoCodec::Vp8 => "ivf",
        };
        match n {
            0 => format!("video-{ssrc:08x}.{ext}"),
            n => format!("video-{ssrc:08x}-{n}.{ext}"),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            VideoCodec::H264 => "video/h264",
            VideoCodec::Vp8 => "video/x-ivf",
        }
    }
}

#[derive(Debug)]
enum Depacketizer {
    H264(H264Depacketizer),
    Vp8(Vp8Depacketizer),
}

#[derive(Debug)]
enum Output {
    AnnexB(HashingWriter<BufWriter<File>>),
    Ivf(BufWriter<File>),
}

const IVF_HEADER_LEN: usize = 32;

/// One video stream being written.
#[derive(Debug)]
pub struct VideoTrack {
    codec: VideoCodec,
    path: PathBuf,
    name: String,
    depack: Depacketizer,
    out: Option<Output>,
    /// Scratch for the frames one packet completes.
    ready: Vec<Frame>,
    written: u64,
    /// Last frame's RTP timestamp and its extended value; the first frame's extended value.
    ts: Option<(u32, i64)>,
    first_ts: i64,
}

/// A finished video file and what its depacketizer counted.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoOutcome {
    /// The file, when at least one frame was written.
    pub file: Option<schemas::FileEntry>,
    pub stats: FrameStats,
}

impl VideoTrack {
    /// A track for stream `ssrc` written into `dir` (nothing is created yet), named by
    /// [`VideoCodec::file_name`]. `fmtp` is the payload type's SDP `a=fmtp` parameters (H.264
    /// `sprop-parameter-sets`).
    pub fn new(codec: VideoCodec, dir: &Path, ssrc: u32, n: usize, fmtp: Option<&str>) -> Self {
        let name = codec.file_name(ssrc, n);
        let depack = match codec {
            VideoCodec::H264 => Depacketizer::H264(H264Depacketizer::new(
                fmtp.map(h264::parse_sprop).unwrap_or_default(),
            )),
            VideoCodec::Vp8 => Depacketizer::Vp8(Vp8Depacketizer::new()),
        };
        VideoTrack {
            codec,
            path: dir.join(&name),
            name,
            depack,
            out: None,
            ready: Vec::new(),
            written: 0,
            ts: None,
            first_ts: 0,
        }
    }

    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// Frames written to the file so far.
    pub fn frames_written(&self) -> u64 {
        self.written
    }

    /// Feeds one RTP packet; writes the frames it completes. Fails only on IO.
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> io::Result<()> {
        let mut ready = std::mem::take(&mut self.ready);
        match &mut self.depack {
            Depacketizer::H264(d) => d.push(seq, timestamp, marker, payload, &mut ready),
            Depacketizer::Vp8(d) => d.push(seq, timestamp, marker, payload, &mut ready),
        }
        let mut res = Ok(());
        for f in ready.drain(..) {
            res = self.write_frame(&f);
            if res.is_err() {
                break;
            }
        }
        ready.clear();
        self.ready = ready;
        res
    }

    fn write_frame(&mut self, f: &Frame) -> io::Result<()> {
        let ext = match self.ts {
            Some((last, ext)) => ext + i64::from(f.timestamp.wrapping_sub(last) as i32),
            None => {
                self.first_ts = i64::from(f.timestamp);
                i64::from(f.timestamp)
            }
        };
        self.ts = Some((f.timestamp, ext));
        if self.out.is_none() {
            let file = BufWriter::with_capacity(64 * 1024, File::create(&self.path)?);
            self.out = Some(match self.codec {
                VideoCodec::H264 => Output::AnnexB(HashingWriter::new(file)),
                VideoCodec::Vp8 => {
                    let mut file = file;
                    file.write_all(&ivf_header(f.size.unwrap_or((0, 0)), 0))?;
                    Output::Ivf(file)
                }
            });
        }
        match self.out.as_mut() {
            Some(Output::AnnexB(w)) => w.write_all(&f.data)?,
            Some(Output::Ivf(w)) => {
                let pts = (ext - self.first_ts).max(0) as u64;
                let len = u32::try_from(f.data.len()).unwrap_or(u32::MAX);
                w.write_all(&len.to_le_bytes())?;
                w.write_all(&pts.to_le_bytes())?;
                w.write_all(&f.data)?;
            }
            None => {}
        }
        self.written += 1;
        Ok(())
    }

    /// Ends the stream (an unfinished frame is dropped), writes the file out and returns its
    /// entry. Not synced: the finisher makes a whole batch of recordings durable at once.
    pub fn finish(mut self) -> io::Result<VideoOutcome> {
        let stats = match &mut self.depack {
            Depacketizer::H264(d) => {
                d.flush();
                d.stats().clone()
            }
            Depacketizer::Vp8(d) => {
                d.flush();
                d.stats().clone()
            }
        };
        let (size, sha) = match self.out.take() {
            None => return Ok(VideoOutcome { file: None, stats }),
            Some(Output::AnnexB(w)) => {
                let size = w.written();
                let (buf, sha) = w.finish();
                drop(buf.into_inner().map_err(|e| e.into_error())?);
                (size, sha)
            }
            Some(Output::Ivf(w)) => {
                let mut file = w.into_inner().map_err(|e| e.into_error())?;
                file.seek(SeekFrom::Start(24))?;
                file.write_all(
                    &u32::try_from(self.written)
                        .unwrap_or(u32::MAX)
                        .to_le_bytes(),
                )?;
                file.flush()?;
                drop(file);
                hash_file(&self.path)?
            }
        };
        Ok(VideoOutcome {
            file: Some(schemas::FileEntry {
                name: self.name,
                size,
                sha256: schemas::Sha256(sha),
                content_type: self.codec.content_type().into(),
            }),
            stats,
        })
    }
}

/// The IVF file header for VP8 at a 1/90000 time base.
fn ivf_header((w, h): (u16, u16), frames: u32) -> [u8; IVF_HEADER_LEN] {
    let mut b = [0u8; IVF_HEADER_LEN];
    b[0..4].copy_from_slice(b"DKIF");
    b[4..6].copy_from_slice(&0u16.to_le_bytes());
    b[6..8].copy_from_slice(&(IVF_HEADER_LEN as u16).to_le_bytes());
    b[8..12].copy_from_slice(b"VP80");
    b[12..14].copy_from_slice(&w.to_le_bytes());
    b[14..16].copy_from_slice(&h.to_le_bytes());
    b[16..20].copy_from_slice(&90_000u32.to_le_bytes());
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[24..28].copy_from_slice(&frames.to_le_bytes());
    b
}

/// Size and SHA-256 of a finished file, read back (for files patched after their data was
/// written: `audio.wav`'s header, an IVF's frame count).
pub(crate) fn hash_file(path: &Path) -> io::Result<(u64, [u8; 32])> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
        size += n as u64;
    }
    Ok((size, h.finalize().into()))
}

/// A manifest `incomplete` line for a video stream whose frames were not all written, if any.
pub fn incomplete_note(name: &str, s: &FrameStats) -> Option<String> {
    if s.not_emitted() == 0 {
        return None;
    }
    Some(format!(
        "{name}: {} of {} frames not written ({} missing packets, {} oversize, {} malformed, \
         {} waiting for a key frame)",
        s.not_emitted(),
        s.not_emitted() + s.frames,
        s.dropped_loss,
        s.dropped_oversize,
        s.dropped_malformed,
        s.skipped
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ivf_file_has_header_frames_and_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = VideoTrack::new(VideoCodec::Vp8, dir.path(), 0xab, 0, None);
        let mut key = vec![0x10, 0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a];
        key.extend_from_slice(&640u16.to_le_bytes());
        key.extend_from_slice(&480u16.to_le_bytes());
        t.push(1, u32::MAX - 100, true, &key).expect("write");
        t.push(2, 2900, true, &[0x10, 0x31, 0, 0]).expect("write");
        let o = t.finish().expect("finish");
        let f = o.file.expect("a file");
        assert_eq!(f.name, "video-000000ab.ivf");
        let bytes = std::fs::read(dir.path().join(&f.name)).expect("read");
        assert_eq!(f.size, bytes.len() as u64);
        assert_eq!(f.sha256.0, <[u8; 32]>::from(Sha256::digest(&bytes)));
        assert_eq!(&bytes[..4], b"DKIF");
        assert_eq!(&bytes[12..16], &[0x80, 0x02, 0xe0, 0x01]);
        assert_eq!(
            u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]),
            2
        );
        // Second frame header: 3 bytes, timestamp 3001 (the RTP timestamp wrapped).
        let second = IVF_HEADER_LEN + 12 + 10;
        assert_eq!(&bytes[second..second + 4], &3u32.to_le_bytes());
        assert_eq!(&bytes[second + 4..second + 12], &3001u64.to_le_bytes());
        assert_eq!(o.stats.frames, 2);
    }

    #[test]
    fn no_frame_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = VideoTrack::new(VideoCodec::H264, dir.path(), 1, 0, None);
        t.push(1, 0, true, &[0x41, 0x9a]).expect("push");
        let o = t.finish().expect("finish");
        assert!(o.file.is_none());
        assert_eq!(o.stats.skipped, 1);
        assert!(std::fs::read_dir(dir.path()).expect("dir").next().is_none());
        assert!(incomplete_note("v", &o.stats).is_some_and(|n| n.contains("1 of 1")));
    }
}
