//! What the manager takes from MQTT, decoded without IO: the topic must be one the manager
//! subscribes to (an enrollment request, or an edge's state, telemetry, manifests, replies or
//! upload), and the payload must decode (bounded by the schemas crate) as that channel's message.
//! [`decode`] is the dispatcher's first step ([`crate::fleet`]) and what the fuzz target
//! `manager_inbound` feeds arbitrary bytes; the fuzz crate compiles this file on its own, so it
//! depends on `tapfleet_schemas` and `std` only.
//!
//! Chunks (1 MiB each, the bulk of what arrives) take a fast path: [`chunk_fast`] reads the
//! CBOR map the schemas crate writes straight from the payload slice and gives `data` as a range
//! of the payload (the caller slices its shared buffer: nothing copied; ciborium's serde path
//! copies a byte string 4 KiB at a time into a growing buffer). Any other encoding of the same
//! message falls back to the schemas crate's `decode`, so what is accepted and the errors are
//! unchanged.

use tapfleet_schemas::{
    Channel, DecodeError, EnrollRequest, JobReply, Manifest, ReportedState, Telemetry, Topic,
    TopicError, TransferChunk, decode as cbor,
};

/// One decoded inbound message.
#[derive(Debug)]
pub enum Msg {
    /// On `enroll/<session>/request`.
    Enroll {
        session: String,
        request: EnrollRequest,
    },
    /// The rest are on an edge's own channel.
    State(ReportedState),
    /// An empty retained state (a cleared retained message): nothing to do.
    StateCleared,
    Telemetry(Telemetry),
    Manifest(Box<Manifest>),
    Reply(JobReply),
    Chunk(ChunkIn),
}

/// A decoded [`TransferChunk`] whose data may still be in the payload.
#[derive(Debug)]
pub struct ChunkIn {
    pub transfer_id: u64,
    pub offset: u64,
    pub data: ChunkData,
}

impl ChunkIn {
    /// The chunk's data, given the payload it was decoded from.
    pub fn data<'a>(&'a self, payload: &'a [u8]) -> &'a [u8] {
        match &self.data {
            ChunkData::InPayload(r) => payload.get(r.clone()).unwrap_or_default(),
            ChunkData::Owned(v) => v,
        }
    }

    /// Whether this is `c`, given the payload it was decoded from.
    pub fn is(&self, c: &TransferChunk, payload: &[u8]) -> bool {
        self.transfer_id == c.transfer_id && self.offset == c.offset && self.data(payload) == c.data
    }
}

/// Where a chunk's data is.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkData {
    /// These bytes of the payload (the fast path).
    InPayload(std::ops::Range<usize>),
    /// Decoded out of another encoding.
    Owned(Vec<u8>),
}

/// The edge a per-edge message names (its tenant and id, from the topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeRef {
    pub tenant: String,
    pub edge: String,
}

/// A message and, for per-edge channels, the edge its topic names.
#[derive(Debug)]
pub struct Decoded {
    pub from: Option<EdgeRef>,
    pub message: Msg,
}

/// Why an inbound publish is dropped.
#[derive(Debug)]
pub enum InboundError {
    /// Not a tapfleet topic.
    Topic(TopicError),
    /// A tapfleet topic the manager does not take (manager -> edge channels, events).
    NotInbound,
    /// An enrollment request that does not decode: the session still gets a refusal.
    Enroll { session: String, error: DecodeError },
    /// A per-edge payload that does not decode.
    Payload { from: EdgeRef, error: DecodeError },
}

impl std::fmt::Display for InboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InboundError::Topic(e) => write!(f, "not a tapfleet topic: {e}"),
            InboundError::NotInbound => write!(f, "not a topic the manager takes"),
            InboundError::Enroll { session, error } => {
                write!(f, "enrollment request of session {session}: {error}")
            }
            InboundError::Payload { from, error } => {
                write!(f, "from edge {}/{}: {error}", from.tenant, from.edge)
            }
        }
    }
}

impl std::error::Error for InboundError {}

/// Decodes one publish the manager received. Never panics, whatever the bytes.
pub fn decode(topic: &str, payload: &[u8]) -> Result<Decoded, InboundError> {
    let parsed = Topic::parse(topic).map_err(InboundError::Topic)?;
    let (tenant, edge, channel) = match parsed {
        Topic::EnrollRequest { session } => {
            return match cbor::<EnrollRequest>(payload) {
                Ok(request) => Ok(Decoded {
                    from: None,
                    message: Msg::Enroll { session, request },
                }),
                Err(error) => Err(InboundError::Enroll { session, error }),
            };
        }
        Topic::Edge {
            tenant,
            edge,
            channel,
        } => (tenant, edge, channel),
        _ => return Err(InboundError::NotInbound),
    };
    let from = EdgeRef { tenant, edge };
    let message = match channel {
        Channel::State if payload.is_empty() => Ok(Msg::StateCleared),
        Channel::State => cbor::<ReportedState>(payload).map(Msg::State),
        Channel::Telemetry => cbor::<Telemetry>(payload).map(Msg::Telemetry),
        Channel::Manifests => cbor::<Manifest>(payload).map(|m| Msg::Manifest(Box::new(m))),
        Channel::Replies => cbor::<JobReply>(payload).map(Msg::Reply),
        Channel::Upload => chunk(payload).map(Msg::Chunk),
        Channel::Config | Channel::Jobs | Channel::Acks | Channel::Download => {
            return Err(InboundError::NotInbound);
        }
    };
    match message {
        Ok(message) => Ok(Decoded {
            from: Some(from),
            message,
        }),
        Err(error) => Err(InboundError::Payload { from, error }),
    }
}

/// A chunk: the fast path when it applies, else the schemas crate's decode.
fn chunk(payload: &[u8]) -> Result<ChunkIn, DecodeError> {
    use tapfleet_schemas::Message;
    let owned = |c: TransferChunk| ChunkIn {
        transfer_id: c.transfer_id,
        offset: c.offset,
        data: ChunkData::Owned(c.data),
    };
    if payload.len() > TransferChunk::MAX_BYTES {
        return cbor::<TransferChunk>(payload).map(owned); // the size error, before any parsing
    }
    match chunk_fast(payload) {
        Some(c) => Ok(c),
        None => cbor::<TransferChunk>(payload).map(owned),
    }
}

/// Reads one CBOR head at `*pos` (definite lengths only): its major type and argument.
fn head(b: &[u8], pos: &mut usize) -> Option<(u8, u64)> {
    let first = *b.get(*pos)?;
    *pos += 1;
    let (major, info) = (first >> 5, first & 0x1f);
    let n = match info {
        0..=23 => return Some((major, u64::from(info))),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let bytes = b.get(*pos..pos.checked_add(n)?)?;
    *pos += n;
    Some((
        major,
        bytes.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)),
    ))
}

/// The schemas crate's encoding of a [`TransferChunk`] (a definite map of `v`, `transfer_id`,
/// `offset` and `data`, each once, in any order) at this version, read from the slice; `None`
/// for anything else (the caller falls back to the full decoder).
fn chunk_fast(b: &[u8]) -> Option<ChunkIn> {
    let mut pos = 0;
    if head(b, &mut pos)? != (5, 4) {
        return None;
    }
    let (mut v, mut transfer_id, mut offset, mut data) = (None, None, None, None);
    for _ in 0..4 {
        let (major, len) = head(b, &mut pos)?;
        if major != 3 {
            return None;
        }
        let end = pos.checked_add(usize::try_from(len).ok()?)?;
        let key = b.get(pos..end)?;
        pos = end;
        let (major, arg) = head(b, &mut pos)?;
        match (key, major) {
            (b"v", 0) if v.is_none() => v = Some(u16::try_from(arg).ok()?),
            (b"transfer_id", 0) if transfer_id.is_none() => transfer_id = Some(arg),
            (b"offset", 0) if offset.is_none() => offset = Some(arg),
            (b"data", 2) if data.is_none() => {
                let end = pos.checked_add(usize::try_from(arg).ok()?)?;
                b.get(pos..end)?;
                data = Some(pos..end);
                pos = end;
            }
            _ => return None,
        }
    }
    if pos != b.len() || v? != tapfleet_schemas::SCHEMA_VERSION {
        return None;
    }
    Some(ChunkIn {
        transfer_id: transfer_id?,
        offset: offset?,
        data: ChunkData::InPayload(data?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapfleet_schemas::{SCHEMA_VERSION, encode};

    fn state() -> ReportedState {
        ReportedState {
            v: SCHEMA_VERSION,
            online: true,
            config_version: Some(1),
            config_error: None,
            software_version: "1".into(),
            hostname: "h".into(),
            at_ms: 1,
        }
    }

    #[test]
    fn chunks_decode_from_the_slice_as_the_schemas_crate_does() {
        let t = Topic::edge("acme", "e1", Channel::Upload)
            .expect("topic")
            .to_string();
        for (id, off, len) in [(0, 0, 0), (7, 23, 24), (u64::MAX, 1 << 40, 1024 * 1024)] {
            let c = TransferChunk::new(id, off, (0..len).map(|i| (i % 251) as u8).collect());
            let bytes = encode(&c).expect("cbor");
            let fast = chunk_fast(&bytes).expect("fast path");
            assert!(fast.is(&c, &bytes));
            assert!(matches!(fast.data, ChunkData::InPayload(_)));
            match decode(&t, &bytes).map(|d| d.message) {
                Ok(Msg::Chunk(d)) => assert!(d.is(&c, &bytes)),
                other => panic!("{other:?}"),
            }
            // Every truncation fails (fast path or fallback) without panicking.
            for cut in [0, 1, bytes.len() / 2, bytes.len().saturating_sub(1)] {
                if let Some(b) = bytes.get(..cut) {
                    assert!(chunk(b).is_err(), "{cut}");
                }
            }
        }
        // Another version: the fallback's error, as before.
        let mut c = TransferChunk::new(1, 2, vec![3; 10]);
        c.v = tapfleet_schemas::SCHEMA_VERSION + 1;
        let bytes = encode(&c).expect("cbor");
        assert!(chunk_fast(&bytes).is_none());
        assert!(matches!(
            chunk(&bytes),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn each_channel_decodes_its_own_message_only() {
        let t = |ch| Topic::edge("acme", "e1", ch).expect("topic").to_string();
        let ok = decode(&t(Channel::State), &encode(&state()).expect("cbor")).expect("state");
        assert_eq!(
            ok.from,
            Some(EdgeRef {
                tenant: "acme".into(),
                edge: "e1".into()
            })
        );
        assert!(matches!(ok.message, Msg::State(_)));
        assert!(matches!(
            decode(&t(Channel::State), b"").map(|i| i.message),
            Ok(Msg::StateCleared)
        ));
        // A state on the manifests channel, garbage, truncated and oversized CBOR.
        let big = vec![0x41u8; 3 * 1024 * 1024];
        for (ch, bytes) in [
            (Channel::Manifests, encode(&state()).expect("cbor")),
            (Channel::Telemetry, b"\xff\x00garbage".to_vec()),
            (Channel::Replies, vec![0xa1]),
            (Channel::Upload, big),
        ] {
            assert!(
                matches!(decode(&t(ch), &bytes), Err(InboundError::Payload { .. })),
                "{ch:?}"
            );
        }
        assert!(matches!(
            decode(&t(Channel::Config), b""),
            Err(InboundError::NotInbound)
        ));
        assert!(matches!(
            decode("tapfleet/v1/enroll/s1/request", b"\x80"),
            Err(InboundError::Enroll { session, .. }) if session == "s1"
        ));
        assert!(matches!(
            decode("not/ours", b""),
            Err(InboundError::Topic(_))
        ));
    }
}
