//! One call being recorded: its folder, `call.pcap` and `audio.wav` writers, its RTP streams
//! (statistics, audio decoding into the WAV, RFC 4733 digits, RTCP reports about each SSRC), and
//! at the end the manifest.
//!
//! Audio: G.711, G.722, G.729A/B and Opus are decoded into `audio.wav`, placed by RTP timestamp.
//! The WAV's rate is fixed when its first decodable packet arrives: 16 kHz when that packet's
//! codec is wideband (G.722, Opus) or both sides' SDP list a wideband codec, else 8 kHz (a G.711
//! call's file is then exactly what it always was). A payload type without an rtpmap is taken as
//! Opus once two consecutive packets' TOC durations match their RTP timestamp steps at 48 kHz
//! (orphan WebRTC-style streams); the first of them is not decoded. Other codecs stay in
//! `call.pcap` only and their stream says why in `not_decoded`.
//!
//! Video: H.264 and VP8 streams (by rtpmap, or for a payload type without one by content: an SPS
//! or a VP8 key frame within its first packets) are written to `video-<ssrc>.h264` / `.ivf`
//! ([`super::video`]); such a stream is `decoded` once a frame is in its file.

use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tapfleet_schemas as schemas;

use super::pcap_writer::PcapWriter;
use super::prefetch::{Hint, slot};
use super::video::{self, VideoCodec, VideoTrack};
use super::wav_writer::{NARROWBAND_RATE, WIDEBAND_RATE, WavWriter};
use crate::calls::{CallEnd, Dialog, MediaDirection, MediaRoute, Party};
use crate::capture::RawPacket;
use crate::rtp::codec::{AudioDecoder, Codec, DecodeError};
pub use crate::rtp::emodel::emodel_mos;
use crate::rtp::rtcp::{RtcpItem, RtcpSummary};
use crate::rtp::{self, StreamStats};

pub const PCAP_NAME: &str = "call.pcap";
pub const WAV_NAME: &str = "audio.wav";
pub const MANIFEST_NAME: &str = "manifest.json";
/// Streams tracked per call; more are written to the pcap but not analysed.
const MAX_STREAMS: usize = 64;
const MAX_DTMF: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PtKind {
    Audio(Codec),
    TelephoneEvent,
    /// RFC 3389 comfort noise (`CN`, static payload type 13): silence in the WAV, and not the
    /// stream's codec.
    ComfortNoise,
    /// No rtpmap: may turn out to be Opus (see the module doc).
    Unmapped,
    Video(VideoCodec),
    Other,
}

/// Packets of a payload type without rtpmap inspected for H.264 / VP8 content.
const VIDEO_PROBES: u32 = 3000;
const VIDEO_CLOCK: u32 = 90_000;

/// One RTP stream of a call. `repr(C)` keeps the fields every packet reads or writes together at
/// the front (the scan's key, the payload type cache, timestamps, statistics, the prefetch hint:
/// ~5 cache lines) and
/// the cold rest (names, notes, probes, the boxed video writer) behind them, so a packet touches
/// few cache lines of a record that is not in cache.
#[derive(Debug)]
#[repr(C)]
struct Stream {
    // Hot: every packet.
    ssrc: u32,
    direction: MediaDirection,
    decoded: bool,
    /// SRTP: by its SDP or its payload sizes ([`looks_like_srtp`]); nothing of it is decoded.
    srtp: bool,
    /// Last payload type seen and what it is (saves an SDP lookup per packet).
    pt_cache: Option<(u8, PtKind, u32)>,
    src: SocketAddr,
    dst: SocketAddr,
    /// Last RTP timestamp of an audio packet and its extended value.
    ext_ts: Option<(u32, i64)>,
    /// Extended RTP timestamp and WAV frame that correspond.
    anchor: Option<(i64, i64)>,
    stats: StreamStats,
    /// Where the records of the RTP packet that followed this stream's last one are
    /// ([`super::prefetch`]).
    next: Hint,
    /// The stream's decoder (made on its first decodable packet, again if the codec changes).
    decoder: Option<AudioDecoder>,
    // Cold: new streams, payload type changes, probes, the manifest.
    media: String,
    payload_type: Option<u8>,
    /// The telephone-event payload type, for a stream that carries nothing else.
    event_pt: Option<u8>,
    codec: String,
    clock_rate: u32,
    dtmf_ts: Option<u32>,
    /// Payloads the codec rejected, and the first error.
    decode_errors: u64,
    first_decode_error: Option<DecodeError>,
    /// Last unmapped packet's (sequence, timestamp, Opus samples at 48 kHz, arrival).
    opus_probe: Option<(u16, u32, u32, i64)>,
    /// The stream's video file writer, once a video packet arrived (boxed: large, and rare).
    video: Option<Box<VideoTrack>>,
    /// Earlier streams of the call with the same SSRC (its video file name differs).
    same_ssrc: usize,
    video_probes: u32,
    /// Why a video stream has no file.
    video_note: Option<String>,
}

#[derive(Debug)]
struct Dtmf {
    digit: char,
    start_ns: i64,
    duration: u32,
    clock: u32,
    direction: MediaDirection,
}

// The per-packet part of a stream stays within its first 256 bytes plus its prefetch hint, and
// the whole record small (it was 880 bytes with the video writer inline): see [`Stream`].
const _: () = assert!(std::mem::offset_of!(Stream, decoder) <= 256 + std::mem::size_of::<Hint>());
const _: () = assert!(std::mem::size_of::<Stream>() <= 512);

/// A call being recorded. `repr(C)`: the fields every packet of the call uses come first (and
/// the writers' own hot fields first in them), the rest behind.
#[derive(Debug)]
#[repr(C)]
pub struct CallRecording {
    // Hot: every packet.
    start_ns: i64,
    audio: bool,
    /// At most [`MAX_STREAMS`], found by a linear scan (a call usually has 2-4).
    streams: Vec<Stream>,
    /// The stream of the last RTP packet ([`Self::on_rtp`]), and of each direction's.
    last_stream: usize,
    last_by_dir: [usize; 2],
    linktype_mismatch: u64,
    // The WAV writer whole, then the pcap writer's per-packet fields: one prefetch span.
    wav: Option<WavWriter>,
    pcap: Option<PcapWriter>,
    // Cold.
    pub id: String,
    pub dir: PathBuf,
    pub part: u32,
    dtmf: Vec<Dtmf>,
    untracked_streams: u64,
    kind: schemas::RecordingKind,
    /// Packets the kernel dropped while this recording was active (see [`Self::note_drops`]).
    capture_drops: u64,
    /// The recording id of the part before this one (a call cut at its maximum duration).
    previous_part: Option<String>,
    /// The pcap format of the first packet, for the next part's `call.pcap`.
    format: PartFormat,
    /// RTCP about each SSRC the call's RTCP named (at most [`MAX_STREAMS`]).
    rtcp: Vec<(u32, RtcpSummary)>,
    /// Recording ids of the call's other B2BUA legs ([`crate::calls::legs`]).
    linked: Vec<String>,
}

/// What a next part's `call.pcap` needs of the call's first packet: its file header (classic
/// pcap input), link type and timestamp precision.
#[derive(Debug, Clone, Copy)]
pub struct PartFormat {
    file_header: Option<[u8; 24]>,
    linktype: u16,
    ts_precision: crate::capture::TsPrecision,
}

impl PartFormat {
    fn of(p: &RawPacket<'_>) -> Self {
        PartFormat {
            file_header: p.classic.map(|c| *c.file_header),
            linktype: p.linktype,
            ts_precision: p.ts_precision,
        }
    }
}

impl CallRecording {
    /// Creates the call's folder and `call.pcap`, starting with its first packet's format.
    pub fn create(
        id: String,
        dir: PathBuf,
        start_ns: i64,
        first: &RawPacket<'_>,
        audio: bool,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let pcap = PcapWriter::create(&dir.join(PCAP_NAME), first)?;
        let format = PartFormat::of(first);
        Ok(CallRecording {
            id,
            dir,
            part: 1,
            start_ns,
            pcap: Some(pcap),
            wav: None,
            streams: Vec::new(),
            last_stream: 0,
            last_by_dir: [0; 2],
            dtmf: Vec::new(),
            linktype_mismatch: 0,
            untracked_streams: 0,
            audio,
            kind: schemas::RecordingKind::Call,
            capture_drops: 0,
            previous_part: None,
            format,
            rtcp: Vec::new(),
            linked: Vec::new(),
        })
    }

    /// The next part of this call (cut at its maximum duration): a new folder `dir` and
    /// `call.pcap` in the same format, starting at `start_ns`, chained to this part.
    pub fn next_part(&self, id: String, dir: PathBuf, start_ns: i64) -> io::Result<Self> {
        let header = [0u8; 16];
        let classic = self
            .format
            .file_header
            .as_ref()
            .map(|h| crate::capture::ClassicRecord {
                file_header: h,
                record_header: &header,
            });
        let first = RawPacket {
            ts_ns: start_ns,
            orig_len: 0,
            linktype: self.format.linktype,
            ts_precision: self.format.ts_precision,
            data: &[],
            classic,
        };
        let mut next = CallRecording::create(id, dir, start_ns, &first, self.audio)?;
        next.part = self.part.saturating_add(1);
        next.kind = self.kind;
        next.previous_part = Some(self.id.clone());
        Ok(next)
    }

    /// When this recording (part) started.
    pub fn start_ns(&self) -> i64 {
        self.start_ns
    }

    /// Notes that the kernel dropped `n` captured packets while this recording was active: it
    /// may miss some of them, and its manifest says so.
    pub fn note_drops(&mut self, n: u64) {
        self.capture_drops = self.capture_drops.saturating_add(n);
    }

    /// Notes another leg of this call (a B2BUA's other dialog), by its recording id.
    pub fn link(&mut self, recording_id: String) {
        if !self.linked.contains(&recording_id) {
            self.linked.push(recording_id);
        }
    }

    /// Marks this recording as an orphan stream (no SIP) in its manifest.
    pub fn set_orphan(&mut self) {
        self.kind = schemas::RecordingKind::OrphanStream;
    }

    /// Writes a packet into `call.pcap`. Returns whether it was written.
    pub fn write_packet(&mut self, pkt: &RawPacket<'_>) -> io::Result<bool> {
        let Some(p) = self.pcap.as_mut() else {
            return Ok(false);
        };
        let ok = p.write(pkt)?;
        if !ok {
            self.linktype_mismatch += 1;
        }
        Ok(ok)
    }

    /// Accounts an RTP packet of the call (already written to the pcap).
    #[allow(clippy::too_many_arguments)]
    pub fn on_rtp(
        &mut self,
        dialog: &Dialog,
        route: MediaRoute,
        src: SocketAddr,
        dst: SocketAddr,
        pkt: &rtp::RtpPacket<'_>,
        arrival_ns: i64,
    ) -> io::Result<()> {
        // Streams are unique by (SSRC, source, destination): the direction's last stream is
        // tried first (the only one a prefetch hint brought into the cache), then all.
        let matches = |s: &Stream| s.ssrc == pkt.ssrc && s.src == src && s.dst == dst;
        let dir = usize::from(route.direction == MediaDirection::CalleeToCaller);
        let guess = self.last_by_dir.get(dir).copied().unwrap_or(0);
        let found = if self.streams.get(guess).is_some_and(matches) {
            Some(guess)
        } else {
            self.streams.iter().position(matches)
        };
        let idx = match found {
            Some(i) => i,
            None => {
                if self.streams.len() >= MAX_STREAMS {
                    self.untracked_streams += 1;
                    return Ok(());
                }
                let media = dialog
                    .media_kind(route.media_index)
                    .unwrap_or("audio")
                    .to_string();
                let same_ssrc = self.streams.iter().filter(|o| o.ssrc == pkt.ssrc).count();
                self.streams.push(Stream {
                    src,
                    dst,
                    ssrc: pkt.ssrc,
                    direction: route.direction,
                    media,
                    payload_type: None,
                    event_pt: None,
                    codec: String::new(),
                    clock_rate: 8000,
                    stats: StreamStats::new(8000),
                    decoded: false,
                    pt_cache: None,
                    ext_ts: None,
                    anchor: None,
                    dtmf_ts: None,
                    decoder: None,
                    decode_errors: 0,
                    first_decode_error: None,
                    opus_probe: None,
                    video: None,
                    same_ssrc,
                    video_probes: 0,
                    video_note: None,
                    srtp: route.srtp,
                    next: Hint::default(),
                });
                self.streams.len() - 1
            }
        };
        let Some(s) = self.streams.get_mut(idx) else {
            return Ok(());
        };
        // What the packet after this stream's last one touched is likely needed next.
        s.next.issue();
        self.last_stream = idx;
        if let Some(d) = self.last_by_dir.get_mut(dir) {
            *d = idx;
        }
        let (mut kind, mut clock) = match s.pt_cache {
            Some((pt, kind, clock)) if pt == pkt.payload_type => (kind, clock),
            _ => {
                let map = dialog.rtpmap(route.direction, route.media_index, pkt.payload_type);
                let (kind, clock) = match &map {
                    Some(m) => {
                        let kind = if let Some(codec) = Codec::from_encoding(&m.encoding) {
                            PtKind::Audio(codec)
                        } else if m.encoding.eq_ignore_ascii_case("telephone-event") {
                            PtKind::TelephoneEvent
                        } else if m.encoding.eq_ignore_ascii_case("CN") {
                            PtKind::ComfortNoise
                        } else if let Some(v) = VideoCodec::from_encoding(&m.encoding) {
                            PtKind::Video(v)
                        } else {
                            PtKind::Other
                        };
                        (kind, m.clock_rate.max(1))
                    }
                    None => (PtKind::Unmapped, 8000),
                };
                let not_codec = matches!(kind, PtKind::TelephoneEvent | PtKind::ComfortNoise);
                if s.payload_type.is_none() && !not_codec {
                    s.payload_type = Some(pkt.payload_type);
                    s.codec = map.map(|m| m.encoding).unwrap_or_default();
                    s.clock_rate = clock;
                    if s.stats.packets == 0 {
                        s.stats = StreamStats::new(clock);
                    }
                }
                if s.payload_type.is_none() && kind == PtKind::TelephoneEvent {
                    s.event_pt = Some(pkt.payload_type);
                    s.codec = "telephone-event".into();
                }
                if s.payload_type.is_none() && kind == PtKind::ComfortNoise && s.codec.is_empty() {
                    s.codec = "CN".into();
                }
                s.pt_cache = Some((pkt.payload_type, kind, clock));
                (kind, clock)
            }
        };
        s.stats
            .update(pkt.seq, pkt.timestamp, arrival_ns, pkt.payload.len());
        if kind == PtKind::Unmapped && s.video_probes < VIDEO_PROBES {
            s.video_probes += 1;
            if let Some(v) = VideoCodec::sniff(pkt.payload) {
                (kind, clock) = (PtKind::Video(v), VIDEO_CLOCK);
                s.pt_cache = Some((pkt.payload_type, kind, clock));
                s.media = "video".into();
                if s.payload_type == Some(pkt.payload_type) {
                    s.codec = v.name().into();
                    s.clock_rate = VIDEO_CLOCK;
                    s.stats.set_clock_rate(VIDEO_CLOCK);
                }
            }
        }
        if kind == PtKind::Unmapped && s.media == "audio" && probe_opus(s, pkt, arrival_ns) {
            (kind, clock) = (PtKind::Audio(Codec::Opus), OPUS_CLOCK);
            s.pt_cache = Some((pkt.payload_type, kind, clock));
            if s.payload_type == Some(pkt.payload_type) {
                s.codec = "opus".into();
                s.clock_rate = OPUS_CLOCK;
                s.stats.set_clock_rate(OPUS_CLOCK);
            }
        }
        s.srtp |= route.srtp;
        if let PtKind::Audio(Codec::G711(_) | Codec::G722) = kind
            && !s.srtp
            && !s.decoded
        {
            s.srtp = looks_like_srtp(pkt.payload.len());
        }
        match kind {
            _ if s.srtp => {}
            PtKind::Audio(codec) if self.audio => {
                // Extended RTP timestamp.
                let ext = match s.ext_ts {
                    Some((last, ext)) => ext + i64::from(pkt.timestamp.wrapping_sub(last) as i32),
                    None => i64::from(pkt.timestamp),
                };
                s.ext_ts = Some((pkt.timestamp, ext));
                let rate = match &self.wav {
                    Some(w) => w.rate(),
                    None if codec.is_wideband() || negotiated_wideband(dialog) => WIDEBAND_RATE,
                    None => NARROWBAND_RATE,
                };
                // RTP clock ticks to WAV frames.
                let frames = |ticks: i64| {
                    if clock == rate {
                        ticks
                    } else {
                        (i128::from(ticks) * i128::from(rate)).div_euclid(i128::from(clock.max(1)))
                            as i64
                    }
                };
                // In i64 unless it would overflow (a 128-bit division is a library call).
                let since = arrival_ns - self.start_ns;
                let arrival_frame = match since.checked_mul(i64::from(rate)) {
                    Some(x) => x / 1_000_000_000,
                    None => ((i128::from(since) * i128::from(rate)) / 1_000_000_000) as i64,
                };
                let (a_ts, a_frame) = match s.anchor {
                    Some((t, f))
                        if ((f + frames(ext - t)) - arrival_frame).abs() <= i64::from(rate) =>
                    {
                        (t, f)
                    }
                    // First packet, or the timestamps jumped more than 1 s from arrival: re-anchor.
                    _ => {
                        s.anchor = Some((ext, arrival_frame));
                        (ext, arrival_frame)
                    }
                };
                let pos = a_frame + frames(ext - a_ts);
                if pos >= 0 {
                    let channel = match s.direction {
                        MediaDirection::CallerToCallee => 0,
                        MediaDirection::CalleeToCaller => 1,
                    };
                    if self.wav.is_none() {
                        self.wav = Some(WavWriter::create(&self.dir.join(WAV_NAME), rate)?);
                    }
                    if let Some(w) = self.wav.as_mut() {
                        put_audio(s, w, codec, channel, pos as u64, pkt.payload)?;
                    }
                }
            }
            PtKind::Video(codec) => {
                if s.video.is_none() {
                    let fmtp = dialog.fmtp(route.direction, route.media_index, pkt.payload_type);
                    s.video = Some(Box::new(VideoTrack::new(
                        codec,
                        &self.dir,
                        s.ssrc,
                        s.same_ssrc,
                        fmtp,
                    )));
                }
                // A stream switching to another video codec keeps its first one's file.
                if let Some(v) = s.video.as_mut().filter(|v| v.codec() == codec) {
                    v.push(pkt.seq, pkt.timestamp, pkt.marker, pkt.payload)?;
                    s.decoded = v.frames_written() > 0;
                }
            }
            PtKind::TelephoneEvent => {
                if let Some(ev) = rtp::parse_telephone_event(pkt.payload)
                    && let Some(digit) = rtp::dtmf_digit(ev.event)
                {
                    if s.dtmf_ts != Some(pkt.timestamp) {
                        s.dtmf_ts = Some(pkt.timestamp);
                        if self.dtmf.len() < MAX_DTMF {
                            self.dtmf.push(Dtmf {
                                digit,
                                start_ns: arrival_ns,
                                duration: u32::from(ev.duration),
                                clock,
                                direction: s.direction,
                            });
                        }
                    } else if let Some(d) = self.dtmf.last_mut() {
                        d.duration = d.duration.max(u32::from(ev.duration));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Adds to `h` where the next packet of the last RTP packet's stream goes: this call's hot
    /// fields, the stream, the pcap buffer's tail and the stream's next WAV slots.
    pub(super) fn hint_last(&self, h: &mut Hint) {
        use std::mem::offset_of;
        // The map's key is just before the call; its per-packet fields end with the pcap
        // writer's.
        let key = std::mem::size_of::<crate::calls::CallKey>();
        let at = self as *const Self as usize;
        h.set(
            slot::CALL,
            at.saturating_sub(key),
            key + offset_of!(CallRecording, pcap) + PcapWriter::HOT_BYTES,
        );
        if let Some(s) = self.streams.get(self.last_stream) {
            h.set(
                slot::STREAM,
                s as *const Stream as usize,
                offset_of!(Stream, decoder),
            );
        }
        if let Some(p) = &self.pcap {
            // The record header and the payload's start (the copy streams the rest).
            h.set(slot::PCAP, p.tail(), 128);
        }
        if let Some(w) = &self.wav {
            // The first slots (the stores stream on).
            let (at, bytes) = w.next_slot();
            h.set(slot::WAV, at, bytes.min(128));
        }
    }

    /// The stream of the last RTP packet.
    pub(super) fn last_stream(&self) -> usize {
        self.last_stream
    }

    /// Notes where the records of the RTP packet that followed stream `stream`'s last one are.
    pub(super) fn set_next_hint(&mut self, stream: usize, h: Hint) {
        if let Some(s) = self.streams.get_mut(stream) {
            s.next = h;
        }
    }

    /// Accounts an RTCP packet of the call (already written to the pcap): its SRs, report blocks
    /// and XR VoIP metrics, by the SSRC they are about; attached to the streams in the manifest.
    pub fn on_rtcp(&mut self, payload: &[u8]) {
        let rtcp = &mut self.rtcp;
        rtp::rtcp::walk(payload, |item| {
            let ssrc = match item {
                RtcpItem::SenderReport { ssrc, .. } => ssrc,
                RtcpItem::Block { block, .. } => block.ssrc,
                RtcpItem::Voip(v) => v.ssrc,
                _ => return,
            };
            let i = match rtcp.iter().position(|(s, _)| *s == ssrc) {
                Some(i) => i,
                None if rtcp.len() < MAX_STREAMS => {
                    rtcp.push((ssrc, RtcpSummary::default()));
                    rtcp.len() - 1
                }
                None => return,
            };
            if let Some((_, sum)) = rtcp.get_mut(i) {
                sum.apply(ssrc, &item);
            }
        });
    }

    /// Closes the files and writes the manifest to its temporary name (nothing synced), returning
    /// the manifest. The finisher makes a batch durable, then [`publish_manifest`] puts it in place.
    pub fn finish(
        mut self,
        dialog: &Dialog,
        edge_id: Option<&str>,
    ) -> io::Result<schemas::Manifest> {
        let mut m = schemas::Manifest::new(self.id.clone(), self.kind);
        m.edge_id = edge_id.map(str::to_string);
        m.call_id = dialog.call_id.clone();
        m.part = self.part;
        m.previous_part = self.previous_part.clone();
        m.linked = std::mem::take(&mut self.linked);
        m.caller = party(&dialog.caller);
        m.callee = party(&dialog.callee);
        m.direction = dialog.direction;
        // A later part starts where the one before it was cut.
        m.start_ns = if self.part > 1 {
            self.start_ns
        } else {
            dialog.start_ns
        };
        m.answer_ns = dialog.answer_ns;
        m.end_ns = dialog.last_ns.max(m.start_ns);
        m.sip_status = dialog.sip_status;
        m.end_reason = match dialog.end_reason {
            Some(CallEnd::Bye) => schemas::EndReason::Bye,
            Some(CallEnd::Cancel) => schemas::EndReason::Cancel,
            Some(CallEnd::Rejected) => schemas::EndReason::Rejected,
            Some(CallEnd::Timeout) => schemas::EndReason::RtpTimeout,
            Some(CallEnd::CaptureEnd) | None => schemas::EndReason::CaptureEnd,
            Some(CallEnd::MaxDuration) => schemas::EndReason::MaxDuration,
        };
        match dialog.end_reason {
            Some(CallEnd::CaptureEnd) | None => m
                .incomplete
                .push("capture ended while the call was active".into()),
            Some(CallEnd::Timeout) => m
                .incomplete
                .push("no packet of the call for the timeout; no BYE seen".into()),
            _ => {}
        }
        if self.capture_drops > 0 {
            m.incomplete.push(format!(
                "the kernel dropped {} captured packets while this recording was active \
                 (capture buffer full or interface drops): some may be missing",
                self.capture_drops
            ));
        }
        if self.linktype_mismatch > 0 {
            m.incomplete.push(format!(
                "{} packets of another link type not written to call.pcap",
                self.linktype_mismatch
            ));
        }
        if self.untracked_streams > 0 {
            m.incomplete.push(format!(
                "more than {MAX_STREAMS} RTP streams: {} not analysed",
                self.untracked_streams
            ));
        }
        if let Some(p) = self.pcap.take() {
            m.packets = p.packets();
            let (size, sha) = p.finish()?;
            m.files.push(schemas::FileEntry {
                name: PCAP_NAME.into(),
                size,
                sha256: schemas::Sha256(sha),
                content_type: "application/vnd.tcpdump.pcap".into(),
            });
        }
        if let Some(w) = self.wav.take() {
            let late = w.late_samples;
            let frames = (i128::from(m.end_ns - m.start_ns) * i128::from(w.rate()) / 1_000_000_000)
                .max(0) as u64;
            let (size, sha) = w.finish(frames)?;
            if late > 0 {
                m.incomplete.push(format!(
                    "{late} audio samples arrived too late for audio.wav"
                ));
            }
            m.files.push(schemas::FileEntry {
                name: WAV_NAME.into(),
                size,
                sha256: schemas::Sha256(sha),
                content_type: "audio/wav".into(),
            });
        }
        for st in self
            .streams
            .iter()
            .filter(|st| st.decoded && st.decode_errors > 0)
        {
            m.incomplete.push(format!(
                "{} {} payloads of stream {:#010x} could not be decoded into audio.wav",
                st.decode_errors, st.codec, st.ssrc
            ));
        }
        for st in &mut self.streams {
            let Some(v) = st.video.take() else {
                continue;
            };
            let o = v.finish()?;
            match o.file {
                Some(f) => {
                    m.incomplete
                        .extend(video::incomplete_note(&f.name, &o.stats));
                    m.files.push(f);
                }
                None => st.video_note = video::incomplete_note("no video file", &o.stats),
            }
        }
        m.streams = self
            .streams
            .iter()
            .map(|st| stream_info(st, self.audio, &self.rtcp))
            .collect();
        m.dtmf = self
            .dtmf
            .iter()
            .map(|d| schemas::DtmfEvent {
                digit: d.digit.to_string(),
                start_ns: d.start_ns,
                duration_ms: (u64::from(d.duration) * 1000 / u64::from(d.clock.max(1))) as u32,
                direction: direction(d.direction),
            })
            .collect();
        m.complete = m.incomplete.is_empty();
        write_manifest_tmp(&self.dir, &m)?;
        Ok(m)
    }
}

fn party(p: &Party) -> schemas::Party {
    schemas::Party {
        uri: p.uri.clone(),
        number: p.user.clone(),
        display_name: p.display_name.clone(),
        tag: p.tag.clone(),
    }
}

fn direction(d: MediaDirection) -> schemas::StreamDirection {
    match d {
        MediaDirection::CallerToCallee => schemas::StreamDirection::CallerToCallee,
        MediaDirection::CalleeToCaller => schemas::StreamDirection::CalleeToCaller,
    }
}

fn stream_info(s: &Stream, audio: bool, rtcp: &[(u32, RtcpSummary)]) -> schemas::StreamInfo {
    let st = &s.stats;
    let rtcp = rtcp
        .iter()
        .find(|(ssrc, _)| *ssrc == s.ssrc)
        .map(|(_, r)| rtcp_info(r, s.clock_rate));
    // The codec's own Ie/Bpl ([`rtp::emodel`]); none for codecs it has no values for.
    let mos = (s.media == "audio")
        .then(|| {
            let loss = if st.expected() > 0 {
                (st.lost().max(0) as f64) / st.expected() as f64 * 100.0
            } else {
                0.0
            };
            emodel_mos(&s.codec, loss, st.jitter_ms())
        })
        .flatten();
    schemas::StreamInfo {
        ssrc: s.ssrc,
        src: s.src.to_string(),
        dst: s.dst.to_string(),
        direction: direction(s.direction),
        media: s.media.clone(),
        payload_type: s.payload_type.or(s.event_pt).unwrap_or(0),
        codec: s.codec.clone(),
        clock_rate: s.clock_rate,
        packets: st.packets,
        bytes: st.bytes,
        lost: st.lost(),
        duplicates: st.duplicates,
        reordered: st.reordered,
        jitter_ms: st.jitter_ms(),
        max_jitter_ms: st.max_jitter_ms(),
        max_delta_ms: st.max_delta_ns as f64 / 1e6,
        mos,
        first_ns: st.first_ns,
        last_ns: st.last_ns,
        decoded: s.decoded,
        srtp: s.srtp,
        not_decoded: if s.srtp && !s.decoded {
            Some("SRTP: media encrypted, not decodable (kept in call.pcap)".to_string())
        } else if s.media == "video" {
            video_not_decoded(s)
        } else {
            not_decoded(s, audio)
        },
        rtcp,
    }
}

/// The manifest's view of a stream's RTCP summary; jitter from clock units to ms.
fn rtcp_info(r: &RtcpSummary, clock_rate: u32) -> schemas::RtcpInfo {
    let ms = |units: u32| f64::from(units) * 1000.0 / f64::from(clock_rate.max(1));
    let known = |v: u8| (v != 127).then_some(v);
    let voip = r.voip;
    schemas::RtcpInfo {
        sender_reports: r.sender_reports,
        sender_packets: r.sender_packets,
        sender_octets: r.sender_octets,
        receiver_reports: r.reports,
        fraction_lost: f64::from(r.fraction_lost) / 256.0,
        cumulative_lost: i64::from(r.cumulative_lost),
        jitter_ms: ms(r.jitter),
        max_jitter_ms: ms(r.max_jitter),
        xr_r_factor: voip.and_then(|v| known(v.r_factor)),
        xr_mos_lq: voip
            .and_then(|v| known(v.mos_lq))
            .map(|m| f64::from(m) / 10.0),
        xr_mos_cq: voip
            .and_then(|v| known(v.mos_cq))
            .map(|m| f64::from(m) / 10.0),
    }
}

/// Why an audio stream is not in `audio.wav` (`None` when it is, or for other media).
fn not_decoded(s: &Stream, audio: bool) -> Option<String> {
    if s.decoded || s.media != "audio" {
        return None;
    }
    Some(if !audio {
        "audio recording is off".to_string()
    } else if let Some(e) = &s.first_decode_error {
        format!("decoding failed: {e}")
    } else if s.payload_type.is_none() && s.event_pt.is_some() {
        "telephone events only".to_string()
    } else if s.payload_type.is_none() && s.codec == "CN" {
        "comfort noise only".to_string()
    } else if s.codec.is_empty() {
        format!(
            "payload type {} has no rtpmap",
            s.payload_type.unwrap_or_default()
        )
    } else if Codec::from_encoding(&s.codec).is_some() {
        "no packet could be placed in time".to_string()
    } else {
        format!("codec {} is not supported", s.codec)
    })
}

/// Why a video stream has no file (`None` when it has one).
fn video_not_decoded(s: &Stream) -> Option<String> {
    if s.decoded {
        return None;
    }
    Some(match (&s.video_note, VideoCodec::from_encoding(&s.codec)) {
        (Some(note), _) => note.clone(),
        (None, Some(_)) => "no complete frame".to_string(),
        (None, None) if s.codec.is_empty() => format!(
            "payload type {} has no rtpmap and its content is not H.264 or VP8",
            s.payload_type.unwrap_or_default()
        ),
        (None, None) => format!("codec {} is not written to a file", s.codec),
    })
}

/// Whether a G.711 / G.722 payload (8000 bytes/s, so a multiple of 80 bytes for any ptime that
/// is a multiple of 10 ms) carries the 4- or 10-byte authentication tag of SRTP (RFC 3711
/// HMAC-SHA1-32/80) after its media: an SRTP stream no SDP announced (orphan streams, SDP not
/// captured). Checked until the stream's first decoded packet.
fn looks_like_srtp(payload_len: usize) -> bool {
    payload_len > 80 && matches!(payload_len % 80, 4 | 10)
}

/// The RTP clock of Opus (RFC 7587), whatever the audio's bandwidth.
const OPUS_CLOCK: u32 = 48_000;

/// Whether this packet of a payload type without rtpmap and the one before it look like Opus:
/// consecutive sequence numbers, the earlier packet's TOC duration equal to the timestamp step,
/// and an arrival gap near that duration. Remembers this packet for the next call.
fn probe_opus(s: &mut Stream, pkt: &rtp::RtpPacket<'_>, arrival_ns: i64) -> bool {
    let prev = s.opus_probe.take();
    let Some(n) = rtp::codec::opus_samples(pkt.payload) else {
        return false;
    };
    s.opus_probe = Some((pkt.seq, pkt.timestamp, n, arrival_ns));
    let Some((seq0, ts0, n0, t0)) = prev else {
        return false;
    };
    if pkt.seq != seq0.wrapping_add(1) || pkt.timestamp.wrapping_sub(ts0) != n0 {
        return false;
    }
    let expect_ns = i64::from(n0) * 1_000_000_000 / i64::from(OPUS_CLOCK);
    ((arrival_ns - t0) - expect_ns).abs() <= (expect_ns / 2).max(20_000_000)
}

/// Whether every SDP of the call lists a wideband codec (G.722, Opus) on an audio line: the call
/// may carry wideband audio, so its WAV is 16 kHz.
fn negotiated_wideband(dialog: &Dialog) -> bool {
    let lists = |sdp: &crate::sip::SessionDescription, c: Codec| {
        sdp.media.iter().filter(|m| m.media == "audio").any(|m| {
            m.payload_types
                .iter()
                .any(|&pt| m.rtpmap(pt).and_then(|r| Codec::from_encoding(&r.encoding)) == Some(c))
        })
    };
    [Codec::G722, Codec::Opus].into_iter().any(|c| {
        let mut sdps = [dialog.caller_sdp.as_ref(), dialog.callee_sdp.as_ref()]
            .into_iter()
            .flatten()
            .peekable();
        sdps.peek().is_some() && sdps.all(|sdp| lists(sdp, c))
    })
}

/// What stops placing a decoded payload: the codec rejected it (counted) or the file failed.
enum PutError {
    Decode(DecodeError),
    Io(io::Error),
}

impl From<DecodeError> for PutError {
    fn from(e: DecodeError) -> Self {
        PutError::Decode(e)
    }
}

impl From<io::Error> for PutError {
    fn from(e: io::Error) -> Self {
        PutError::Io(e)
    }
}

/// Decodes one payload of `codec` into `channel` of the WAV from frame `pos`. G.711 into an
/// 8 kHz file takes the table path; everything else goes through the stream's decoder, made
/// here on first use (or when the codec changed). Codec errors are counted on the stream.
fn put_audio(
    s: &mut Stream,
    w: &mut WavWriter,
    codec: Codec,
    channel: usize,
    pos: u64,
    payload: &[u8],
) -> io::Result<()> {
    if let Codec::G711(law) = codec
        && w.rate() == NARROWBAND_RATE
    {
        w.put_g711(channel, pos, law, payload)?;
        s.decoded = true;
        return Ok(());
    }
    let stale = s
        .decoder
        .as_ref()
        .is_none_or(|d| d.codec() != codec || d.out_rate() != w.rate());
    if stale {
        s.decoder = None;
        match AudioDecoder::new(codec, w.rate()) {
            Ok(d) => s.decoder = Some(d),
            Err(e) => {
                s.decode_errors += 1;
                s.first_decode_error.get_or_insert(e);
                return Ok(());
            }
        }
    }
    let Some(d) = s.decoder.as_mut() else {
        return Ok(());
    };
    let mut at = pos;
    let r = d.decode(payload, |chunk| {
        w.put(channel, at, chunk)?;
        at += chunk.len() as u64;
        Ok::<_, PutError>(())
    });
    match r {
        Ok(_) => s.decoded = true,
        Err(PutError::Decode(e)) => {
            s.decode_errors += 1;
            s.first_decode_error.get_or_insert(e);
        }
        Err(PutError::Io(e)) => return Err(e),
    }
    Ok(())
}

/// The manifest's temporary name in a recording's folder, until [`publish_manifest`].
const MANIFEST_TMP: &str = ".manifest.json.tmp";

/// Writes the manifest to its temporary name (not synced: see [`publish_manifest`]).
fn write_manifest_tmp(dir: &Path, m: &schemas::Manifest) -> io::Result<()> {
    let mut f = File::create(dir.join(MANIFEST_TMP))?;
    f.write_all(&schemas::manifest_json(m))?;
    Ok(())
}

/// Renames the temporary manifest to `manifest.json`. Atomic, and safe only once the files and
/// the temporary manifest are synced; the rename itself is durable once the folder is synced.
pub fn publish_manifest(dir: &Path) -> io::Result<()> {
    std::fs::rename(dir.join(MANIFEST_TMP), dir.join(MANIFEST_NAME))
}
