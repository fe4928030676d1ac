//! What the manager takes from MQTT, decoded without IO: the topic must be one the manager
//! subscribes to (an enrollment request, or an edge's state, telemetry, manifests, replies or
//! upload), and the payload must decode (bounded by the schemas crate) as that channel's message.
//! [`decode`] is the dispatcher's first step ([`crate::fleet`]) and what the fuzz target
//! `manager_inbound` feeds arbitrary bytes; the fuzz crate compiles this file on its own, so it
//! depends on `tapfleet_schemas` and `std` only.

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
    Chunk(TransferChunk),
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
        Channel::Upload => cbor::<TransferChunk>(payload).map(Msg::Chunk),
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
