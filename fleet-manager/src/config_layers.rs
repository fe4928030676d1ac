//! Config layers, pure: fleet defaults, then named groups (in name order), then the edge's own
//! overrides, each a partial document (JSON object, or TOML converted to one) merged field by
//! field over `EdgeConfig::default()` into the edge's effective [`EdgeConfig`].
//!
//! Merge rules: objects merge key by key; any other value (number, string, list) replaces the
//! lower layer's; `null` means "not set in this layer"; `cache.retention` (a tagged choice) is
//! replaced whole. Every problem is a [`FieldError`] naming the field path, e.g.
//! `cache.high_water_percent: must be between 1 and 100 (is 150)`. No IO here: the store and the
//! API are in [`crate::config_api`].

use serde::Serialize;
use serde_json::{Map, Value};
use tapfleet_schemas::{EdgeConfig, Retention};

/// A partial config: the fields one layer sets.
pub type Doc = Map<String, Value>;

/// Paths replaced whole instead of merged (tagged choices).
const REPLACED_WHOLE: [&str; 1] = ["cache.retention"];

/// The storage target meaning "the edge keeps its recordings".
pub const EDGE_LOCAL: &str = "edge-local";

/// One problem with a config, at a field path (`capture.snaplen`, or `config` for the whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The layers of one edge, lowest first.
#[derive(Debug, Clone, Copy)]
pub struct Layers<'a> {
    pub defaults: &'a Doc,
    /// The groups the edge belongs to, in the order they apply (by name).
    pub groups: &'a [(&'a str, &'a Doc)],
    pub edge: &'a Doc,
}

/// What validation checks against besides the config itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The manager's configured storage targets; empty: not checked.
    pub targets: &'a [String],
}

/// Parses a layer document: a JSON object, or TOML (`[cache]\nhigh_water_percent = 90`).
pub fn parse_doc(text: &str) -> Result<Doc, FieldError> {
    let trimmed = text.trim_start();
    let value: Value = if trimmed.starts_with('{') {
        serde_json::from_str(text).map_err(|e| FieldError::new("config", format!("JSON: {e}")))?
    } else {
        let t: toml::Table = toml::from_str(text)
            .map_err(|e| FieldError::new("config", format!("TOML: {}", e.message())))?;
        serde_json::to_value(t).map_err(|e| FieldError::new("config", e.to_string()))?
    };
    match value {
        Value::Object(m) => Ok(m),
        _ => Err(FieldError::new("config", "must be an object of fields")),
    }
}

fn template() -> Value {
    serde_json::to_value(EdgeConfig::default()).unwrap_or(Value::Null)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Checks a layer's shape: every field exists in `EdgeConfig` and has the right kind of value.
/// (Ranges are checked on the merged result by [`validate`].)
pub fn check_doc(doc: &Doc) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Value::Object(t) = template() {
        check_object(doc, &t, "", &mut errors);
    }
    errors
}

fn check_object(doc: &Doc, template: &Map<String, Value>, prefix: &str, out: &mut Vec<FieldError>) {
    for (k, v) in doc {
        let path = join(prefix, k);
        let Some(t) = template.get(k) else {
            let known: Vec<&str> = template.keys().map(String::as_str).collect();
            out.push(FieldError::new(
                path,
                format!("unknown field (known: {})", known.join(", ")),
            ));
            continue;
        };
        if v.is_null() || t.is_null() || REPLACED_WHOLE.contains(&path.as_str()) {
            continue; // optional fields and tagged choices are checked when deserialized
        }
        match (t, v) {
            (Value::Object(tm), Value::Object(vm)) => check_object(vm, tm, &path, out),
            (Value::Number(_), Value::Number(_))
            | (Value::String(_), Value::String(_))
            | (Value::Bool(_), Value::Bool(_))
            | (Value::Array(_), Value::Array(_)) => {}
            _ => out.push(FieldError::new(
                path,
                format!("must be {}, not {}", kind(t), kind(v)),
            )),
        }
    }
}

/// Merges `overlay` into `base` field by field (see the module doc).
pub fn merge(base: &mut Value, overlay: &Doc, prefix: &str) {
    if !base.is_object() {
        *base = Value::Object(Map::new());
    }
    let Value::Object(b) = base else { return };
    for (k, v) in overlay {
        let path = join(prefix, k);
        match v {
            Value::Null => {}
            Value::Object(o) if !REPLACED_WHOLE.contains(&path.as_str()) => {
                let slot = b.entry(k.clone()).or_insert(Value::Null);
                merge(slot, o, &path);
            }
            other => {
                b.insert(k.clone(), other.clone());
            }
        }
    }
}

/// The effective config of an edge: its layers merged over the defaults, then validated.
pub fn effective(layers: Layers<'_>, ctx: Context<'_>) -> Result<EdgeConfig, Vec<FieldError>> {
    let mut errors = Vec::new();
    for (name, doc) in std::iter::once(("defaults", layers.defaults))
        .chain(layers.groups.iter().copied())
        .chain(std::iter::once(("edge", layers.edge)))
    {
        for mut e in check_doc(doc) {
            e.message = format!("{} (in {name})", e.message);
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut merged = template();
    merge(&mut merged, layers.defaults, "");
    for (_, g) in layers.groups {
        merge(&mut merged, g, "");
    }
    merge(&mut merged, layers.edge, "");
    let cfg: EdgeConfig = serde_path_to_error::deserialize(merged).map_err(|e| {
        let path = e.path().to_string();
        vec![FieldError::new(
            if path == "." {
                "config".to_owned()
            } else {
                path
            },
            e.into_inner().to_string(),
        )]
    })?;
    let errors = validate(&cfg, ctx);
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors)
    }
}

/// Range and consistency checks of a whole config; every error names its field.
pub fn validate(cfg: &EdgeConfig, ctx: Context<'_>) -> Vec<FieldError> {
    let mut out = Vec::new();
    let mut check = |ok: bool, path: &str, msg: String| {
        if !ok {
            out.push(FieldError::new(path, msg));
        }
    };
    let c = &cfg.capture;
    check(
        (256..=262_144).contains(&c.snaplen),
        "capture.snaplen",
        format!("must be between 256 and 262144 (is {})", c.snaplen),
    );
    check(
        (1 << 16..=1 << 34).contains(&c.buffer_bytes),
        "capture.buffer_bytes",
        format!(
            "must be between 65536 and 17179869184 (is {})",
            c.buffer_bytes
        ),
    );
    check(
        (1..=86_400).contains(&c.rtp_timeout_secs),
        "capture.rtp_timeout_secs",
        format!("must be between 1 and 86400 (is {})", c.rtp_timeout_secs),
    );
    check(
        (60..=7 * 86_400).contains(&c.max_call_secs),
        "capture.max_call_secs",
        format!("must be between 60 and 604800 (is {})", c.max_call_secs),
    );
    for (i, name) in c.interfaces.iter().enumerate() {
        check(
            !name.is_empty()
                && name.len() <= 64
                && !name.chars().any(|ch| ch.is_whitespace() || ch.is_control()),
            &format!("capture.interfaces[{i}]"),
            format!("{name:?} is not an interface name"),
        );
    }
    for (field, list) in [
        ("capture.local_networks", &c.local_networks),
        ("capture.trunk_networks", &c.trunk_networks),
    ] {
        for (i, net) in list.iter().enumerate() {
            if let Err(e) = net.parse::<tapfleet_edge::calls::direction::Cidr>() {
                check(false, &format!("{field}[{i}]"), e.to_string());
            }
        }
    }
    if let Some(f) = &c.bpf_filter {
        check(
            f.len() <= 4096 && !f.contains('\0'),
            "capture.bpf_filter",
            "must be at most 4096 bytes of text".to_owned(),
        );
    }
    let k = &cfg.cache;
    check(
        k.capacity_bytes >= 1 << 20,
        "cache.capacity_bytes",
        format!("must be at least 1048576 (is {})", k.capacity_bytes),
    );
    check(
        (1..=100).contains(&k.high_water_percent),
        "cache.high_water_percent",
        format!("must be between 1 and 100 (is {})", k.high_water_percent),
    );
    check(
        k.bandwidth_limit_bps != Some(0),
        "cache.bandwidth_limit_bps",
        "must be more than 0, or absent for no limit".to_owned(),
    );
    for (i, w) in k.upload_windows.iter().enumerate() {
        check(
            w.start_minute < 1440 && w.end_minute <= 1440 && w.start_minute != w.end_minute,
            &format!("cache.upload_windows[{i}]"),
            format!(
                "{}..{} must be two different minutes of the day (0..1440)",
                w.start_minute, w.end_minute
            ),
        );
    }
    if let Retention::KeepDays { days } = k.retention {
        check(
            days >= 1,
            "cache.retention.days",
            "must be at least 1".to_owned(),
        );
    }
    let t = &cfg.storage.target;
    check(
        t == EDGE_LOCAL
            || ctx.targets.is_empty()
            || ctx.targets.contains(t)
            || t.strip_prefix("edge:")
                .is_some_and(|e| tapfleet_schemas::topic::validate_id(e).is_ok()),
        "storage.target",
        format!(
            "{t:?} is not a configured target (targets: {}, {EDGE_LOCAL}, edge:<edge id>)",
            ctx.targets.join(", ")
        ),
    );
    check(
        cfg.telemetry_interval_secs <= 3600,
        "telemetry_interval_secs",
        format!(
            "must be at most 3600 (is {}; 0 = every 10 s)",
            cfg.telemetry_interval_secs
        ),
    );
    out
}

/// Whether a config change needs the edge's capture restarted.
pub fn capture_changed(old: &EdgeConfig, new: &EdgeConfig) -> bool {
    old.capture != new.capture
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: Value) -> Doc {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn eff(d: &Doc, g: &[(&str, &Doc)], e: &Doc) -> Result<EdgeConfig, Vec<FieldError>> {
        effective(
            Layers {
                defaults: d,
                groups: g,
                edge: e,
            },
            Context {
                targets: &["cloud".to_owned(), "archive".to_owned()],
            },
        )
    }

    #[test]
    fn layers_merge_field_by_field_in_order() {
        let d = doc(
            serde_json::json!({"cache": {"high_water_percent": 70, "capacity_bytes": 2_000_000_000u64}, "telemetry_interval_secs": 5}),
        );
        let g1 = doc(
            serde_json::json!({"cache": {"high_water_percent": 75}, "storage": {"target": "archive"}}),
        );
        let g2 = doc(serde_json::json!({"cache": {"retention": {"mode": "keep_days", "days": 7}}}));
        let e = doc(
            serde_json::json!({"cache": {"high_water_percent": 90, "retention": null}, "capture": {"interfaces": ["eth1"]}}),
        );
        let c = eff(&d, &[("a", &g1), ("b", &g2)], &e).expect("valid");
        assert_eq!(c.cache.high_water_percent, 90, "edge wins");
        assert_eq!(c.cache.capacity_bytes, 2_000_000_000, "defaults kept");
        assert_eq!(c.storage.target, "archive", "group over defaults");
        assert_eq!(
            c.cache.retention,
            Retention::KeepDays { days: 7 },
            "null inherits"
        );
        assert_eq!(c.capture.interfaces, vec!["eth1".to_owned()]);
        assert_eq!(c.telemetry_interval_secs, 5);
        assert_eq!(
            c.capture.snaplen, 65535,
            "untouched fields keep the built-in default"
        );
        let empty = Doc::new();
        assert_eq!(eff(&empty, &[], &empty), Ok(EdgeConfig::default()));
    }

    #[test]
    fn errors_name_the_field() {
        let empty = Doc::new();
        let cases = [
            (
                serde_json::json!({"cache": {"high_water_percent": 150}}),
                "cache.high_water_percent: must be between 1 and 100 (is 150)",
            ),
            (
                serde_json::json!({"cache": {"high_water": 0.8}}),
                "cache.high_water: unknown field",
            ),
            (
                serde_json::json!({"capture": {"snaplen": "big"}}),
                "capture.snaplen: must be a number, not a string",
            ),
            (
                serde_json::json!({"capture": {"snaplen": -1}}),
                "capture.snaplen: invalid value",
            ),
            (
                serde_json::json!({"cache": {"retention": {"mode": "forever"}}}),
                "cache.retention.mode: unknown variant",
            ),
            (
                serde_json::json!({"storage": {"target": "nowhere"}}),
                "storage.target: \"nowhere\" is not a configured target",
            ),
            (
                serde_json::json!({"cache": {"upload_windows": [{"start_minute": 10, "end_minute": 2000}]}}),
                "cache.upload_windows[0]:",
            ),
            (
                serde_json::json!({"capture": 3}),
                "capture: must be an object, not a number",
            ),
            (
                serde_json::json!({"capture": {"local_networks": ["10.0.0.0/8", "10.1.0.0/40"]}}),
                "capture.local_networks[1]: \"10.1.0.0/40\": the prefix length must be 0..=32",
            ),
            (
                serde_json::json!({"capture": {"trunk_networks": ["sbc.example.com"]}}),
                "capture.trunk_networks[0]: \"sbc.example.com\" is not an IP address or network",
            ),
        ];
        for (e, want) in cases {
            let errs = eff(&empty, &[], &doc(e.clone())).expect_err("invalid");
            let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
            assert!(
                text.iter().any(|t| t.starts_with(want)),
                "{e}: {text:?} lacks {want:?}"
            );
        }
        let nets = doc(serde_json::json!({"capture": {
            "local_networks": ["10.0.0.0/8", "2001:db8:1::/48"], "trunk_networks": ["10.0.0.254"]}}));
        let ok = eff(&empty, &[], &nets).expect("valid networks");
        assert_eq!(ok.capture.local_networks.len(), 2);
        // The layer is named when the error is in a group.
        let g = doc(serde_json::json!({"bogus": 1}));
        let errs = eff(&empty, &[("nyc", &g)], &empty).expect_err("invalid");
        assert!(errs[0].message.contains("(in nyc)"), "{errs:?}");
    }

    #[test]
    fn toml_and_json_documents_parse() {
        let t = parse_doc("[cache]\nhigh_water_percent = 90\n[capture]\ninterfaces = [\"eth0\"]\n")
            .expect("toml");
        let j = parse_doc(
            r#"{"cache": {"high_water_percent": 90}, "capture": {"interfaces": ["eth0"]}}"#,
        )
        .expect("json");
        assert_eq!(t, j);
        assert!(parse_doc("[1, 2]").is_err());
        assert!(parse_doc("cache = ").is_err());
    }

    #[test]
    fn capture_changes_are_told_apart() {
        let a = EdgeConfig::default();
        let mut b = a.clone();
        b.cache.high_water_percent = 50;
        assert!(!capture_changed(&a, &b));
        b.capture.rtp_timeout_secs = 5;
        assert!(capture_changed(&a, &b));
    }
}
