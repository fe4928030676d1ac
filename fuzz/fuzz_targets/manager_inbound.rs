//! Fuzz target: the manager's inbound step (`fleet-manager/src/inbound.rs`, compiled here on its
//! own so the fuzz build does not pull the manager's servers): the first byte picks a topic the
//! manager subscribes to (or one it must refuse), the rest is the payload. Decoding must never
//! panic or allocate without bound, an error must name its cause, and whatever decodes must come
//! from the topic's own channel.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../fleet-manager/src/inbound.rs"]
mod inbound;

use inbound::{ChunkData, InboundError, Msg, decode};

const TOPICS: [&str; 9] = [
    "tapfleet/v1/enroll/s1/request",
    "tapfleet/v1/tenants/acme/edges/e1/state",
    "tapfleet/v1/tenants/acme/edges/e1/telemetry",
    "tapfleet/v1/tenants/acme/edges/e1/manifests",
    "tapfleet/v1/tenants/acme/edges/e1/replies",
    "tapfleet/v1/tenants/acme/edges/e1/upload",
    "tapfleet/v1/tenants/acme/edges/e1/config",
    "tapfleet/v1/tenants/acme/events",
    "tapfleet/v1/enroll/s1/response",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let topic = TOPICS[usize::from(pick) % TOPICS.len()];
    match decode(topic, payload) {
        Ok(d) => {
            let channel = topic.rsplit('/').next().unwrap_or_default();
            let fits = match &d.message {
                Msg::Enroll { .. } => channel == "request",
                Msg::State(_) | Msg::StateCleared => channel == "state",
                Msg::Telemetry(_) => channel == "telemetry",
                Msg::Manifest(_) => channel == "manifests",
                Msg::Reply(_) => channel == "replies",
                Msg::Chunk(c) => {
                    // Data left in the payload is a range inside it.
                    if let ChunkData::InPayload(r) = &c.data {
                        assert!(r.start <= r.end && r.end <= payload.len(), "{r:?}");
                    }
                    channel == "upload"
                }
            };
            assert!(fits, "{topic}: decoded as another channel's message");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // The payload as a topic name too (the topic parser sees what the broker forwards).
    if let Ok(t) = std::str::from_utf8(payload) {
        if let Err(InboundError::Payload { .. }) = decode(t, b"") {
            // Only a state can be empty; any other edge channel must refuse an empty payload.
            assert!(
                !t.ends_with("/state"),
                "{t}: an empty state is a cleared one"
            );
        }
    }
});
