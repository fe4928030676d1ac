//! Round trips: every sample of every message and enum variant decodes back to itself; Manifest
//! and TransferChunk also with arbitrary strings and bytes (proptest); `manifest_json` reads back
//! to the same manifest with SHA-256 digests as hex; byte fields are CBOR byte strings on the wire.

mod common;

use std::fmt::Debug;

use proptest::prelude::*;
use tapfleet_schemas::{
    CallDirection, DtmfEvent, EndReason, FileEntry, Manifest, Message, Party, RecordingKind,
    Sha256, StreamDirection, StreamInfo, TransferChunk, decode, encode, manifest_json,
};

fn round_trip<M: Message + PartialEq + Debug>(msgs: Vec<M>) -> usize {
    let n = msgs.len();
    for m in msgs {
        let bytes = encode(&m).expect("encode");
        assert!(
            bytes.len() <= M::MAX_BYTES,
            "{} sample over its own limit",
            M::KIND
        );
        let back: M = decode(&bytes).unwrap_or_else(|e| panic!("{m:?} does not decode: {e}"));
        assert_eq!(back, m);
        // Encoding is deterministic: the same value gives the same bytes.
        assert_eq!(encode(&back).expect("encode"), bytes);
    }
    n
}

#[test]
fn every_message_and_variant_round_trips() {
    let n = round_trip(common::manifests())
        + round_trip(common::desired_configs())
        + round_trip(common::reported_states())
        + round_trip(common::telemetries())
        + round_trip(common::jobs())
        + round_trip(common::job_replies())
        + round_trip(common::acks())
        + round_trip(common::transfer_chunks())
        + round_trip(common::enroll_requests())
        + round_trip(common::enroll_responses())
        + round_trip(common::events());
    assert_eq!(n, common::all_encoded().len());
}

#[test]
fn manifest_json_round_trips_with_hex_digests() {
    for m in common::manifests() {
        let json = manifest_json(&m);
        assert_eq!(json.last(), Some(&b'\n'));
        let back: Manifest = serde_json::from_slice(&json).expect("manifest.json parses");
        assert_eq!(back, m);
        assert_eq!(manifest_json(&back), json, "manifest_json is not canonical");

        let value: serde_json::Value = serde_json::from_slice(&json).expect("json");
        for (i, f) in m.files.iter().enumerate() {
            assert_eq!(
                value["files"][i]["sha256"].as_str(),
                Some(f.sha256.to_hex().as_str()),
                "sha256 is not hex in manifest.json"
            );
            assert_eq!(f.sha256.to_hex().len(), 64);
        }
    }
}

#[test]
fn sha256_parses_only_64_hex_digits() {
    let s = common::sha(9);
    assert_eq!(s.to_hex().parse::<Sha256>().expect("hex"), s);
    assert_eq!(s.to_hex().to_uppercase().parse::<Sha256>().expect("HEX"), s);
    for bad in ["", "00", &"0".repeat(63), &"0".repeat(65), &"g".repeat(64)] {
        assert!(bad.parse::<Sha256>().is_err(), "{bad:?} parsed");
    }
    let json = br#"{"name":"a","size":1,"sha256":"00","content_type":"x"}"#;
    assert!(serde_json::from_slice::<FileEntry>(json).is_err());
}

/// Position of the CBOR text-string key `key` in `bytes` (keys here are < 24 bytes long).
fn key_end(bytes: &[u8], key: &str) -> usize {
    let mut needle = vec![0x60 | u8::try_from(key.len()).expect("short key")];
    needle.extend_from_slice(key.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap_or_else(|| panic!("key {key} not in encoding"));
    at + needle.len()
}

#[test]
fn chunk_data_is_a_cbor_byte_string() {
    let data: Vec<u8> = (0..=255u8).collect();
    let bytes = encode(&TransferChunk::new(1, 2, data.clone())).expect("encode");
    let at = key_end(&bytes, "data");
    // Major type 2 (byte string), length 256 in a 2-byte argument, then the raw bytes.
    assert_eq!(bytes.get(at..at + 3), Some(&[0x59, 0x01, 0x00][..]));
    assert_eq!(bytes.get(at + 3..at + 3 + 256), Some(data.as_slice()));
    assert_eq!(bytes.len(), at + 3 + 256, "data is the last field");

    let small = encode(&TransferChunk::new(1, 2, vec![7, 8, 9])).expect("encode");
    let at = key_end(&small, "data");
    assert_eq!(small.get(at..), Some(&[0x43, 7, 8, 9][..]));

    let empty = encode(&TransferChunk::new(1, 2, Vec::new())).expect("encode");
    assert_eq!(empty.last(), Some(&0x40));
}

#[test]
fn sha256_is_a_32_byte_cbor_byte_string() {
    for s in common::all_encoded() {
        let mut from = 0;
        let needle = [0x66, b's', b'h', b'a', b'2', b'5', b'6'];
        while let Some(pos) = s.bytes[from..].windows(7).position(|w| w == needle) {
            let at = from + pos + 7;
            assert_eq!(
                s.bytes.get(at..at + 2),
                Some(&[0x58, 0x20][..]),
                "{}",
                s.kind
            );
            from = at;
        }
    }
}

fn party() -> impl Strategy<Value = Party> {
    (
        any::<String>(),
        any::<String>(),
        any::<Option<String>>(),
        any::<Option<String>>(),
    )
        .prop_map(|(uri, number, display_name, tag)| Party {
            uri,
            number,
            display_name,
            tag,
        })
}

fn direction() -> impl Strategy<Value = StreamDirection> {
    prop_oneof![
        Just(StreamDirection::CallerToCallee),
        Just(StreamDirection::CalleeToCaller),
        Just(StreamDirection::Unknown),
    ]
}

fn call_direction() -> impl Strategy<Value = CallDirection> {
    prop_oneof![
        Just(CallDirection::Inbound),
        Just(CallDirection::Outbound),
        Just(CallDirection::Internal),
        Just(CallDirection::Unknown),
    ]
}

fn end_reason() -> impl Strategy<Value = EndReason> {
    prop_oneof![
        Just(EndReason::Bye),
        Just(EndReason::Cancel),
        Just(EndReason::Rejected),
        Just(EndReason::RtpTimeout),
        Just(EndReason::CaptureEnd),
        Just(EndReason::MaxDuration),
    ]
}

/// Finite floats: NaN is not equal to itself, and JSON has no NaN or infinity.
fn finite() -> impl Strategy<Value = f64> {
    prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO
}

fn stream() -> impl Strategy<Value = StreamInfo> {
    (
        (any::<u32>(), any::<String>(), any::<String>(), direction()),
        (any::<String>(), any::<u8>(), any::<String>(), any::<u32>()),
        (
            any::<u64>(),
            any::<u64>(),
            any::<i64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (finite(), finite(), finite(), proptest::option::of(finite())),
        (
            any::<i64>(),
            any::<i64>(),
            any::<bool>(),
            proptest::option::of(any::<String>()),
        ),
    )
        .prop_map(
            |(
                (ssrc, src, dst, direction),
                (media, payload_type, codec, clock_rate),
                (packets, bytes, lost, duplicates, reordered),
                (jitter_ms, max_jitter_ms, max_delta_ms, mos),
                (first_ns, last_ns, decoded, not_decoded),
            )| StreamInfo {
                ssrc,
                src,
                dst,
                direction,
                media,
                payload_type,
                codec,
                clock_rate,
                packets,
                bytes,
                lost,
                duplicates,
                reordered,
                jitter_ms,
                max_jitter_ms,
                max_delta_ms,
                mos,
                first_ns,
                last_ns,
                decoded,
                not_decoded,
                srtp: false,
                rtcp: None,
            },
        )
}

fn manifest() -> impl Strategy<Value = Manifest> {
    let dtmf = (any::<String>(), any::<i64>(), any::<u32>(), direction()).prop_map(
        |(digit, start_ns, duration_ms, direction)| DtmfEvent {
            digit,
            start_ns,
            duration_ms,
            direction,
        },
    );
    let file = (
        any::<String>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<String>(),
    )
        .prop_map(|(name, size, sha, content_type)| FileEntry {
            name,
            size,
            sha256: Sha256(sha),
            content_type,
        });
    (
        (
            any::<String>(),
            any::<Option<String>>(),
            prop_oneof![Just(RecordingKind::Call), Just(RecordingKind::OrphanStream)],
            any::<String>(),
            any::<u32>(),
        ),
        (
            party(),
            party(),
            any::<i64>(),
            any::<Option<i64>>(),
            any::<i64>(),
        ),
        (end_reason(), any::<Option<u16>>(), call_direction()),
        (
            prop::collection::vec(stream(), 0..4),
            prop::collection::vec(dtmf, 0..4),
            prop::collection::vec(file, 0..4),
        ),
        (
            any::<u64>(),
            any::<bool>(),
            prop::collection::vec(any::<String>(), 0..3),
        ),
    )
        .prop_map(
            |(
                (recording_id, edge_id, kind, call_id, part),
                (caller, callee, start_ns, answer_ns, end_ns),
                (end_reason, sip_status, call_direction),
                (streams, dtmf, files),
                (packets, complete, incomplete),
            )| {
                let mut m = Manifest::new(recording_id, kind);
                m.edge_id = edge_id;
                m.call_id = call_id;
                m.part = part;
                m.caller = caller;
                m.callee = callee;
                m.start_ns = start_ns;
                m.answer_ns = answer_ns;
                m.end_ns = end_ns;
                m.end_reason = end_reason;
                m.sip_status = sip_status;
                m.direction = call_direction;
                m.streams = streams;
                m.dtmf = dtmf;
                m.files = files;
                m.packets = packets;
                m.complete = complete;
                m.incomplete = incomplete;
                m
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_manifest_round_trips_in_cbor_and_json(m in manifest()) {
        let bytes = encode(&m).expect("encode");
        let back: Manifest = decode(&bytes).expect("decode");
        prop_assert_eq!(&back, &m);
        let json = manifest_json(&m);
        let from_json: Manifest = serde_json::from_slice(&json).expect("json");
        prop_assert_eq!(&from_json, &m);
    }

    #[test]
    fn any_chunk_round_trips(
        transfer_id in any::<u64>(),
        offset in any::<u64>(),
        data in prop::collection::vec(any::<u8>(), 0..70_000),
    ) {
        let chunk = TransferChunk::new(transfer_id, offset, data);
        let bytes = encode(&chunk).expect("encode");
        // Envelope overhead is small and fixed: the data is carried as raw bytes.
        prop_assert!(bytes.len() <= chunk.data.len() + 64, "{} bytes for {}", bytes.len(), chunk.data.len());
        let back: TransferChunk = decode(&bytes).expect("decode");
        prop_assert_eq!(back, chunk);
    }
}
