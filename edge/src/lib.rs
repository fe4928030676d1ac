//! tapfleet-edge: capture packets, track SIP calls, record each call (call.pcap, audio.wav,
//! manifest.json), cache recordings and upload them.
//!
//! Code map:
//! - [`capture`]: packet sources (pcap/pcapng files, live interfaces) behind [`capture::PacketSource`].
//! - [`packet`]: pure link-layer to UDP/TCP payload decoding.
//! - [`sip`]: pure SIP message and SDP parsing.
//! - [`rtp`]: RTP header parsing, RFC 3550 stream statistics, G.711 decoding.
//! - [`calls`]: the pure call tracker (dialogs, media endpoints, call end).
//! - [`recorder`]: wires the tracker to the per-call writers (pcap, WAV, manifest).
//! - [`offline`]: the `tapfleet-edge record` command; [`live_record`]: its live mode
//!   (`record --interface`).
//! - [`service`], [`cache`]: the site service and its local cache; [`inbound`]: the pure decode
//!   and check of what the service receives over MQTT (fuzzed); [`transfer`] / [`receive`]: the
//!   pure sending (upload) and receiving (download into the edge's local storage) sides of a
//!   file transfer.

#[cfg(feature = "app")]
pub mod admin;
#[cfg(feature = "app")]
pub mod cache;
pub mod calls;
pub mod capture;
pub mod inbound;
#[cfg(feature = "app")]
pub mod live_record;
#[cfg(feature = "app")]
pub mod offline;
pub mod packet;
pub mod receive;
pub mod recorder;
pub mod rtp;
#[cfg(feature = "app")]
pub mod service;
pub mod sip;
pub mod transfer;
