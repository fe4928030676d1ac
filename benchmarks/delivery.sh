#!/usr/bin/env bash
# Delivery benchmark: recordings in an edge's cache -> MQTT broker -> manager -> fs target, on
# loopback, against `cp -r` of the same files in the same run. Run twice: through the manager's
# embedded broker (rumqttd) and through mosquitto. Prints, per broker:
#   - the delivery time (start of the enrolled edge with ~1 GB in its cache -> every file stored
#     with its SHA-256 checked by the manager, read from the manager's /metrics) and its speed as a
#     ratio of cp's (median of three copies)                                goal >= 0.15x cp
#     and, beside it, of cp timed after a pause: on a VM whose balloon reports free pages to the
#     host, that is the page state the manager's writes meet (see cp_time below); COLD_PAUSE=s
#   - peak RSS (VmHWM) of the broker (the mosquitto process; for the embedded broker, the manager
#     process that runs it), the manager and the edge                       goal broker < 200 MB
# and checks every stored file's SHA-256 against the source afterwards.
#
#   benchmarks/delivery.sh [CALLS=40] [SECONDS_PER_CALL=450] [WORKDIR=/tmp/tapfleet-delivery]
#   BUILD=0 (use target/release as it is)  LOG=info (process logs)  KEEP=1 (keep WORKDIR/run-*)
#   ONLY=embedded|mosquitto (run one broker only, while iterating)
#
# The recordings (~1 GB with the defaults: 40 calls of 7.5 min, ~25 MB each) are made by
# `tapfleet-callgen` + `tapfleet-edge record`, then placed in the edge's cache folder before it
# starts: the edge adopts whole recording folders at start (service/recover.rs) and delivers
# them as it would its own. Everything reads from the page cache (cp too). The machine should be
# otherwise idle.
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
calls=${1:-40}; secs=${2:-450}; work=${3:-/tmp/tapfleet-delivery}
./deploy/install-deps.sh test >/dev/null
[ "${BUILD:-1}" = 0 ] || cargo build --release --bins -q -p tapfleet-edge -p tapfleet-callgen -p tapfleet-fleet-manager
bin=$PWD/target/release
token=tapfleet-bench-admin-token-0123456789
rm -rf "$work"; mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ "${KEEP:-0}" = 1 ] || rm -rf "$work"/run-* "$work/copy"; }
trap cleanup EXIT


"$bin/tapfleet-callgen" --out "$work/bench.pcap" --calls "$calls" --concurrency "$calls" --duration "$secs" --seed 7 >/dev/null
"$bin/tapfleet-edge" record "$work/bench.pcap" --out "$work/recs" >/dev/null
rm -f "$work/bench.pcap"
read -r nfiles nbytes < <(manifest_totals "$work/recs")
nrecs=$(ls "$work/recs" | wc -l)
empty_pcap "$work/empty.pcap"
cat "$work"/recs/*/* > /dev/null   # every reader starts from the page cache
# cp's time varies by tens of percent from one copy to the next: the median of three.
cp_time() { # [sync]: seconds of one `cp -r` (then sync, if asked) of the recordings
  local start end
  start=$(date +%s.%N); cp -r "$work/recs" "$work/copy"; [ -z "${1:-}" ] || sync; end=$(date +%s.%N)
  rm -rf "$work/copy"; sync
  python3 -c "print(max($end - $start, 1e-3))"
}
median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
cp_all=("$(cp_time)" "$(cp_time)" "$(cp_time)")
cp_s=$(median3 "${cp_all[@]}")
# On a VM whose balloon reports free pages to the host (virtio_balloon page reporting: seen here),
# memory freed a few seconds ago is no longer backed, and writing new page cache into it costs
# several times more (measured on such a VM: 1 GB `cp` 0.27 s right after the previous copy was
# deleted, 1.2 s after a 5 s pause). The copies above reuse the pages the previous copy just
# freed; the manager's writes, seconds later, do not. So cp is also timed after a pause, on the
# same kind of pages the delivery writes into (printed beside the goal's plain cp).
cpc_all=()
for _ in 1 2 3; do sleep "${COLD_PAUSE:-6}"; cpc_all+=("$(cp_time)"); done
cpc_s=$(median3 "${cpc_all[@]}")
# The manager fsyncs every file before it answers Stored (the edge may then delete its copy):
# cp followed by sync is the like-for-like reference, printed beside the goal's plain cp.
cps_all=("$(cp_time sync)" "$(cp_time sync)" "$(cp_time sync)")
cps_s=$(median3 "${cps_all[@]}")
echo "recordings: $nrecs ($nfiles files, $(python3 -c "print(f'{$nbytes/1e6:.0f}')") MB); cp -r: median ${cp_s} s of ${cp_all[*]}; cp -r after a ${COLD_PAUSE:-6} s pause: median ${cpc_s} s of ${cpc_all[*]}; cp -r + sync: median ${cps_s} s of ${cps_all[*]}"

run() { # broker kind: embedded | mosquitto
  local kind=$1 run=$work/run-$1 http mqtt broker_pid mgr_pid edge_pid
  mkdir -p "$run"
  http=$(free_port); mqtt=$(free_port)
  local args=(serve --data "$run/manager" --http "127.0.0.1:$http")
  if [ "$kind" = mosquitto ]; then
    printf 'listener %s 127.0.0.1\nset_tcp_nodelay true\nallow_anonymous true\npersistence false\nmax_queued_messages 10000\n' "$mqtt" > "$run/mosquitto.conf"
    mosquitto -c "$run/mosquitto.conf" > "$run/mosquitto.log" 2>&1 &
    broker_pid=$!; pids+=("$broker_pid")
    until (exec 3<>"/dev/tcp/127.0.0.1/$mqtt") 2>/dev/null; do sleep 0.1; done
    args+=(--broker "mqtt://127.0.0.1:$mqtt")
  else
    args+=(--mqtt-listen "127.0.0.1:$mqtt")
  fi
  TAPFLEET_API_TOKEN=$token TAPFLEET_ADMIN_PASSWORD=bench-admin-password-1234 RUST_LOG=${LOG:-warn} \
    "$bin/tapfleet-manager" "${args[@]}" > "$run/manager.log" 2>&1 &
  mgr_pid=$!; pids+=("$mgr_pid")
  [ "$kind" = embedded ] && broker_pid=$mgr_pid
  until curl -fs "http://127.0.0.1:$http/healthz" >/dev/null; do sleep 0.1; done
  local edge_args=(run --data "$run/edge" --broker "mqtt://127.0.0.1:$mqtt"
    --token-file "$run/manager/enroll.token" --replay "$work/empty.pcap" --metrics-listen off
    --log "${LOG:-warn}")
  # The edge enrolls once (key pair, CSR, certificate: a one-time step of its life, not part of
  # delivering), then stops; it comes back with the backlog, as after an outage.
  "$bin/tapfleet-edge" "${edge_args[@]}" > "$run/edge-enroll.log" 2>&1 &
  edge_pid=$!; pids+=("$edge_pid")
  until [ -s "$run/edge/identity.json" ] && [ -d "$run/edge/cache" ]; do
    kill -0 "$edge_pid" || { echo "edge died: $(tail -5 "$run/edge-enroll.log")"; exit 1; }
    sleep 0.05
  done
  sleep 0.5; kill "$edge_pid"; wait "$edge_pid" 2>/dev/null || true
  # The recordings wait in the edge's cache (hard links: nothing copied, the source stays).
  mkdir -p "$run/edge/cache/recordings"
  cp -al "$work"/recs/* "$run/edge/cache/recordings/"
  local t0 t1
  t0=$(date +%s.%N)
  "$bin/tapfleet-edge" "${edge_args[@]}" > "$run/edge.log" 2>&1 &
  edge_pid=$!; pids+=("$edge_pid")
  while [ "$(metric "$http" transfers_ok_total || echo 0)" -lt "$nfiles" ]; do
    kill -0 "$edge_pid" || { echo "edge died: $(tail -5 "$run/edge.log")"; exit 1; }
    sleep 0.05
  done
  t1=$(date +%s.%N)
  local stored
  stored=$(metric "$http" bytes_stored_total)
  local b_rss m_rss e_rss
  b_rss=$(hwm_mb "$broker_pid"); m_rss=$(hwm_mb "$mgr_pid"); e_rss=$(hwm_mb "$edge_pid")
  local cpu="manager $(cpu_s "$mgr_pid") s, edge $(cpu_s "$edge_pid") s"
  [ "$kind" = mosquitto ] && cpu="$cpu, mosquitto $(cpu_s "$broker_pid") s"
  local failed dup gap
  failed=$(metric "$http" transfers_failed_total); dup=$(metric "$http" chunks_duplicate_total); gap=$(metric "$http" chunks_gap_total)
  kill "$edge_pid" "$mgr_pid" 2>/dev/null || true
  [ "$kind" = mosquitto ] && kill "$broker_pid" 2>/dev/null
  wait "$edge_pid" "$mgr_pid" 2>/dev/null || true
  # Every stored file against its source, byte for byte by SHA-256.
  python3 - "$work/recs" "$run/manager/targets/cloud" <<'PY'
import hashlib, os, sys
src, dst = sys.argv[1], sys.argv[2]
def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
found = {}
for root, _, files in os.walk(dst):
    for f in files:
        found[(os.path.basename(root), f)] = os.path.join(root, f)
bad = 0
for rid in os.listdir(src):
    for f in os.listdir(os.path.join(src, rid)):
        if f == "manifest.json":
            continue
        p = found.get((rid, f))
        if p is None or sha(p) != sha(os.path.join(src, rid, f)):
            bad += 1; print(f"MISMATCH {rid}/{f}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
  python3 - "$kind" "$t0" "$t1" "$cp_s" "$nbytes" "$stored" "$b_rss" "$m_rss" "$e_rss" "$failed" "$dup" "$gap" "$cpu" "$cps_s" "$cpc_s" <<'PY'
import sys
kind = sys.argv[1]
t0, t1, cp_s = map(float, sys.argv[2:5])
nbytes, stored = int(sys.argv[5]), int(sys.argv[6])
b, m, e = map(float, sys.argv[7:10])
failed, dup, gap, cpu = sys.argv[10:14]
cps_s = float(sys.argv[14])
cpc_s = float(sys.argv[15])
s = t1 - t0
x = cp_s / s
ok = lambda c: "ok" if c else "MISSED"
broker = "mosquitto" if kind == "mosquitto" else "embedded rumqttd (manager process)"
print(f"{kind}: {stored/1e6:.0f} MB delivered in {s:.2f} s = {stored/s/1e6:.1f} MB/s, SHA-256 checked; "
      f"transfers failed {failed}, duplicate chunks {dup}, gap chunks {gap}")
print(f"  speed: {x:.3f}x cp (goal >= 0.15x)   {ok(x >= 0.15)}; {cpc_s / s:.3f}x cp after a pause (same page state); {cps_s / s:.3f}x cp + sync")
print(f"  CPU time: {cpu}")
print(f"  peak RSS: broker {broker} {b:.1f} MB (goal < 200 MB) {ok(b < 200)}; manager {m:.1f} MB; edge {e:.1f} MB")
PY
  # Checked: free its ~1 GB now, so that the next run starts from the same memory as this one.
  [ "${KEEP:-0}" = 1 ] || { rm -rf "$run"; sync; }
}
if [ "${ONLY:-embedded}" = embedded ]; then run embedded; fi
if [ "${ONLY:-mosquitto}" = mosquitto ]; then run mosquitto; fi
