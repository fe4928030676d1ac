#!/usr/bin/env bash
# Offline recording benchmark: one generated capture of CALLS concurrent G.711 calls, measured in
# one run against `tshark -q -z rtp,streams` and `cp` of the same file. Prints the three goals of
# the speed issue as ratios, and peak RSS:
#   - packets/s of `tapfleet-edge record` on one core (the whole process, finisher thread included,
#     pinned with taskset), writing call.pcap + audio.wav + stats          goal >= 1 M packets/s
#   - tapfleet's speed / tshark's speed (tshark also pinned to one core)  goal >= 10x
#   - tapfleet's time / copy bound, the copy bound being cp's throughput (bytes read + written per
#     second) applied to the bytes tapfleet reads + writes                 goal <= 2x
#
#   benchmarks/record.sh [CALLS=1000] [SECONDS_PER_CALL=20] [WORKDIR=/tmp/tapfleet-bench]
#   benchmarks/record.sh --10k [WORKDIR]     # 10,000 concurrent calls of 10 s (peak RSS, fds)
#   PIN=0 benchmarks/record.sh ...           # do not pin tapfleet (finisher on another core)
#   SYNC=1 benchmarks/record.sh ...          # record --sync: every recording synced, as the service does
#                                            # (default: no sync, like cp)
#
# Every number comes from the same run. The machine should be otherwise idle: wall times of a
# loaded machine are noise. Note: ext4 without a journal skips inodes freed in the last minute
# when creating files, which slows file creation right after a big delete; the output of a run
# is deleted at its end, so wait a minute between runs for comparable numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--10k" ]; then
  calls=10000; secs=10; work=${2:-/tmp/tapfleet-bench}
else
  calls=${1:-1000}; secs=${2:-20}; work=${3:-/tmp/tapfleet-bench}
fi
pin=(taskset -c 0)
[ "${PIN:-1}" = 0 ] && pin=()
sync=()
[ "${SYNC:-0}" = 1 ] && sync=(--sync)
./deploy/install-deps.sh test
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cargo build --release --locked --bins -q -p tapfleet-edge -p tapfleet-callgen
bin=$PWD/target/release
# One open audio.wav per active call, plus at most 4096 open call.pcap files.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((calls + 64)) ]; then
  echo "warning: open file limit $(ulimit -n) < $calls calls + 64" >&2
fi
rm -rf "$work"; mkdir -p "$work"
trap 'rm -rf "$work/out"' EXIT

"$bin/tapfleet-callgen" --out "$work/bench.pcap" --calls "$calls" --concurrency "$calls" --duration "$secs" --seed 1 >/dev/null
in_bytes=$(stat -c %s "$work/bench.pcap")
packets=$(python3 -c "import json;print(json.load(open('$work/bench.truth.json'))['totals']['packets'])")
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
cat "$work/bench.pcap" > /dev/null   # all three read from the page cache

measure() { # name, command...: prints "seconds user sys maxrss_kb"
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/$name.time" "$@" > "$work/$name.out" 2>&1
  cat "$work/$name.time"
}
read -r cp_s _ _ _ < <(measure cp cp "$work/bench.pcap" "$work/copy.pcap")
rm -f "$work/copy.pcap"
read -r tf_s tf_user tf_sys tf_rss < <(measure tapfleet "${pin[@]}" "$bin/tapfleet-edge" record "$work/bench.pcap" --out "$work/out" "${sync[@]}")
recorded=$(head -c 200 "$work/tapfleet.out" | grep -o '^[0-9]* calls recorded' || echo "? calls recorded")
out_bytes=$(du -sb "$work/out" | cut -f1)
read -r ts_s _ _ ts_rss < <(measure tshark taskset -c 0 tshark -q -z rtp,streams -r "$work/bench.pcap")

python3 - "$calls" "$packets" "$in_bytes" "$out_bytes" "$cp_s" "$tf_s" "$tf_user" "$tf_sys" "$tf_rss" "$ts_s" "$ts_rss" "$recorded" "${#pin[@]}" <<'PY'
import sys
calls, packets, inb, outb = map(int, sys.argv[1:5])
cp_s, tf_s, tf_user, tf_sys, tf_rss, ts_s, ts_rss = map(float, sys.argv[5:12])
recorded, pinned = sys.argv[12], sys.argv[13] != "0"
cp_s, tf_s, ts_s = (max(x, 1e-3) for x in (cp_s, tf_s, ts_s))
cp_rate = 2 * inb / cp_s                     # bytes read + written per second by cp
bound = (inb + outb) / cp_rate               # cp's speed applied to tapfleet's bytes in + out
mpps = packets / tf_s / 1e6
x_tshark = ts_s / tf_s
x_bound = tf_s / bound
ok = lambda c: "ok" if c else "MISSED"
print(f"capture: {calls} concurrent calls, {packets} packets, {inb/1e6:.1f} MB; {recorded}, {outb/1e6:.1f} MB written")
print(f"tapfleet record ({'1 core' if pinned else 'unpinned'}): {tf_s:.2f} s wall ({tf_user:.2f} s user, {tf_sys:.2f} s sys), peak RSS {tf_rss/1024:.1f} MB = {tf_rss*1024/calls/1024:.1f} KiB per call")
print(f"tshark rtp,streams (1 core): {ts_s:.2f} s, peak RSS {ts_rss/1024:.1f} MB")
print(f"cp: {cp_s:.2f} s = {cp_rate/1e9:.2f} GB/s read+written; copy bound for tapfleet's bytes: {bound:.2f} s")
print(f"goal 1: {mpps:.3f} M packets/s (goal >= 1)            {ok(mpps >= 1)}")
print(f"goal 2: {x_tshark:.1f}x tshark (goal >= 10x)              {ok(x_tshark >= 10)}")
print(f"goal 3: {x_bound:.2f}x the copy bound (goal <= 2x)        {ok(x_bound <= 2)}")
PY
