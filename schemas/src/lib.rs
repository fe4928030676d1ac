//! tapfleet's public wire API: the MQTT topic tree ([`topic`]) and the CBOR messages that travel
//! on it. Integrations subscribe to these topics, so everything here is versioned: every message
//! carries `v` ([`SCHEMA_VERSION`]), decoding is bounded and typed ([`decode`]), and
//! `cddl/tapfleet.cddl` documents each message in CDDL (RFC 8610).
//!
//! Architecture invariant: no other crate formats a topic string or defines a wire message.

mod ack;
mod codec;
mod config;
mod enroll;
mod event;
mod job;
mod manifest;
mod recording_id;
mod sha;
mod state;
pub mod topic;
mod transfer;

pub use ack::{Ack, AckBody};
pub use codec::{DecodeError, EncodeError, MAX_DEPTH, Message, SCHEMA_VERSION, decode, encode};
pub use config::{
    CacheConfig, CaptureConfig, DesiredConfig, EdgeConfig, Retention, StoragePolicy, TimeWindow,
};
pub use enroll::{EnrollGrant, EnrollRequest, EnrollResponse, EnrollResult};
pub use event::{Event, EventBody};
pub use job::{Job, JobAction, JobReply, ReplyBody, TransferOffer};
pub use manifest::{
    CallDirection, DtmfEvent, EndReason, FileEntry, Manifest, Party, RecordingKind, RtcpInfo,
    StreamDirection, StreamInfo, manifest_json,
};
pub use recording_id::{UtcDateTime, is_recording_id, recording_id};
pub use sha::{BadSha256, Sha256};
pub use state::{InterfaceCounters, RecordingCounts, ReportedState, Telemetry};
pub use topic::{Channel, Topic, TopicError};
pub use transfer::{MAX_CHUNK_DATA, TransferChunk};
