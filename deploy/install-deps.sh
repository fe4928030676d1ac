#!/usr/bin/env bash
# Installs the system packages tapfleet needs on Debian/Ubuntu.
#   install-deps.sh run    what building and running the product needs (libpcap)
#   install-deps.sh test   plus what the tests use (tshark, mosquitto, tcpdump, sipp)
# Packages already present are not fetched again.
set -euo pipefail
mode=${1:-run}
pkgs=(libpcap-dev pkg-config curl ca-certificates)
if [ "$mode" = test ]; then
  pkgs+=(tshark mosquitto mosquitto-clients tcpdump sip-tester)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
