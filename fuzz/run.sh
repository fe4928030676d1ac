#!/usr/bin/env bash
# Runs every fuzz target listed as a [[bin]] in fuzz/Cargo.toml for SECONDS each (default 30),
# on the stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the nightly-only sanitizer flags).
# Exits non-zero on the first crash, leak, timeout or build failure; the crashing input is left in
# fuzz/artifacts/<target>/. Installs cargo-fuzz if it is missing. Used by CI.
#
# Usage: fuzz/run.sh [SECONDS]
set -euo pipefail

seconds="${1:-30}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "run.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

# Every [[bin]] name, in file order.
targets=$(awk '
  /^\[\[bin\]\]/ { inbin = 1; next }
  /^\[/ { inbin = 0 }
  inbin && /^name *=/ { gsub(/.*= *"|".*/, ""); print }
' Cargo.toml)

if [ -z "$targets" ]; then
  echo "run.sh: no [[bin]] target in fuzz/Cargo.toml" >&2
  exit 1
fi

export RUSTC_BOOTSTRAP=1
for t in $targets; do
  echo "run.sh: fuzzing $t for ${seconds}s" >&2
  mkdir -p "corpus/$t"
  # Checked-in seeds (if any) start the corpus.
  if [ -d "seeds/$t" ]; then
    cp -n "seeds/$t"/* "corpus/$t"/ 2>/dev/null || true
  fi
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -print_final_stats=1
  echo "run.sh: $t: no crash in ${seconds}s" >&2
done
echo "run.sh: all targets passed" >&2
