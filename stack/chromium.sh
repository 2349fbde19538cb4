#!/usr/bin/env bash
# Debian's Chromium (package chromium, /usr/bin/chromium), for the integration test that opens
# the MLflow UI headless. Installed once per machine with apt-get (as root, or with sudo when
# there is one); nothing to do when it is there already.
set -euo pipefail
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo -n)
  else
    echo "error: Chromium is missing and this user cannot install it: run 'apt-get install chromium' as root" >&2
    exit 2
  fi
fi
echo "installing Debian's chromium (once per machine) ..."
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; then
  "${as_root[@]}" apt-get update -q >/dev/null
  "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >/dev/null
fi
"$CHROMIUM" --version
