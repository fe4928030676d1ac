//! The recording manifest: everything known about one recorded call and its files.
//!
//! Written as `manifest.json` beside the media files and published as CBOR on the edge's
//! `manifests` topic until the manager acknowledges it. Times are Unix nanoseconds (UTC).

use serde::{Deserialize, Serialize};

use crate::Sha256;
use crate::codec::{SCHEMA_VERSION, message};

/// One recording: a call (or one part of a long call), or an orphan media stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub v: u16,
    /// Unique, time-sortable id: `YYYYMMDDTHHMMSSZ-` followed by 16 hex digits.
    pub recording_id: String,
    /// The edge that recorded it (none for offline recordings).
    pub edge_id: Option<String>,
    pub kind: RecordingKind,
    /// SIP Call-ID (empty for an orphan stream).
    pub call_id: String,
    /// Part number of a call cut at its maximum duration (1 for the first).
    pub part: u32,
    /// The recording id of the part before this one (parts 2, 3, ... of a call cut at its
    /// maximum duration). Added within v1 (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_part: Option<String>,
    /// Recording ids of the other legs of the same call through a B2BUA (each leg is its own
    /// dialog and recording): calls with the same caller and callee numbers started within 2 s
    /// of each other. Added within v1 (absent: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub linked: Vec<String>,
    pub caller: Party,
    pub callee: Party,
    /// The call relative to the site (the edge's `capture.local_networks` /
    /// `capture.trunk_networks`), from its initial INVITE's source and destination address.
    /// Added within v1 (absent: unknown).
    #[serde(default)]
    pub direction: CallDirection,
    pub start_ns: i64,
    pub answer_ns: Option<i64>,
    pub end_ns: i64,
    pub end_reason: EndReason,
    /// Final SIP status of the INVITE, if one was seen.
    pub sip_status: Option<u16>,
    pub streams: Vec<StreamInfo>,
    pub dtmf: Vec<DtmfEvent>,
    pub files: Vec<FileEntry>,
    /// Packets written into `call.pcap`.
    pub packets: u64,
    /// False when the recording is known to miss something; `incomplete` says what.
    pub complete: bool,
    pub incomplete: Vec<String>,
}
message!(Manifest, "Manifest", 1024 * 1024);

impl Manifest {
    /// A manifest with this crate's schema version and nothing else filled in.
    pub fn new(recording_id: String, kind: RecordingKind) -> Self {
        Manifest {
            v: SCHEMA_VERSION,
            recording_id,
            edge_id: None,
            kind,
            call_id: String::new(),
            part: 1,
            previous_part: None,
            linked: Vec::new(),
            caller: Party::default(),
            callee: Party::default(),
            direction: CallDirection::Unknown,
            start_ns: 0,
            answer_ns: None,
            end_ns: 0,
            end_reason: EndReason::CaptureEnd,
            sip_status: None,
            streams: Vec::new(),
            dtmf: Vec::new(),
            files: Vec::new(),
            packets: 0,
            complete: true,
            incomplete: Vec::new(),
        }
    }

    /// Total size of the recording's files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The file entry with this name.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingKind {
    /// A SIP call and its media.
    Call,
    /// Media that no signalling announced.
    OrphanStream,
}

/// One side of a call, from the SIP From or To header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Party {
    /// The URI, e.g. `sip:+4930123@pbx.example.com`.
    pub uri: String,
    /// The user part (usually the number).
    pub number: String,
    pub display_name: Option<String>,
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Bye,
    Cancel,
    /// A final error response (status in `sip_status`).
    Rejected,
    RtpTimeout,
    CaptureEnd,
    /// Cut at the maximum duration; the call continues in the next part.
    MaxDuration,
}

/// A call relative to the site: its initial INVITE went from inside the site to outside it
/// (outbound), the other way (inbound), or stayed inside (internal). Unknown when the edge has
/// no networks configured, for orphan streams, and for INVITEs between two outside addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    Inbound,
    Outbound,
    Internal,
    #[default]
    Unknown,
}

/// Who sent a stream, by SIP role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamDirection {
    CallerToCallee,
    CalleeToCaller,
    Unknown,
}

/// One RTP stream (5-tuple + SSRC) and its quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub ssrc: u32,
    /// `ip:port` (IPv6 in brackets).
    pub src: String,
    pub dst: String,
    pub direction: StreamDirection,
    /// `audio`, `video`, ...
    pub media: String,
    pub payload_type: u8,
    /// Encoding name as in SDP, e.g. `PCMU`.
    pub codec: String,
    pub clock_rate: u32,
    pub packets: u64,
    pub bytes: u64,
    /// RFC 3550 cumulative loss (can be negative with duplicates).
    pub lost: i64,
    pub duplicates: u64,
    pub reordered: u64,
    /// RFC 3550 interarrival jitter, in milliseconds.
    pub jitter_ms: f64,
    pub max_jitter_ms: f64,
    /// Largest gap between two packets, in milliseconds.
    pub max_delta_ms: f64,
    /// E-model (ITU-T G.107) MOS estimate.
    pub mos: Option<f64>,
    pub first_ns: i64,
    pub last_ns: i64,
    /// Whether the stream's media is in a playable file of the recording: audio in the audio
    /// file; video (H.264, VP8) in its own `video-<ssrc hex>.h264` / `.ivf` with at least one
    /// frame.
    pub decoded: bool,
    /// Why an audio or video stream's media is not in a file (codec not supported, decoding
    /// failed, no rtpmap, audio recording off, no complete frame); absent when decoded and for
    /// other media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_decoded: Option<String>,
    /// The stream is SRTP (its SDP said `RTP/SAVP(F)`, or its payload sizes carry an
    /// authentication tag): kept in `call.pcap`, its media not decodable. Added within v1
    /// (absent: false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub srtp: bool,
    /// What RTCP said about the stream. Added within v1 (absent: no RTCP about it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtcp: Option<RtcpInfo>,
}

/// RTCP about one stream: sender reports (RFC 3550 SR) its sender sent, report blocks (SR/RR)
/// its receiver sent about it, and the receiver's RFC 3611 XR VoIP metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RtcpInfo {
    /// Sender reports from the stream's SSRC.
    pub sender_reports: u32,
    /// Packet and octet counts of the last sender report.
    pub sender_packets: u32,
    pub sender_octets: u32,
    /// Report blocks about the stream.
    pub receiver_reports: u32,
    /// The last report block's fraction lost (0..1), cumulative loss and jitter (ms).
    pub fraction_lost: f64,
    pub cumulative_lost: i64,
    pub jitter_ms: f64,
    /// Largest jitter any report block gave (ms).
    pub max_jitter_ms: f64,
    /// XR VoIP metrics (last block): R factor and MOS-LQ/CQ, when the reporter gave them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xr_r_factor: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xr_mos_lq: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xr_mos_cq: Option<f64>,
}

/// An RFC 4733 telephone event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DtmfEvent {
    pub digit: String,
    pub start_ns: i64,
    pub duration_ms: u32,
    pub direction: StreamDirection,
}

/// One file of a recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name inside the recording's folder, e.g. `call.pcap`.
    pub name: String,
    pub size: u64,
    pub sha256: Sha256,
    /// MIME type, e.g. `application/vnd.tcpdump.pcap`, `audio/wav`.
    pub content_type: String,
}

/// The canonical `manifest.json` bytes of a manifest (pretty JSON and a final newline). The edge
/// and the manager both write it with this function, so both copies are byte-identical.
pub fn manifest_json(m: &Manifest) -> Vec<u8> {
    // Serializing plain structs, strings and finite numbers to a Vec cannot fail; NaN becomes null.
    let mut out = serde_json::to_vec_pretty(m).unwrap_or_default();
    out.push(b'\n');
    out
}
