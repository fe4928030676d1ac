#!/usr/bin/env bash
# Runs every tapfleet test on a fresh machine: installs what the tests need, checks formatting and
# lints, builds the binaries, runs unit, integration and end-to-end tests, then gives every fuzz
# target a short run. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# CI builds from scratch: line tables are enough for backtraces and halve link times; incremental
# compilation only pays off on rebuilds.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
step() { printf '\n=== %s (%ss)\n' "$*" "$SECONDS" >&2; }

step "system packages"
./deploy/install-deps.sh test
# The storage servers (sshd, nginx, s3s-fs built from crates.io) install in the background while
# the workspace is linted and built; the tests wait for them.
servers_log=$(mktemp)
./deploy/install-test-servers.sh >"$servers_log" 2>&1 &
servers_pid=$!

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build binaries"
cargo build --workspace --bins --locked

step "test servers"
if ! wait "$servers_pid"; then
  cat "$servers_log" >&2
  echo "installing the test servers failed" >&2
  exit 1
fi

step "tests"
cargo test --workspace --locked -- --test-threads 2

step "fuzz (short runs)"
./fuzz/run.sh "${FUZZ_SECONDS:-5}"

step "all passed"
