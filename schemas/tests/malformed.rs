//! Hostile and malformed input: every decoder refuses it with a clear error, bounded in time,
//! memory and stack; versions other than 1 are reported as such; unknown fields are ignored.

mod common;

use ciborium::Value;
use proptest::prelude::*;
use tapfleet_schemas::{
    Ack, DecodeError, DesiredConfig, EnrollRequest, EnrollResponse, Event, Job, JobReply, Manifest,
    Message, ReportedState, Telemetry, TransferChunk, decode, encode,
};

/// Runs `$check::<M>(args)` for every message type.
macro_rules! for_every_message {
    ($check:ident ( $($arg:expr),* )) => {{
        $check::<Manifest>($($arg),*);
        $check::<DesiredConfig>($($arg),*);
        $check::<ReportedState>($($arg),*);
        $check::<Telemetry>($($arg),*);
        $check::<Job>($($arg),*);
        $check::<JobReply>($($arg),*);
        $check::<Ack>($($arg),*);
        $check::<TransferChunk>($($arg),*);
        $check::<EnrollRequest>($($arg),*);
        $check::<EnrollResponse>($($arg),*);
        $check::<Event>($($arg),*);
    }};
}

fn malformed<M: Message + std::fmt::Debug>(bytes: &[u8]) {
    match decode::<M>(bytes) {
        Err(DecodeError::Malformed { kind, .. }) => assert_eq!(kind, M::KIND),
        other => panic!("{}: expected Malformed, got {other:?}", M::KIND),
    }
}

fn cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("encode to Vec");
    out
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn int(i: u64) -> Value {
    Value::Integer(i.into())
}

fn to_value(bytes: &[u8]) -> Vec<(Value, Value)> {
    match ciborium::from_reader(bytes).expect("valid CBOR") {
        Value::Map(m) => m,
        other => panic!("not a map: {other:?}"),
    }
}

fn set(map: &mut Vec<(Value, Value)>, key: &str, value: Value) {
    match map.iter_mut().find(|(k, _)| k.as_text() == Some(key)) {
        Some(slot) => slot.1 = value,
        None => map.push((text(key), value)),
    }
}

#[test]
fn empty_input_is_malformed() {
    for_every_message!(malformed(&[]));
}

#[test]
fn not_a_map_is_malformed() {
    for v in [
        int(1),
        text("v"),
        Value::Array(vec![int(1)]),
        Value::Null,
        Value::Bytes(vec![1]),
    ] {
        for_every_message!(malformed(&cbor(&v)));
    }
}

#[test]
fn every_truncation_of_every_sample_is_malformed() {
    let mut checked = 0usize;
    for s in common::all_encoded() {
        // The 1 MiB chunk: every prefix of its envelope and a sample of its data.
        let lens: Vec<usize> = if s.bytes.len() > 4096 {
            (0..64).chain((64..s.bytes.len()).step_by(4093)).collect()
        } else {
            (0..s.bytes.len()).collect()
        };
        for len in lens {
            let prefix = &s.bytes[..len];
            let ok = match s.rule {
                "manifest" => decode::<Manifest>(prefix).is_ok(),
                "desired-config" => decode::<DesiredConfig>(prefix).is_ok(),
                "reported-state" => decode::<ReportedState>(prefix).is_ok(),
                "telemetry" => decode::<Telemetry>(prefix).is_ok(),
                "job" => decode::<Job>(prefix).is_ok(),
                "job-reply" => decode::<JobReply>(prefix).is_ok(),
                "ack" => decode::<Ack>(prefix).is_ok(),
                "transfer-chunk" => decode::<TransferChunk>(prefix).is_ok(),
                "enroll-request" => decode::<EnrollRequest>(prefix).is_ok(),
                "enroll-response" => decode::<EnrollResponse>(prefix).is_ok(),
                "event" => decode::<Event>(prefix).is_ok(),
                other => panic!("unknown rule {other}"),
            };
            assert!(!ok, "{} truncated to {len} bytes decoded", s.kind);
            checked += 1;
        }
    }
    assert!(checked > 5_000, "only {checked} prefixes");
}

#[test]
fn truncated_manifest_reports_malformed_not_version() {
    let bytes = encode(&common::manifests().remove(1)).expect("encode");
    for len in 0..bytes.len() {
        malformed::<Manifest>(&bytes[..len]);
    }
}

#[test]
fn wrong_types_are_malformed() {
    let chunk = encode(&common::transfer_chunks().remove(1)).expect("encode");
    for (key, value) in [
        ("v", text("1")),
        ("transfer_id", text("9")),
        ("offset", Value::Integer((-1).into())),
        ("data", text("abc")),
        ("data", Value::Null),
    ] {
        let mut m = to_value(&chunk);
        set(&mut m, key, value);
        malformed::<TransferChunk>(&cbor(&Value::Map(m)));
    }
    let manifest = encode(&common::manifests().remove(1)).expect("encode");
    for (key, value) in [
        ("part", Value::Integer((1u64 << 32).into())),
        ("sip_status", int(70_000)),
        ("kind", text("conference")),
        ("files", Value::Map(vec![])),
        ("complete", int(1)),
        ("streams", Value::Array(vec![int(1)])),
        ("start_ns", Value::Integer((u64::MAX).into())),
        (
            "recording_id",
            Value::Bytes(b"20240229T123456Z-deadbeef00010203".to_vec()),
        ),
    ] {
        let mut m = to_value(&manifest);
        set(&mut m, key, value);
        malformed::<Manifest>(&cbor(&Value::Map(m)));
    }
    // A digest of the wrong length, or as an array of integers, is refused.
    for bad in [
        Value::Bytes(vec![0; 31]),
        Value::Bytes(vec![0; 33]),
        Value::Array(vec![int(0); 32]),
    ] {
        let mut m = to_value(&manifest);
        let Some((_, Value::Array(files))) =
            m.iter_mut().find(|(k, _)| k.as_text() == Some("files"))
        else {
            panic!("manifest has files")
        };
        let Some(Value::Map(file)) = files.first_mut() else {
            panic!("sample has a file")
        };
        set(file, "sha256", bad);
        malformed::<Manifest>(&cbor(&Value::Map(m)));
    }
    // A required field missing.
    let mut m = to_value(&manifest);
    m.retain(|(k, _)| k.as_text() != Some("end_ns"));
    malformed::<Manifest>(&cbor(&Value::Map(m)));
    // A version that is not a u16 is a shape error, not a version.
    let mut m = to_value(&chunk);
    set(&mut m, "v", int(70_000));
    malformed::<TransferChunk>(&cbor(&Value::Map(m)));
}

fn too_large<M: Message + std::fmt::Debug>() {
    let bytes = vec![0xa0; M::MAX_BYTES + 1];
    match decode::<M>(&bytes) {
        Err(DecodeError::TooLarge { kind, len, max }) => {
            assert_eq!((kind, len, max), (M::KIND, M::MAX_BYTES + 1, M::MAX_BYTES));
        }
        other => panic!("{}: expected TooLarge, got {other:?}", M::KIND),
    }
    // At the limit the size is accepted (whatever the bytes then say).
    assert!(!matches!(
        decode::<M>(&bytes[..M::MAX_BYTES]),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn oversized_input_is_too_large() {
    for_every_message!(too_large());
}

fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut v = vec![0x81; depth]; // array of one element, nested
    v.push(0x00);
    v
}

fn deep<M: Message + std::fmt::Debug>(depth: usize) {
    // As the whole input.
    malformed::<M>(&nested_arrays(depth));
    // As the value of an unknown field of an otherwise plausible map: {"v": 1, "x": [[[...]]]}.
    let mut bytes = vec![0xa2, 0x61, b'v', 0x01, 0x61, b'x'];
    bytes.extend(nested_arrays(depth));
    malformed::<M>(&bytes);
    // Nested maps {"a": {"a": ...}} too.
    let mut maps = Vec::new();
    for _ in 0..depth {
        maps.extend([0xa1, 0x61, b'a']);
    }
    maps.push(0x00);
    malformed::<M>(&maps);
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    // Run on a small stack: a decoder that recursed per level would overflow it.
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            for_every_message!(deep(1000));
            for_every_message!(deep(5000)); // 15 KB of nested maps: under every limit
        })
        .expect("spawn")
        .join()
        .expect("no stack overflow or panic");
}

#[test]
fn deep_nesting_inside_a_known_field_is_refused() {
    // A Job whose `files` is 1000 nested arrays. (Built by hand: ciborium's Value encoder
    // recurses.)
    let mut bytes = encode(&common::jobs().remove(1)).expect("encode");
    let at = bytes
        .windows(6)
        .position(|w| w == b"\x65files")
        .expect("files key")
        + 6;
    bytes.truncate(at);
    bytes.extend(nested_arrays(1000));
    malformed::<Job>(&bytes);
}

#[test]
fn huge_declared_lengths_do_not_allocate() {
    const HUGE: [u8; 8] = (1u64 << 60).to_be_bytes();
    // {"v": 1, "transfer_id": 0, "offset": 0, "data": h'<2^60 bytes, 3 present>'}
    let mut chunk = vec![0xa4, 0x61, b'v', 0x01];
    chunk.extend([0x6b]);
    chunk.extend(b"transfer_id");
    chunk.push(0x00);
    chunk.push(0x66);
    chunk.extend(b"offset");
    chunk.push(0x00);
    chunk.push(0x64);
    chunk.extend(b"data");
    let prefix = chunk.clone();
    chunk.push(0x5b);
    chunk.extend(HUGE);
    chunk.extend([1, 2, 3]);
    malformed::<TransferChunk>(&chunk);

    // The same claim for an array (data as an array is accepted by serde_bytes) and a text string.
    for header in [0x9b, 0x7b, 0xbb] {
        let mut b = prefix.clone();
        b.push(header);
        b.extend(HUGE);
        b.extend([1, 2, 3]);
        malformed::<TransferChunk>(&b);
    }

    // A map claiming 2^60 entries as the whole message, and an array of 2^60 files.
    let mut map = vec![0xbb];
    map.extend(HUGE);
    map.extend([0x61, b'v', 0x01]);
    for_every_message!(malformed(&map));

    let manifest = encode(&common::manifests().remove(0)).expect("encode");
    let at = manifest
        .windows(6)
        .position(|w| w == b"\x65files")
        .expect("files key")
        + 6;
    let mut b = manifest[..at].to_vec();
    b.push(0x9b);
    b.extend(HUGE);
    malformed::<Manifest>(&b);
}

fn version_of<M: Message + std::fmt::Debug>(bytes: &[u8], found: u16) {
    match decode::<M>(bytes) {
        Err(DecodeError::UnsupportedVersion { kind, found: f }) => {
            assert_eq!((kind, f), (M::KIND, found));
        }
        other => panic!(
            "{}: expected UnsupportedVersion({found}), got {other:?}",
            M::KIND
        ),
    }
}

#[test]
fn other_versions_are_unsupported_whatever_their_shape() {
    for s in common::all_encoded() {
        for v in [0u16, 2, u16::MAX] {
            // Same shape, other version.
            let mut m = to_value(&s.bytes);
            set(&mut m, "v", int(u64::from(v)));
            let same_shape = cbor(&Value::Map(m));
            // Another shape altogether: v first, v last, fields of other types.
            let other_shape = cbor(&Value::Map(vec![
                (text("v"), int(u64::from(v))),
                (text("recording_id"), int(5)),
                (text("everything"), Value::Array(vec![text("new")])),
            ]));
            let v_last = cbor(&Value::Map(vec![
                (text("body"), Value::Bool(true)),
                (text("v"), int(u64::from(v))),
            ]));
            for bytes in [&same_shape, &other_shape, &v_last] {
                match s.rule {
                    "manifest" => version_of::<Manifest>(bytes, v),
                    "desired-config" => version_of::<DesiredConfig>(bytes, v),
                    "reported-state" => version_of::<ReportedState>(bytes, v),
                    "telemetry" => version_of::<Telemetry>(bytes, v),
                    "job" => version_of::<Job>(bytes, v),
                    "job-reply" => version_of::<JobReply>(bytes, v),
                    "ack" => version_of::<Ack>(bytes, v),
                    "transfer-chunk" => version_of::<TransferChunk>(bytes, v),
                    "enroll-request" => version_of::<EnrollRequest>(bytes, v),
                    "enroll-response" => version_of::<EnrollResponse>(bytes, v),
                    "event" => version_of::<Event>(bytes, v),
                    other => panic!("unknown rule {other}"),
                }
            }
        }
    }
    // Telemetry's fields all have defaults: without `v` it reads as version 0.
    version_of::<Telemetry>(&cbor(&Value::Map(vec![])), 0);
    // Version 1 with a wrong shape is a shape error.
    malformed::<Ack>(&cbor(&Value::Map(vec![(text("v"), int(1))])));
}

#[test]
fn unknown_fields_are_ignored_everywhere() {
    let extra = || Value::Map(vec![(text("new"), Value::Array(vec![int(1), Value::Null]))]);
    // Top level of every message.
    for s in common::all_encoded() {
        let mut m = to_value(&s.bytes);
        m.insert(0, (text("added_in_v1_1"), extra()));
        m.push((text("z_last"), Value::Bytes(vec![1, 2])));
        let bytes = cbor(&Value::Map(m));
        let equal = match s.rule {
            "manifest" => decode::<Manifest>(&bytes).ok() == decode::<Manifest>(&s.bytes).ok(),
            "desired-config" => {
                decode::<DesiredConfig>(&bytes).ok() == decode::<DesiredConfig>(&s.bytes).ok()
            }
            "reported-state" => {
                decode::<ReportedState>(&bytes).ok() == decode::<ReportedState>(&s.bytes).ok()
            }
            "telemetry" => decode::<Telemetry>(&bytes).ok() == decode::<Telemetry>(&s.bytes).ok(),
            "job" => decode::<Job>(&bytes).ok() == decode::<Job>(&s.bytes).ok(),
            "job-reply" => decode::<JobReply>(&bytes).ok() == decode::<JobReply>(&s.bytes).ok(),
            "ack" => decode::<Ack>(&bytes).ok() == decode::<Ack>(&s.bytes).ok(),
            "transfer-chunk" => {
                decode::<TransferChunk>(&bytes).ok() == decode::<TransferChunk>(&s.bytes).ok()
            }
            "enroll-request" => {
                decode::<EnrollRequest>(&bytes).ok() == decode::<EnrollRequest>(&s.bytes).ok()
            }
            "enroll-response" => {
                decode::<EnrollResponse>(&bytes).ok() == decode::<EnrollResponse>(&s.bytes).ok()
            }
            "event" => decode::<Event>(&bytes).ok() == decode::<Event>(&s.bytes).ok(),
            other => panic!("unknown rule {other}"),
        };
        assert!(equal, "{}: an unknown field changed the decoding", s.kind);
    }
    // Inside nested structs and tagged enum bodies.
    for ack in common::acks() {
        let mut m = to_value(&encode(&ack).expect("encode"));
        let Some((_, Value::Map(body))) = m.iter_mut().find(|(k, _)| k.as_text() == Some("body"))
        else {
            panic!("ack has a body")
        };
        body.push((text("future"), extra()));
        assert_eq!(decode::<Ack>(&cbor(&Value::Map(m))).expect("decode"), ack);
    }
    let manifest = common::manifests().remove(1);
    let mut m = to_value(&encode(&manifest).expect("encode"));
    let Some((_, Value::Map(caller))) = m.iter_mut().find(|(k, _)| k.as_text() == Some("caller"))
    else {
        panic!("manifest has a caller")
    };
    caller.push((text("future"), extra()));
    assert_eq!(
        decode::<Manifest>(&cbor(&Value::Map(m))).expect("decode"),
        manifest
    );
}

#[test]
fn options_may_be_absent_and_default_structs_may_be_empty() {
    let mut m = to_value(&encode(&common::reported_states().remove(0)).expect("encode"));
    m.retain(|(k, _)| !matches!(k.as_text(), Some("config_version" | "config_error")));
    let state: ReportedState = decode(&cbor(&Value::Map(m))).expect("decode");
    assert_eq!(state, common::reported_states().remove(0));

    let cfg = cbor(&Value::Map(vec![
        (text("v"), int(1)),
        (text("version"), int(3)),
        (text("edge"), Value::Map(vec![])),
    ]));
    let cfg: DesiredConfig = decode(&cfg).expect("decode");
    assert_eq!(cfg, DesiredConfig::new(3, Default::default()));
}

fn no_panic<M: Message>(bytes: &[u8]) {
    let _ = decode::<M>(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for_every_message!(no_panic(&bytes));
    }

    #[test]
    fn mutated_samples_never_panic(idx in any::<prop::sample::Index>(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let samples: Vec<_> = common::all_encoded().into_iter().filter(|s| s.bytes.len() < 8192).collect();
        let mut bytes = idx.get(&samples).bytes.clone();
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        for_every_message!(no_panic(&bytes));
    }
}
