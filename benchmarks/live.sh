#!/usr/bin/env bash
# Live capture benchmark: tcpreplay plays a generated capture of CALLS G.711 calls, CONCURRENCY at
# once, at PPS packets/s into one end of a veth pair; `tapfleet-edge record --interface` captures the other end,
# inside its own network namespace (no other traffic), and records every call. Prints what tcpreplay
# sent and its real rate, what the kernel handed to the capture, what it dropped (ps_drop, ps_ifdrop:
# the goal is none at 200,000 packets/s), the calls recorded and the edge's CPU time.
#
#   benchmarks/live.sh [PPS=200000] [CALLS=1100] [CONCURRENCY=1000] [SECONDS_PER_CALL=40] [WORKDIR=...]
#
# The default capture is 1,000 concurrent calls of 40 s (100,000 packets/s of RTP) played twice as
# fast: 4.4 M packets, about 50 calls ending per second. `record` does not sync recordings (no
# --sync), so this measures the capture and the recorder, not the disk's sync latency.
# Needs root (network namespace, veth, live capture) and tcpreplay (deploy/install-deps.sh test).
# tcpreplay paces by busy-waiting on one core: on a 2-core machine the edge has the other one.
set -euo pipefail
cd "$(dirname "$0")/.."
pps=${1:-200000}; calls=${2:-1100}; conc=${3:-1000}; secs=${4:-40}; work=${5:-/tmp/tapfleet-live-bench}
./deploy/install-deps.sh test
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cargo build --release --locked --bins -q -p tapfleet-edge -p tapfleet-callgen
bin=$PWD/target/release
ns=tfbench$$
rm -rf "$work"; mkdir -p "$work"
cleanup() {
  [ -n "${edge:-}" ] && kill "$edge" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  ip link del "tfb$$" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work/out"
}
trap cleanup EXIT

"$bin/tapfleet-callgen" --out "$work/bench.pcap" --calls "$calls" --concurrency "$conc" --duration "$secs" --seed 1 >/dev/null
packets=$(python3 -c "import json;print(json.load(open('$work/bench.truth.json'))['totals']['packets'])")

ip netns add "$ns"
ip link add "tfb$$" type veth peer name "tfc$$" netns "$ns"
ip link set "tfb$$" up
ip netns exec "$ns" ip link set "tfc$$" up
ip netns exec "$ns" /usr/bin/time -f "%e %U %S %M" -o "$work/edge.time" \
  "$bin/tapfleet-edge" record --interface "tfc$$" --out "$work/out" >"$work/edge.out" 2>"$work/edge.err" &
edge=$!
for _ in $(seq 100); do grep -q "capturing on" "$work/edge.err" 2>/dev/null && break; sleep 0.1; done
grep -q "capturing on" "$work/edge.err" || { cat "$work/edge.err"; exit 1; }

tcpreplay --preload-pcap --pps "$pps" -i "tfb$$" "$work/bench.pcap" >"$work/tcpreplay.out" 2>&1
sleep 2
# /usr/bin/time runs the edge as its child: stop the edge itself (SIGTERM: it finishes every call).
pkill -TERM -P "$edge" 2>/dev/null || kill -TERM "$edge"
wait "$edge" || { cat "$work/edge.err"; exit 1; }
edge=

sent=$(grep -o 'Actual: [0-9]* packets' "$work/tcpreplay.out" | grep -o '[0-9]*' || echo 0)
rate=$(grep -o 'Rated: [0-9.]* Bps, [0-9.]* Mbps, [0-9.]* pps' "$work/tcpreplay.out" | grep -o '[0-9.]* pps' || echo "? pps")
iface=$(grep "^tfc$$: " "$work/edge.err" | sed "s/^tfc$$: //")
recorded=$(grep -o '^[0-9]* calls recorded' "$work/edge.out" || echo "? calls recorded")
read -r e_s e_user e_sys e_rss < "$work/edge.time"
kdrops=$(sed -n 's/.* delivered, \([0-9]*\) dropped by the kernel, \([0-9]*\) by the interface/\1 \2/p' <<<"$iface")
echo "capture: $packets packets in $calls calls of ${secs}s ($conc at once), replayed at $pps pps requested"
echo "tcpreplay: $sent packets sent, $rate"
echo "edge: $iface"
echo "edge: $recorded (of $calls); CPU ${e_user}s user + ${e_sys}s sys in ${e_s}s; peak RSS $((e_rss / 1024)) MiB"
read -r kd ifd <<<"${kdrops:-? ?}"
reached=$(python3 -c "import sys; print(int(float(sys.argv[1].split()[0]) >= 0.98 * $pps))" "$rate" 2>/dev/null || echo 0)
if [ "$reached" != 1 ]; then
  echo "goal (zero kernel drops at $pps pps): not tested: tcpreplay reached only $rate (busy machine?)"
elif [ "$kd" = 0 ] && [ "$ifd" = 0 ]; then
  echo "goal (zero kernel drops at $pps pps): met"
else
  echo "goal (zero kernel drops at $pps pps): NOT met ($kd kernel, $ifd interface drops)"
fi
