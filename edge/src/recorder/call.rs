//! One call being recorded: its folder, `call.pcap` and `audio.wav` writers, its RTP streams
//! (statistics, G.711 decoding into the WAV, RFC 4733 digits), and at the end the manifest.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tapfleet_schemas as schemas;

use super::pcap_writer::PcapWriter;
use super::wav_writer::{SAMPLE_RATE, WavWriter};
use crate::calls::{CallEnd, Dialog, MediaDirection, MediaRoute, Party};
use crate::capture::RawPacket;
use crate::rtp::{self, StreamStats, g711::Law};

pub const PCAP_NAME: &str = "call.pcap";
pub const WAV_NAME: &str = "audio.wav";
pub const MANIFEST_NAME: &str = "manifest.json";
/// Streams tracked per call; more are written to the pcap but not analysed.
const MAX_STREAMS: usize = 64;
const MAX_DTMF: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PtKind {
    G711(Law),
    TelephoneEvent,
    Other,
}

#[derive(Debug)]
struct Stream {
    src: SocketAddr,
    dst: SocketAddr,
    ssrc: u32,
    direction: MediaDirection,
    media: String,
    payload_type: Option<u8>,
    /// The telephone-event payload type, for a stream that carries nothing else.
    event_pt: Option<u8>,
    codec: String,
    clock_rate: u32,
    stats: StreamStats,
    decoded: bool,
    /// Last payload type seen and what it is (saves an SDP lookup per packet).
    pt_cache: Option<(u8, PtKind, u32)>,
    /// Last RTP timestamp of an audio packet and its extended value.
    ext_ts: Option<(u32, i64)>,
    /// Extended RTP timestamp and WAV frame that correspond.
    anchor: Option<(i64, i64)>,
    dtmf_ts: Option<u32>,
}

#[derive(Debug)]
struct Dtmf {
    digit: char,
    start_ns: i64,
    duration: u32,
    clock: u32,
    direction: MediaDirection,
}

/// A call being recorded.
#[derive(Debug)]
pub struct CallRecording {
    pub id: String,
    pub dir: PathBuf,
    pub part: u32,
    start_ns: i64,
    pcap: Option<PcapWriter>,
    wav: Option<WavWriter>,
    streams: Vec<Stream>,
    index: HashMap<(SocketAddr, SocketAddr, u32), usize>,
    dtmf: Vec<Dtmf>,
    linktype_mismatch: u64,
    untracked_streams: u64,
    audio: bool,
    kind: schemas::RecordingKind,
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
        Ok(CallRecording {
            id,
            dir,
            part: 1,
            start_ns,
            pcap: Some(pcap),
            wav: None,
            streams: Vec::new(),
            index: HashMap::new(),
            dtmf: Vec::new(),
            linktype_mismatch: 0,
            untracked_streams: 0,
            audio,
            kind: schemas::RecordingKind::Call,
        })
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
        let key = (src, dst, pkt.ssrc);
        let idx = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                if self.streams.len() >= MAX_STREAMS {
                    self.untracked_streams += 1;
                    return Ok(());
                }
                let media = dialog
                    .media_kind(route.media_index)
                    .unwrap_or("audio")
                    .to_string();
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
                });
                let i = self.streams.len() - 1;
                self.index.insert(key, i);
                i
            }
        };
        let Some(s) = self.streams.get_mut(idx) else {
            return Ok(());
        };
        let (kind, clock) = match s.pt_cache {
            Some((pt, kind, clock)) if pt == pkt.payload_type => (kind, clock),
            _ => {
                let map = dialog.rtpmap(route.direction, route.media_index, pkt.payload_type);
                let (kind, clock) = match &map {
                    Some(m) => {
                        let kind = if let Some(law) = Law::from_encoding(&m.encoding) {
                            PtKind::G711(law)
                        } else if m.encoding.eq_ignore_ascii_case("telephone-event") {
                            PtKind::TelephoneEvent
                        } else {
                            PtKind::Other
                        };
                        (kind, m.clock_rate.max(1))
                    }
                    None => (PtKind::Other, 8000),
                };
                if s.payload_type.is_none() && kind != PtKind::TelephoneEvent {
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
                s.pt_cache = Some((pkt.payload_type, kind, clock));
                (kind, clock)
            }
        };
        s.stats
            .update(pkt.seq, pkt.timestamp, arrival_ns, pkt.payload.len());
        match kind {
            PtKind::G711(law) if self.audio => {
                // Extended RTP timestamp.
                let ext = match s.ext_ts {
                    Some((last, ext)) => ext + i64::from(pkt.timestamp.wrapping_sub(last) as i32),
                    None => i64::from(pkt.timestamp),
                };
                s.ext_ts = Some((pkt.timestamp, ext));
                let arrival_frame = ((i128::from(arrival_ns - self.start_ns)
                    * i128::from(SAMPLE_RATE))
                    / 1_000_000_000) as i64;
                let (a_ts, a_frame) = match s.anchor {
                    Some((t, f)) if ((f + (ext - t)) - arrival_frame).abs() <= 8000 => (t, f),
                    // First packet, or the timestamps jumped more than 1 s from arrival: re-anchor.
                    _ => {
                        s.anchor = Some((ext, arrival_frame));
                        (ext, arrival_frame)
                    }
                };
                let pos = a_frame + (ext - a_ts);
                if pos >= 0 {
                    let channel = match s.direction {
                        MediaDirection::CallerToCallee => 0,
                        MediaDirection::CalleeToCaller => 1,
                    };
                    if self.wav.is_none() {
                        self.wav = Some(WavWriter::create(&self.dir.join(WAV_NAME))?);
                    }
                    if let Some(w) = self.wav.as_mut() {
                        w.put_g711(channel, pos as u64, law, pkt.payload)?;
                    }
                    s.decoded = true;
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

    /// Closes the files (synced), writes `manifest.json` last, and returns the manifest.
    pub fn finish(
        mut self,
        dialog: &Dialog,
        edge_id: Option<&str>,
    ) -> io::Result<schemas::Manifest> {
        let mut m = schemas::Manifest::new(self.id.clone(), self.kind);
        m.edge_id = edge_id.map(str::to_string);
        m.call_id = dialog.call_id.clone();
        m.part = self.part;
        m.caller = party(&dialog.caller);
        m.callee = party(&dialog.callee);
        m.start_ns = dialog.start_ns;
        m.answer_ns = dialog.answer_ns;
        m.end_ns = dialog.last_ns.max(dialog.start_ns);
        m.sip_status = dialog.sip_status;
        m.end_reason = match dialog.end_reason {
            Some(CallEnd::Bye) => schemas::EndReason::Bye,
            Some(CallEnd::Cancel) => schemas::EndReason::Cancel,
            Some(CallEnd::Rejected) => schemas::EndReason::Rejected,
            Some(CallEnd::Timeout) => schemas::EndReason::RtpTimeout,
            Some(CallEnd::CaptureEnd) | None => schemas::EndReason::CaptureEnd,
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
            let frames = (i128::from(m.end_ns - m.start_ns) * i128::from(SAMPLE_RATE)
                / 1_000_000_000)
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
        m.streams = self.streams.iter().map(stream_info).collect();
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
        write_manifest(&self.dir, &m)?;
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

fn stream_info(s: &Stream) -> schemas::StreamInfo {
    let st = &s.stats;
    let mos = (s.media == "audio" && Law::from_encoding(&s.codec).is_some()).then(|| {
        let loss = if st.expected() > 0 {
            (st.lost().max(0) as f64) / st.expected() as f64 * 100.0
        } else {
            0.0
        };
        emodel_mos(loss, st.jitter_ms())
    });
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
    }
}

/// A simplified ITU-T G.107 E-model for G.711 with packet loss concealment: delay from a 20 ms
/// frame plus a jitter buffer of twice the jitter; loss with Bpl = 25.1.
pub fn emodel_mos(loss_pct: f64, jitter_ms: f64) -> f64 {
    let d = 20.0 + 10.0 + 2.0 * jitter_ms;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ie_eff = 95.0 * loss_pct / (loss_pct + 25.1);
    let r = (93.2 - id - ie_eff).clamp(0.0, 100.0);
    let mos = 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6;
    (mos.clamp(1.0, 4.5) * 100.0).round() / 100.0
}

/// Writes `manifest.json` atomically (temporary file, fsync, rename, fsync of the folder).
fn write_manifest(dir: &Path, m: &schemas::Manifest) -> io::Result<()> {
    let tmp = dir.join(".manifest.json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&schemas::manifest_json(m))?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(MANIFEST_NAME))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}
