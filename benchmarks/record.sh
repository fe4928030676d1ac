#!/usr/bin/env bash
# Offline recording benchmark: one generated capture of CALLS concurrent G.711 calls, measured in
# one run against `tshark -q -z rtp,streams` and `cp` of the same file. Prints packets/s, the
# ratios, and peak RSS. tapfleet and tshark are pinned to one core.
#
#   benchmarks/record.sh [CALLS=1000] [SECONDS_PER_CALL=20] [WORKDIR=/tmp/tapfleet-bench]
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-1000}
secs=${2:-20}
work=${3:-/tmp/tapfleet-bench}
./deploy/install-deps.sh test
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cargo build --release --locked --bins -q
bin=$PWD/target/release
rm -rf "$work"; mkdir -p "$work"

"$bin/tapfleet-callgen" --out "$work/bench.pcap" --calls "$calls" --concurrency "$calls" --duration "$secs" --seed 1 >/dev/null
in_bytes=$(stat -c %s "$work/bench.pcap")
packets=$(python3 -c "import json;print(json.load(open('$work/bench.truth.json'))['totals']['packets'])")
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
cat "$work/bench.pcap" > /dev/null   # all three read from the page cache

measure() { # name, command...: prints "seconds maxrss_kb"
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/$name.time" "$@" > "$work/$name.out" 2>&1
  cat "$work/$name.time"
}
read -r cp_s cp_rss < <(measure cp cp "$work/bench.pcap" "$work/copy.pcap")
rm -f "$work/copy.pcap"
read -r tf_s tf_rss < <(measure tapfleet taskset -c 0 "$bin/tapfleet-edge" record "$work/bench.pcap" --out "$work/out")
out_bytes=$(du -sb "$work/out" | cut -f1)
read -r ts_s ts_rss < <(measure tshark taskset -c 0 tshark -q -z rtp,streams -r "$work/bench.pcap")

python3 - "$calls" "$packets" "$in_bytes" "$out_bytes" "$cp_s" "$tf_s" "$tf_rss" "$ts_s" "$ts_rss" <<'PY'
import sys
calls, packets, inb, outb = map(int, sys.argv[1:5])
cp_s, tf_s, tf_rss, ts_s, ts_rss = map(float, sys.argv[5:10])
cp_rate = 2 * inb / max(cp_s, 1e-3)          # bytes read + written per second by cp
bound = (inb + outb) / cp_rate               # cp's speed applied to tapfleet's bytes in + out
print(f"capture: {calls} concurrent calls, {packets} packets, {inb/1e6:.1f} MB; recordings {outb/1e6:.1f} MB")
print(f"tapfleet record (1 core): {tf_s:.2f} s = {packets/tf_s/1e6:.3f} M packets/s, peak RSS {tf_rss/1024:.1f} MB")
print(f"tshark rtp,streams (1 core): {ts_s:.2f} s = {packets/ts_s/1e6:.3f} M packets/s, peak RSS {ts_rss/1024:.1f} MB")
print(f"cp: {cp_s:.2f} s; copy bound for tapfleet's bytes: {bound:.2f} s")
print(f"ratios: tapfleet/tshark speed = {ts_s/tf_s:.1f}x (goal >= 10x); tapfleet time / copy bound = {tf_s/bound:.2f} (goal <= 2)")
PY
