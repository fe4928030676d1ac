#!/usr/bin/env bash
# Installs the real storage servers the fleet manager's target tests start on loopback:
#   sshd (openssh-server, SFTP), nginx with the WebDAV modules, and s3s-fs (an S3 server on a
#   directory, from crates.io). Idempotent: with everything present it only checks and exits.
# s3s-fs lands in ~/.cargo/bin (or $S3S_FS_ROOT/bin); the tests find it on PATH or there.
set -euo pipefail
S3S_FS_VERSION=0.14.1 # 0.15+ needs rustc 1.96

"$(dirname "$0")/install-deps.sh" servers

root=${S3S_FS_ROOT:-$HOME/.cargo}
have=$("$root/bin/s3s-fs" --version 2>/dev/null || true)
if [ "$have" != "s3s-fs $S3S_FS_VERSION" ]; then
  echo "building s3s-fs $S3S_FS_VERSION (crates.io)" >&2
  start=$SECONDS
  # A debug build: half the compile time, and fast enough for tests.
  cargo install s3s-fs --version "$S3S_FS_VERSION" --locked --debug --features binary --root "$root" -q
  echo "s3s-fs built in $((SECONDS - start))s" >&2
fi
