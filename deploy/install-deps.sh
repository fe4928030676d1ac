#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages tapfleet needs; packages already present are not fetched.
#   install-deps.sh run       what building and running the product needs (libpcap, libbcg729 for
#                             G.729, libopus for Opus)
#   install-deps.sh test      plus what the tests and benchmarks use (tshark, mosquitto, tcpdump, tcpreplay, iproute2, nftables, sipp, ffmpeg,
#                             chromium + chromium-driver for the dashboard tests, systemd for
#                             systemd-analyze verify of the edge unit)
#   install-deps.sh servers   the storage servers the target tests start (sshd, nginx + WebDAV)
# Packages are installed without starting their system services (a temporary policy-rc.d), so
# sshd, nginx or mosquitto never take ports the product or the tests use.
set -euo pipefail
pkgs=()
case "${1:-run}" in
  run) pkgs=(libpcap-dev libbcg729-dev libopus-dev pkg-config curl ca-certificates) ;;
  test) pkgs=(libpcap-dev libbcg729-dev libopus-dev pkg-config curl ca-certificates tshark mosquitto mosquitto-clients tcpdump tcpreplay iproute2 nftables sip-tester ffmpeg chromium chromium-driver systemd) ;;
  servers) pkgs=(openssh-server openssh-client nginx libnginx-mod-http-dav-ext) ;;
  *) echo "usage: $0 run|test|servers" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
added_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  added_policy=1
fi
status=0
{ $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || status=$?
[ -z "$added_policy" ] || $SUDO rm -f "$policy"
exit "$status"
