#!/usr/bin/env bash
# Runs every tapfleet test on a fresh machine: installs what the tests need, checks formatting and
# lints, builds the binaries, runs unit, integration and end-to-end tests, then gives every fuzz
# target a short run. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n=== %s (%ss)\n' "$*" "$SECONDS" >&2; }

step "system packages"
./deploy/install-deps.sh test

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build binaries"
cargo build --workspace --bins --locked

step "tests"
cargo test --workspace --locked -- --test-threads 2

step "fuzz (short runs)"
./fuzz/run.sh "${FUZZ_SECONDS:-20}"

step "all passed"
