//! Enrollment rules, pure: turning an edge's wish (requested id or host name) into a valid,
//! unique edge id, and the secrets the manager issues.

use std::collections::HashSet;

use tapfleet_schemas::topic::{MAX_ID_LEN, validate_id};

/// User names that can never be an edge id (they are the broker's own users).
pub const RESERVED_IDS: [&str; 2] = ["enroll", crate::mqtt::MANAGER_USERNAME];

/// Makes `wish` a valid topic id: lowercase, anything else than `a-z0-9-_` becomes `-`, leading
/// `-`/`_` dropped, cut to leave room for a uniqueness suffix; `edge` when nothing is left.
pub fn sanitize_edge_id(wish: &str) -> String {
    let mapped: String = wish
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches(['-', '_']);
    let mut out: String = trimmed.chars().take(MAX_ID_LEN - 8).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() || validate_id(&out).is_err() {
        "edge".to_owned()
    } else {
        out
    }
}

/// `base`, or `base-2`, `base-3`, ... : the first that is not taken and not reserved.
pub fn unique_edge_id(base: &str, taken: &HashSet<String>) -> String {
    let free = |id: &str| !taken.contains(id) && !RESERVED_IDS.contains(&id);
    if free(base) {
        return base.to_owned();
    }
    (2u64..)
        .map(|n| format!("{base}-{n}"))
        .find(|id| free(id))
        .unwrap_or_else(|| base.to_owned())
}

/// The system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("no randomness: {0}")]
pub struct RandomError(String);

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| RandomError(e.to_string()))?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wishes_become_valid_unique_ids() {
        assert_eq!(sanitize_edge_id("PBX-01.Example.COM"), "pbx-01-example-com");
        assert_eq!(sanitize_edge_id("--__x"), "x");
        assert_eq!(sanitize_edge_id("///"), "edge");
        assert_eq!(sanitize_edge_id(""), "edge");
        assert_eq!(sanitize_edge_id("ü"), "edge");
        let long = sanitize_edge_id(&"a".repeat(200));
        assert!(validate_id(&long).is_ok() && long.len() <= MAX_ID_LEN - 8);
        let taken: HashSet<String> = ["site".to_owned(), "site-2".to_owned()].into();
        assert_eq!(unique_edge_id("site", &taken), "site-3");
        assert_eq!(unique_edge_id("other", &taken), "other");
        assert_eq!(unique_edge_id("enroll", &taken), "enroll-2");
        assert!(validate_id(&unique_edge_id(&long, &[long.clone()].into())).is_ok());
    }
}
