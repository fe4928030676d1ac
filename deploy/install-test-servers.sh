#!/usr/bin/env bash
# Installs the real storage servers the fleet manager's target tests start on loopback:
#   sshd (openssh-server, SFTP), nginx with the WebDAV modules, and s3s-fs (an S3 server on a
#   directory, from crates.io). Idempotent: with everything present it only checks and exits.
# s3s-fs lands in ~/.cargo/bin (or $S3S_FS_ROOT/bin); the tests find it on PATH or there.
set -euo pipefail
S3S_FS_VERSION=0.14.1 # 0.15+ needs rustc 1.96

pkgs=(openssh-server openssh-client nginx libnginx-mod-http-dav-ext)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # A policy-rc.d that denies every start keeps the packages' system services (sshd on :22,
  # nginx on :80) from starting: the tests run their own on loopback ports.
  policy=/usr/sbin/policy-rc.d
  added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    added_policy=1
  fi
  status=0
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  [ -z "$added_policy" ] || $SUDO rm -f "$policy"
  [ "$status" -eq 0 ] || exit "$status"
fi

root=${S3S_FS_ROOT:-$HOME/.cargo}
have=$("$root/bin/s3s-fs" --version 2>/dev/null || true)
if [ "$have" != "s3s-fs $S3S_FS_VERSION" ]; then
  echo "building s3s-fs $S3S_FS_VERSION (crates.io)" >&2
  start=$SECONDS
  # A debug build: half the compile time, and fast enough for tests.
  cargo install s3s-fs --version "$S3S_FS_VERSION" --locked --debug --features binary --root "$root" -q
  echo "s3s-fs built in $((SECONDS - start))s" >&2
fi
