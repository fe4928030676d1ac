//! The ground truth written beside each capture (`OUT.truth.json`): what every call and stream
//! really contained, so tests and benchmarks can check a recorder against it. Public and serde so
//! tests load it back with `serde_json`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::options::{Codec, GenOptions};

/// One generated capture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// `tapfleet-callgen <version>`.
    pub generator: String,
    /// The options that produced the file.
    pub options: GenOptions,
    /// Calls in start order (index = position).
    pub calls: Vec<CallTruth>,
    /// What is in the file.
    pub totals: Totals,
}

/// Counts over the whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Packets (pcap records) in the file.
    pub packets: u64,
    /// SIP packets in the file.
    pub sip_packets: u64,
    /// RTP packets in the file.
    pub rtp_packets: u64,
    /// RTP packets generated but dropped (not in the file).
    pub rtp_dropped: u64,
    /// Size of the pcap file in bytes (global header, record headers and frames).
    pub file_bytes: u64,
    /// Sum of the frames' lengths (Ethernet onwards).
    pub frame_bytes: u64,
    /// Timestamp of the first record (unix ns), 0 when empty.
    pub first_ns: u64,
    /// Timestamp of the last record (unix ns), 0 when empty.
    pub last_ns: u64,
}

/// Who hung up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The calling party (From of the INVITE).
    Caller,
    /// The called party.
    Callee,
}

/// One user agent in a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyTruth {
    /// E.164 number, e.g. `+49301234567`.
    pub number: String,
    /// Display name in From/To.
    pub display_name: String,
    pub ip: Ipv4Addr,
    pub sip_port: u16,
    /// RTP port announced in its SDP (and used as source port of its RTP).
    pub rtp_port: u16,
    /// Its dialog tag.
    pub tag: String,
    /// Its User-Agent / Server header.
    pub user_agent: String,
}

/// One call (SIP dialog).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallTruth {
    /// Position in start order.
    pub index: u32,
    pub call_id: String,
    pub caller: PartyTruth,
    pub callee: PartyTruth,
    pub codec: Codec,
    /// RTP payload type of `codec`.
    pub payload_type: u8,
    /// INVITE sent (unix ns).
    pub start_ns: u64,
    /// 200 OK to INVITE sent (unix ns).
    pub answer_ns: u64,
    /// BYE sent (unix ns).
    pub end_ns: u64,
    pub hangup_by: Side,
    /// SIP packets of this call in the file (INVITE, 100, 180, 200, ACK, BYE, 200).
    pub sip_packets: u64,
    /// RTP from caller to callee.
    pub caller_to_callee: StreamTruth,
    /// RTP from callee to caller.
    pub callee_to_caller: StreamTruth,
}

/// One RTP stream (one direction of a call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamTruth {
    pub src_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_ip: Ipv4Addr,
    pub dst_port: u16,
    pub ssrc: u32,
    pub payload_type: u8,
    /// Frequency of the sine tone carried, in Hz.
    pub tone_hz: u32,
    /// Sequence number of the first packet.
    pub first_seq: u16,
    /// RTP timestamp of the first packet (8 kHz clock, +160 per 20 ms packet).
    pub first_rtp_ts: u32,
    /// Send time of the first packet (unix ns).
    pub first_send_ns: u64,
    /// Packets generated (in the file or dropped).
    pub packets_sent: u64,
    /// Sequence numbers of the dropped packets, in order.
    pub dropped_seqs: Vec<u16>,
    /// Packets of this stream in the file (`packets_sent - dropped_seqs.len()`).
    pub packets_in_file: u64,
}

impl Truth {
    /// Loads a truth file's JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
