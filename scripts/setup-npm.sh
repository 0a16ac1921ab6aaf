#!/usr/bin/env bash
# Installs the npm packages the tests use (s3rver, the local S3 fake) into build/npm, exactly as
# tools/s3rver/package-lock.json pins them. Idempotent: nothing happens when the lock file is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=build/npm
if [ -x "$dest/node_modules/.bin/s3rver" ] && cmp -s tools/s3rver/package-lock.json "$dest/package-lock.json"; then
  echo "setup-npm: s3rver present"
  exit 0
fi
if ! command -v npm >/dev/null; then  # the machine's Node.js usually brings npm; else Debian's
  echo "setup-npm: installing Debian's npm"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
fi
mkdir -p "$dest"
cp tools/s3rver/package.json tools/s3rver/package-lock.json "$dest/"
(cd "$dest" && npm ci --no-audit --no-fund --loglevel=error)
echo "setup-npm: installed s3rver into $dest"
