//! Validates `cddl/tapfleet.cddl` against real encodings: a sample of every message and every
//! enum variant, encoded with `tapfleet_schemas::encode`, must match its CDDL rule, and
//! deliberately broken encodings must not (so the rules really constrain something).

mod common;

use ciborium::Value;

const CDDL: &str = include_str!("../cddl/tapfleet.cddl");

/// The CDDL document with `rule` as its root (the validator starts at the first rule).
fn rooted(rule: &str) -> String {
    format!("root = {rule}\n{CDDL}")
}

/// Validates each of `docs` against `rule` (parsing the CDDL once: parsing is the slow part).
fn validate_all(rule: &str, docs: &[&[u8]]) -> Vec<Result<(), String>> {
    use cddl::validator::{Validator, cbor::CBORValidator};
    let source = rooted(rule);
    let ast = cddl::cddl_from_str(&source, true).expect("tapfleet.cddl parses");
    docs.iter()
        .map(|bytes| {
            let value = cddl::validator::cbor_value::decode_cbor(bytes)
                .map_err(|e| format!("not CBOR: {e}"))?;
            CBORValidator::new(&ast, value, None)
                .validate()
                .map_err(|e| e.to_string())
        })
        .collect()
}

fn validate(rule: &str, bytes: &[u8]) -> Result<(), String> {
    validate_all(rule, &[bytes]).remove(0)
}

#[test]
fn the_cddl_file_parses() {
    cddl::cddl_from_str(CDDL, true).expect("tapfleet.cddl parses");
}

#[test]
fn every_sample_matches_its_rule() {
    let samples = common::all_encoded();
    assert!(samples.len() >= 30, "only {} samples", samples.len());
    let docs: Vec<&[u8]> = samples.iter().map(|s| s.bytes.as_slice()).collect();
    // Each sample against the union of all messages...
    for (s, r) in samples.iter().zip(validate_all("tapfleet-message", &docs)) {
        if let Err(e) = r {
            panic!("a {} does not match `tapfleet-message`: {e}", s.kind);
        }
    }
    // ...and against its own rule.
    let mut rules: Vec<&str> = samples.iter().map(|s| s.rule).collect();
    rules.dedup();
    for rule in rules {
        let of_rule: Vec<&[u8]> = samples
            .iter()
            .filter(|s| s.rule == rule)
            .map(|s| s.bytes.as_slice())
            .collect();
        for (i, r) in validate_all(rule, &of_rule).into_iter().enumerate() {
            if let Err(e) = r {
                panic!("sample {i} of `{rule}` does not match: {e}");
            }
        }
    }
}

#[test]
fn every_message_kind_has_a_rule_and_a_header() {
    let mut kinds: Vec<(&str, &str)> = common::all_encoded()
        .iter()
        .map(|s| (s.kind, s.rule))
        .collect();
    kinds.dedup();
    assert_eq!(kinds.len(), 11);
    for (kind, rule) in kinds {
        assert!(
            CDDL.contains(&format!("\n{rule} = {{")),
            "no rule `{rule}` for {kind}"
        );
        assert!(
            CDDL.contains(&format!("; {kind}\n; topic")),
            "no header comment for {kind}"
        );
    }
}

/// Decodes a sample to a generic CBOR value, lets `f` break it, and encodes it again.
fn mutate(bytes: &[u8], f: impl FnOnce(&mut Vec<(Value, Value)>)) -> Vec<u8> {
    let mut v: Value = ciborium::from_reader(bytes).expect("valid CBOR");
    let Value::Map(entries) = &mut v else {
        panic!("a message is a map")
    };
    f(entries);
    let mut out = Vec::new();
    ciborium::into_writer(&v, &mut out).expect("encode to Vec");
    out
}

fn set(entries: &mut [(Value, Value)], key: &str, value: Value) {
    let slot = entries
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some(key))
        .unwrap_or_else(|| panic!("no key {key}"));
    slot.1 = value;
}

fn sample(rule: &str, nth: usize) -> Vec<u8> {
    common::all_encoded()
        .into_iter()
        .filter(|s| s.rule == rule)
        .nth(nth)
        .unwrap_or_else(|| panic!("no sample {nth} of {rule}"))
        .bytes
}

#[test]
fn broken_encodings_do_not_match() {
    let chunk = sample("transfer-chunk", 1);
    let as_array = mutate(&chunk, |m| {
        set(
            m,
            "data",
            Value::Array((0..4).map(|i| Value::Integer(i.into())).collect()),
        )
    });
    assert!(
        validate("transfer-chunk", &as_array).is_err(),
        "data as array accepted"
    );

    let v2 = mutate(&chunk, |m| set(m, "v", Value::Integer(2.into())));
    assert!(validate("transfer-chunk", &v2).is_err(), "v = 2 accepted");

    let too_big = mutate(&chunk, |m| {
        set(
            m,
            "data",
            Value::Bytes(vec![0; tapfleet_schemas::MAX_CHUNK_DATA + 1]),
        )
    });
    assert!(
        validate("transfer-chunk", &too_big).is_err(),
        "oversized data accepted"
    );

    let stored = sample("ack", 4);
    let short_sha = mutate(&stored, |m| {
        let Some((_, Value::Map(body))) = m.iter_mut().find(|(k, _)| k.as_text() == Some("body"))
        else {
            panic!("ack has a body map")
        };
        set(body, "sha256", Value::Bytes(vec![0; 31]));
    });
    assert!(
        validate("ack", &short_sha).is_err(),
        "31-byte sha256 accepted"
    );

    let bad_kind = mutate(&stored, |m| {
        let Some((_, Value::Map(body))) = m.iter_mut().find(|(k, _)| k.as_text() == Some("body"))
        else {
            panic!("ack has a body map")
        };
        set(body, "kind", Value::Text("teleport".to_owned()));
    });
    assert!(
        validate("ack", &bad_kind).is_err(),
        "unknown ack kind accepted"
    );

    let manifest = sample("manifest", 1);
    let no_files = mutate(&manifest, |m| {
        m.retain(|(k, _)| k.as_text() != Some("files"))
    });
    assert!(
        validate("manifest", &no_files).is_err(),
        "manifest without files accepted"
    );

    let bad_reason = mutate(&manifest, |m| {
        set(m, "end_reason", Value::Text("hung_up".to_owned()))
    });
    assert!(
        validate("manifest", &bad_reason).is_err(),
        "unknown end_reason accepted"
    );

    let bad_direction = mutate(&manifest, |m| {
        set(m, "direction", Value::Text("sideways".to_owned()))
    });
    assert!(
        validate("manifest", &bad_direction).is_err(),
        "unknown call direction accepted"
    );
    // A manifest from before `direction` existed is valid and reads as unknown.
    let no_direction = mutate(&manifest, |m| {
        m.retain(|(k, _)| k.as_text() != Some("direction"))
    });
    assert!(validate("manifest", &no_direction).is_ok());
    let old: tapfleet_schemas::Manifest =
        tapfleet_schemas::decode(&no_direction).expect("decodes without direction");
    assert_eq!(old.direction, tapfleet_schemas::CallDirection::Unknown);

    let job = sample("job", 0);
    assert!(
        validate("manifest", &job).is_err(),
        "a job matches `manifest`"
    );
}
