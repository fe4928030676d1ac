#!/bin/sh
# tapfleet edge installer. The fleet manager serves this script at GET /install.sh with its own
# URL and broker address filled in, so that one command on a site's server installs the edge:
#
#   curl -fsS http://MANAGER:8080/install.sh | sudo sh -s -- --token TOKEN
#   curl -fsS http://MANAGER:8080/install.sh | sudo sh -s -- --token-file /root/enroll.token
#   curl -fsS --cacert ca.pem https://MANAGER:8443/install.sh | sudo sh -s -- --token TOKEN
#
# Over HTTPS (--https-listen), the manager's certificate comes from the fleet CA, so the first
# fetch needs the CA: copy DATA/ca/ca.crt from the manager, or trust on first use:
#   curl -fsSk https://MANAGER:8443/ca.pem -o ca.pem
#   openssl x509 -noout -fingerprint -sha256 -in ca.pem
# and compare with the "fleet CA fingerprint" the manager logs at every start. The script carries
# the CA it was served with and checks every later download (and the broker) against it.
#
# It creates the system user `tapfleet`, downloads the edge binary (SHA-256 checked), the fleet
# CA and the systemd unit from the manager, writes /etc/tapfleet/edge.env (0600, owner tapfleet)
# and starts tapfleet-edge.service, which runs as `tapfleet` with only CAP_NET_RAW and
# CAP_NET_ADMIN and enrolls with the token at its first start.
#
# Options:
#   --token T          claim token (written to /etc/tapfleet/enroll.token, 0600)
#   --token-file F     read the claim token from F instead
#   --broker URL       the broker edges connect to (default: what the manager said, below)
#   --ca FILE          the fleet CA (PEM) to trust; default: the one in this script
#   --interface IF     capture interfaces, comma-separated (default: any)
#   --metrics ADDR     the edge's Prometheus listener (default: 127.0.0.1:9464; `off`)
#   --prefix DIR       install under DIR (DIR/usr/local/bin, DIR/etc, DIR/var/lib); the unit's
#                      paths are rewritten to match and the service is not started
#   --no-start         install and enable nothing; print the command that starts the service
#   --manager URL      the manager to download from (default: the one that served this script)
set -eu

MANAGER_URL='@MANAGER_URL@'
BROKER_URL='@BROKER_URL@'
FLEET_CA_PEM='@CA_PEM@'

token=''
token_file=''
ca_file=''
iface='any'
metrics='127.0.0.1:9464'
prefix=''
start=1

die() {
  echo "tapfleet install: $*" >&2
  exit 1
}

need_arg() {
  [ "$#" -ge 2 ] || die "$1 needs a value"
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --token) need_arg "$@"; token=$2; shift 2 ;;
    --token=*) token=${1#*=}; shift ;;
    --token-file) need_arg "$@"; token_file=$2; shift 2 ;;
    --token-file=*) token_file=${1#*=}; shift ;;
    --broker) need_arg "$@"; BROKER_URL=$2; shift 2 ;;
    --broker=*) BROKER_URL=${1#*=}; shift ;;
    --ca) need_arg "$@"; ca_file=$2; shift 2 ;;
    --ca=*) ca_file=${1#*=}; shift ;;
    --interface) need_arg "$@"; iface=$2; shift 2 ;;
    --interface=*) iface=${1#*=}; shift ;;
    --metrics) need_arg "$@"; metrics=$2; shift 2 ;;
    --metrics=*) metrics=${1#*=}; shift ;;
    --prefix) need_arg "$@"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --manager) need_arg "$@"; MANAGER_URL=$2; shift 2 ;;
    --manager=*) MANAGER_URL=${1#*=}; shift ;;
    --no-start) start=0; shift ;;
    -h | --help)
      echo "usage: install.sh --token T | --token-file F [--broker URL] [--ca FILE] [--interface IF] [--metrics ADDR] [--prefix DIR] [--no-start] [--manager URL]"
      exit 0 ;;
    *) die "unknown option $1 (see the top of this script)" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "run as root: curl -fsS $MANAGER_URL/install.sh | sudo sh -s -- --token T"
if [ -n "$token_file" ]; then
  [ -r "$token_file" ] || die "cannot read the token file $token_file"
  token=$(tr -d ' \t\r\n' <"$token_file")
fi
token=$(printf '%s' "$token" | tr -d ' \t\r\n')
[ -n "$token" ] || die "give the claim token: --token T or --token-file F"
case "$token" in *[!A-Za-z0-9._~+/=_-]*) die "the token has unexpected characters" ;; esac
case "$BROKER_URL" in
  mqtt://* | mqtts://*) ;;
  *) die "--broker must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT], not $BROKER_URL" ;;
esac
case "$BROKER_URL$iface$metrics" in *[!A-Za-z0-9.:/_,\[\]-]*) die "unexpected characters in --broker, --interface or --metrics" ;; esac
if [ -n "$prefix" ]; then
  case "$prefix" in /*) ;; *) die "--prefix must be an absolute path" ;; esac
  case "$prefix" in *[!A-Za-z0-9._/-]*) die "--prefix: use a plain path" ;; esac
  prefix=${prefix%/}
fi

bin_dir=$prefix/usr/local/bin
etc_dir=$prefix/etc/tapfleet
unit_dir=$prefix/etc/systemd/system
data_dir=$prefix/var/lib/tapfleet-edge

fetch() { # URL FILE; https: only the fleet CA is trusted
  if command -v curl >/dev/null 2>&1; then
    case "$1" in
      https://*) curl -fsS --retry 3 --cacert "$tmp/ca.pem" -o "$2" "$1" ;;
      *) curl -fsS --retry 3 -o "$2" "$1" ;;
    esac || die "downloading $1 failed"
  elif command -v wget >/dev/null 2>&1; then
    case "$1" in
      https://*) wget -q --ca-certificate="$tmp/ca.pem" -O "$2" "$1" ;;
      *) wget -q -O "$2" "$1" ;;
    esac || die "downloading $1 failed"
  else
    die "needs curl or wget"
  fi
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    openssl dgst -sha256 -r "$1" | cut -d' ' -f1
  fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# The fleet CA (not a secret): --ca FILE, else the one this script was served with.
if [ -n "$ca_file" ]; then
  cp "$ca_file" "$tmp/ca.pem" || die "cannot read the CA file $ca_file"
elif [ "${FLEET_CA_PEM#-----BEGIN CERTIFICATE-----}" != "$FLEET_CA_PEM" ]; then
  printf '%s\n' "$FLEET_CA_PEM" >"$tmp/ca.pem"
else # this file as in the source tree, not served by a manager
  fetch "$MANAGER_URL/ca.pem" "$tmp/ca.pem"
fi
grep -q 'BEGIN CERTIFICATE' "$tmp/ca.pem" || die "the fleet CA is not a PEM certificate"

# The service's user: a system account without login or home.
if ! id tapfleet >/dev/null 2>&1; then
  if command -v useradd >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /var/lib/tapfleet-edge \
      --shell /usr/sbin/nologin tapfleet
  else
    adduser -S -D -H -h /var/lib/tapfleet-edge -s /sbin/nologin tapfleet
  fi
  echo "created the system user tapfleet" >&2
fi

# The binary, checked against the manager's SHA-256.
fetch "$MANAGER_URL/download/tapfleet-edge" "$tmp/tapfleet-edge"
fetch "$MANAGER_URL/download/tapfleet-edge.sha256" "$tmp/tapfleet-edge.sha256"
want=$(cut -d' ' -f1 <"$tmp/tapfleet-edge.sha256")
got=$(sha256_of "$tmp/tapfleet-edge")
[ -n "$want" ] && [ "$want" = "$got" ] || die "the downloaded binary's SHA-256 $got is not the manager's $want"
mkdir -p "$bin_dir" "$etc_dir" "$unit_dir" "$data_dir"
install -m 0755 "$tmp/tapfleet-edge" "$bin_dir/tapfleet-edge.new"
mv -f "$bin_dir/tapfleet-edge.new" "$bin_dir/tapfleet-edge"

# The fleet CA and the claim token (a secret).
install -m 0644 "$tmp/ca.pem" "$etc_dir/fleet-ca.crt"
umask 077
printf '%s\n' "$token" >"$etc_dir/enroll.token"
chown tapfleet:tapfleet "$etc_dir/enroll.token"
chmod 0600 "$etc_dir/enroll.token"

cat >"$tmp/edge.env" <<EOF
# /etc/tapfleet/edge.env, written by the tapfleet installer from $MANAGER_URL
# (read by tapfleet-edge.service; see deploy/edge.env.example).
TAPFLEET_BROKER=$BROKER_URL
TAPFLEET_CA_FILE=$etc_dir/fleet-ca.crt
TAPFLEET_TOKEN_FILE=$etc_dir/enroll.token
TAPFLEET_INTERFACE=$iface
TAPFLEET_METRICS=$metrics
TAPFLEET_LOG=info
EOF
install -m 0600 -o tapfleet -g tapfleet "$tmp/edge.env" "$etc_dir/edge.env"

# The data folder (systemd's StateDirectory makes it too; a prefix install needs it here).
chown tapfleet:tapfleet "$data_dir"
chmod 0700 "$data_dir"

# The unit, with its paths moved under the prefix.
fetch "$MANAGER_URL/download/tapfleet-edge.service" "$tmp/tapfleet-edge.service"
if [ -n "$prefix" ]; then
  sed -e "s#/usr/local/bin/#$prefix/usr/local/bin/#g" \
    -e "s#/etc/tapfleet/#$prefix/etc/tapfleet/#g" \
    -e "s#--data /var/lib/tapfleet-edge#--data $data_dir#g" \
    "$tmp/tapfleet-edge.service" >"$tmp/unit"
  mv "$tmp/unit" "$tmp/tapfleet-edge.service"
fi
install -m 0644 "$tmp/tapfleet-edge.service" "$unit_dir/tapfleet-edge.service"
echo "installed $bin_dir/tapfleet-edge, $etc_dir/edge.env, $unit_dir/tapfleet-edge.service" >&2

if [ "$start" = 1 ] && [ -z "$prefix" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload
  systemctl enable --now tapfleet-edge.service
  echo "tapfleet-edge is running: journalctl -u tapfleet-edge -f" >&2
else
  echo "start it with: systemctl daemon-reload && systemctl enable --now tapfleet-edge.service" >&2
fi
