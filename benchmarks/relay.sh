#!/usr/bin/env bash
# Relay benchmark: recordings stored into an edge's local storage by the manager's relay
# (downloads manager -> edge B: `held/`, fsynced, SHA-256 checked by B), on loopback, against
# `cp -r` of the same files in the same run. Edge A holds two sets of recordings (different ids)
# with storage policy `edge-local`; one `copy --to edge:B` job per recording, all submitted at once:
#   1. set 1 from `edge:A`: A uploads each recording into the manager's staging target `_relay`,
#      the relay stores it into B and drops the staging copy (edge to edge, timed);
#   2. set 2: uploaded from A into `cloud` first (not timed), then relayed from `cloud` into B
#      (the relay alone, timed);
#   3. set 2 again (deleted from B first, not timed), one job at a time: the relay of one
#      recording after another (timed: the per-file round trips show).
# Prints for each the time from the jobs' submission to every job done (every file and
# manifest.json cataloged at edge:B), MB/s and the ratio to cp's (and to cp + sync: B fsyncs every
# file before it answers `DownloadStored`); peak RSS (VmHWM) of the manager (with its embedded
# broker) and both edges; checks every file B holds against its source by SHA-256 and that the
# staging folder is empty.
#
#   benchmarks/relay.sh [CALLS=20] [SECONDS_PER_CALL=450] [WORKDIR=/tmp/tapfleet-relay]
#   BUILD=0 (use target/release as it is)  BIN=dir (binaries from dir, nothing built)
#   LOG=info (process logs)  KEEP=1 (keep WORKDIR/run)
#
# ~500 MB per set with the defaults (20 calls of 7.5 min, ~25 MB each), made by `tapfleet-callgen`
# + `tapfleet-edge record` and placed in A's cache folder before A starts (adopted at start,
# service/recover.rs). Each edge runs in its own UTS namespace (`unshare --uts`, root) so each
# enrolls under its own host name. Everything reads from the page cache (cp too). The machine
# should be otherwise idle: run it as `flock /tmp/bench.lock benchmarks/relay.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
calls=${1:-20}; secs=${2:-450}; work=${3:-/tmp/tapfleet-relay}
./deploy/install-deps.sh test >/dev/null
if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  [ "${BUILD:-1}" = 0 ] || cargo build --release --bins -q -p tapfleet-edge -p tapfleet-callgen -p tapfleet-fleet-manager
  bin=$PWD/target/release
fi
token=tapfleet-bench-admin-token-0123456789
rm -rf "$work"; mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ "${KEEP:-0}" = 1 ] || rm -rf "$work"/run "$work/copy"; }
trap cleanup EXIT

api() { # METHOD PATH [JSON]
  curl -fsS -X "$1" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "http://127.0.0.1:$http$2"
}
jq_py() { python3 -c "import json,sys;d=json.load(sys.stdin);$1"; }

# Two sets of recordings (different seeds, so different ids): one per timed phase.
for set in 1 2; do
  "$bin/tapfleet-callgen" --out "$work/bench.pcap" --calls "$calls" --concurrency "$calls" --duration "$secs" --seed $((10 + set)) >/dev/null
  "$bin/tapfleet-edge" record "$work/bench.pcap" --out "$work/recs$set" >/dev/null
  rm -f "$work/bench.pcap"
done
read -r nfiles nbytes < <(manifest_totals "$work/recs1")
nrecs=$(ls "$work/recs1" | wc -l)
empty_pcap "$work/empty.pcap"
cat "$work"/recs1/*/* > /dev/null   # every reader starts from the page cache
start=$(date +%s.%N); cp -r "$work/recs1" "$work/copy"; end=$(date +%s.%N)
cp_s=$(python3 -c "print(max($end - $start, 1e-3))")
rm -rf "$work/copy"; sync
start=$(date +%s.%N); cp -r "$work/recs1" "$work/copy"; sync; end=$(date +%s.%N)
cps_s=$(python3 -c "print(max($end - $start, 1e-3))")
rm -rf "$work/copy"; sync
echo "recordings: 2 x $nrecs ($nfiles files, $(python3 -c "print(f'{$nbytes/1e6:.0f}')") MB per set); cp -r of one set: ${cp_s} s; cp -r + sync: ${cps_s} s"

run=$work/run
mkdir -p "$run"
http=$(free_port); mqtt=$(free_port)
TAPFLEET_API_TOKEN=$token TAPFLEET_ADMIN_PASSWORD=bench-admin-password-1234 RUST_LOG=${LOG:-warn} \
  "$bin/tapfleet-manager" serve --data "$run/manager" --http "127.0.0.1:$http" --mqtt-listen "127.0.0.1:$mqtt" \
  > "$run/manager.log" 2>&1 &
mgr_pid=$!; pids+=("$mgr_pid")
until curl -fs "http://127.0.0.1:$http/healthz" >/dev/null; do sleep 0.1; done

start_edge() { # host data -> pid in $edge_pid
  unshare --uts sh -c "hostname $1 && exec \"\$0\" \"\$@\"" "$bin/tapfleet-edge" run --data "$2" \
    --broker "mqtt://127.0.0.1:$mqtt" --token-file "$run/manager/enroll.token" --replay "$work/empty.pcap" \
    --metrics-listen off --log "${LOG:-warn}" >> "$2.log" 2>&1 &
  edge_pid=$!; pids+=("$edge_pid")
}
edge_id() { # host -> the enrolled edge's id (waits for it)
  local id=""
  for _ in $(seq 300); do
    id=$(api GET /api/v1/edges | jq_py "print(next((e['edge_id'] for e in d['edges'] if e.get('hostname')=='$1' or e['edge_id']=='$1'), ''))")
    [ -n "$id" ] && { echo "$id"; return; }
    sleep 0.1
  done
  echo "edge $1 did not enroll" >&2; exit 1
}
edge_online() { api GET /api/v1/edges | jq_py "print(any(e['edge_id']=='$1' and e['online'] for e in d['edges']))"; }

# Edge A: enrolled with an empty cache, configured `edge-local`, stopped; then the recordings go
# into its cache (hard links: nothing copied) and it starts again and catalogs them.
start_edge bench-a "$run/edge-a"; a_pid=$edge_pid
a=$(edge_id bench-a)
version=$(api PUT "/api/v1/edges/$a/config" '{"storage": {"target": "edge-local"}}' | jq_py "print(d['version'])")
until [ "$(api GET /api/v1/edges | jq_py "print(next((e.get('config_version_reported') for e in d['edges'] if e['edge_id']=='$a'), None))")" = "$version" ]; do sleep 0.1; done
kill "$a_pid"; wait "$a_pid" 2>/dev/null || true
mkdir -p "$run/edge-a/cache/recordings"
cp -al "$work"/recs1/* "$work"/recs2/* "$run/edge-a/cache/recordings/"
start_edge bench-a "$run/edge-a"; a_pid=$edge_pid
start_edge bench-b "$run/edge-b"; b_pid=$edge_pid
b=$(edge_id bench-b)
until [ "$(edge_online "$b")" = True ]; do sleep 0.1; done
until [ "$(api GET /api/v1/recordings | jq_py "print(sum(1 for r in d['recordings'] if any(l['target']=='edge:$a' for l in r.get('manifest_locations', []))))")" -ge $((2 * nrecs)) ]; do
  kill -0 "$a_pid" || { echo "edge A died: $(tail -5 "$run/edge-a.log")"; exit 1; }
  sleep 0.2
done

# Runs one job per recording of set `$1` with the JSON fields `$2`, all submitted at once (or one
# after the other with `$3` = seq), waits until every one is done; prints the seconds taken.
jobs_all() {
  python3 - "$http" "$token" "$work/recs$1" "$2" "${3:-}" <<'PY'
import json, os, sys, time, urllib.request
http, token, recs, body, seq = sys.argv[1:6]
def call(method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{http}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)
def wait(ids):
    pending = set(ids)
    while pending:
        for j in list(pending):
            d = call("GET", f"/api/v1/jobs/{j}")
            if d["state"] == "failed":
                sys.exit(f"job {j} failed: {d}")
            if d["state"] == "done":
                pending.discard(j)
        if time.time() - t0 > 1800:
            sys.exit(f"jobs not done after 30 min: {sorted(pending)}")
        time.sleep(0.01)
t0 = time.time()
rids = sorted(os.listdir(recs))
post = lambda rid: call("POST", "/api/v1/jobs", {"recording_id": rid, **json.loads(body)})["id"]
if seq:
    for rid in rids:
        wait([post(rid)])
else:
    wait([post(rid) for rid in rids])
print(f"{time.time() - t0:.3f}")
PY
}
# Every file of set `$1` B holds against its source, byte for byte by SHA-256 (manifest.json
# included); the staging folder is empty.
check_b() {
python3 - "$work/recs$1" "$run/edge-b/cache/held" "$run/manager/relay" <<'PY'
import hashlib, os, sys
src, held, staging = sys.argv[1:4]
def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
bad = 0
for rid in os.listdir(src):
    for f in os.listdir(os.path.join(src, rid)):
        p = os.path.join(held, rid, f)
        if not os.path.exists(p) or sha(p) != sha(os.path.join(src, rid, f)):
            bad += 1; print(f"MISMATCH {rid}/{f}", file=sys.stderr)
left = [os.path.join(r, f) for r, _, fs in os.walk(staging) for f in fs]
if left:
    bad += 1; print(f"staging not emptied: {left[:3]}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}
# 1. Set 1, edge to edge, timed: A uploads each recording into staging, the relay stores it into B
#    and drops the staging copy.
a2b_s=$(jobs_all 1 "{\"kind\": \"copy\", \"from\": \"edge:$a\", \"to\": \"edge:$b\"}")
check_b 1
# 2. Set 2, the relay alone, timed: A uploads it into `cloud` (not timed), then every recording
#    is relayed from `cloud` into B.
jobs_all 2 "{\"kind\": \"copy\", \"from\": \"edge:$a\", \"to\": \"cloud\"}" >/dev/null
relay_s=$(jobs_all 2 "{\"kind\": \"copy\", \"from\": \"cloud\", \"to\": \"edge:$b\"}")
check_b 2
# 3. Set 2 again, one recording at a time.
jobs_all 2 "{\"kind\": \"delete\", \"from\": \"edge:$b\"}" >/dev/null
for rid in $(ls "$work/recs2"); do
  [ -z "$(find "$run/edge-b/cache/held/$rid" -type f 2>/dev/null)" ] || { echo "B's copy of $rid not deleted"; exit 1; }
done
seq_s=$(jobs_all 2 "{\"kind\": \"copy\", \"from\": \"cloud\", \"to\": \"edge:$b\"}" seq)
check_b 2
m_rss=$(hwm_mb "$mgr_pid"); a_rss=$(hwm_mb "$a_pid"); b_rss=$(hwm_mb "$b_pid")
cpu="manager $(cpu_s "$mgr_pid") s, edge A $(cpu_s "$a_pid") s, edge B $(cpu_s "$b_pid") s"
kill "$a_pid" "$b_pid" "$mgr_pid" 2>/dev/null || true
wait "$a_pid" "$b_pid" "$mgr_pid" 2>/dev/null || true

python3 - "$a2b_s" "$relay_s" "$seq_s" "$cp_s" "$cps_s" "$nbytes" "$m_rss" "$a_rss" "$b_rss" "$cpu" <<'PY'
import sys
a2b, relay, seq, cp_s, cps_s = map(float, sys.argv[1:6])
nbytes = int(sys.argv[6])
m, a, b = map(float, sys.argv[7:10])
cpu = sys.argv[10]
for what, s in (("set 1, edge A -> edge B (upload into staging + relay)", a2b),
                ("set 2, relay alone (cloud -> edge B)", relay),
                ("set 2, relay alone, one recording at a time", seq)):
    print(f"{what}: {nbytes/1e6:.0f} MB in {s:.2f} s = {nbytes/s/1e6:.1f} MB/s = {cp_s / s:.3f}x cp, "
          f"{cps_s / s:.3f}x cp + sync")
print(f"  every file's SHA-256 checked at B after each; CPU time (whole run): {cpu}")
print(f"  peak RSS: manager (embedded broker) {m:.1f} MB; edge A {a:.1f} MB; edge B {b:.1f} MB")
PY
