#!/usr/bin/env bash
# Runs tapfleet on this machine, the embedded default: the fleet manager (with its in-process MQTT
# broker and an fs "cloud" target) and one edge that replays a generated capture of real-looking
# calls. Installs what it needs, builds, starts both, waits until the recordings are stored, says
# where everything is, and keeps running until Ctrl-C.
#
#   deploy/quickstart.sh [CALLS]        (default 8 calls; state in ./.tapfleet-quickstart)
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-8}
home=${TAPFLEET_HOME:-$PWD/.tapfleet-quickstart}
http=127.0.0.1:8080
mqtt=127.0.0.1:1883

./deploy/install-deps.sh run
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust from https://rustup.rs" >&2
  exit 1
fi
echo "building (release)..." >&2
cargo build --release --locked --bins
bin=$PWD/target/release

mkdir -p "$home"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

echo "generating $calls calls into $home/demo.pcap..." >&2
"$bin/tapfleet-callgen" --out "$home/demo.pcap" --calls "$calls" --concurrency 4 --duration 6 --codec mixed --seed 7 >&2

# The dashboard's admin password and an API token for this script, made once and kept (0600).
creds="$home/credentials"
if [ ! -f "$creds" ]; then
  umask 077
  printf 'admin_password=%s\napi_token=%s\n' "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" \
    "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" >"$creds"
  umask 022
fi
admin_password=$(sed -n 's/^admin_password=//p' "$creds")
api_token=$(sed -n 's/^api_token=//p' "$creds")

TAPFLEET_API_TOKEN="$api_token" "$bin/tapfleet-manager" serve --data "$home/manager" \
  --admin-password "$admin_password" >"$home/manager.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS "http://$http/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://$http/healthz" >/dev/null || { echo "the manager did not start: see $home/manager.log" >&2; exit 1; }

"$bin/tapfleet-edge" run --data "$home/edge" --broker "mqtt://$mqtt" \
  --token-file "$home/manager/enroll.token" --replay "$home/demo.pcap" >"$home/edge.log" 2>&1 &
pids+=($!)

echo "waiting for the recordings to reach the cloud target..." >&2
stored=0
for _ in $(seq 600); do
  stored=$(curl -fsS -H "Authorization: Bearer $api_token" "http://$http/api/v1/recordings" 2>/dev/null | grep -o '"state":"stored"' | wc -l || true)
  [ "$stored" -ge "$calls" ] && break
  sleep 0.2
done

cat <<MSG

tapfleet is running (embedded default).
  recordings stored:   $stored of $calls calls
  dashboard:           http://$http/   (user admin, password in $creds)
  fleet manager API:   http://$http/api/v1/recordings   (Authorization: Bearer <api_token from $creds>;
                       OpenAPI: /api/v1/openapi.json, metrics: /metrics)
  MQTT broker:         mqtt://$mqtt (embedded rumqttd)
  cloud target:        $home/manager/targets/cloud/
  edge cache:          $home/edge/cache/recordings/
  logs:                $home/manager.log, $home/edge.log
  record offline:      $bin/tapfleet-edge record FILE.pcap --out DIR

Press Ctrl-C to stop.
MSG
wait
