//! Shared by the edge's integration tests: where the shared captures are, and running tshark
//! (required: a test that needs it fails loudly when it is missing).

#![allow(dead_code)] // each test file is its own crate and uses a part of this

use std::path::{Path, PathBuf};
use std::process::Command;

/// `../shared/captures` beside the repository.
pub const CAPTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/captures");

/// Path of a shared capture; panics if it is missing.
pub fn capture(rel: &str) -> PathBuf {
    let p = Path::new(CAPTURES).join(rel);
    assert!(p.is_file(), "test capture {} is missing", p.display());
    p
}

/// Runs tshark and returns its stdout; panics if tshark is missing or fails.
pub fn tshark(args: &[&str]) -> String {
    assert!(
        Path::new("/usr/bin/tshark").exists(),
        "tshark is required for these tests: apt-get install tshark"
    );
    let out = Command::new("/usr/bin/tshark")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tshark: {e}"));
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
