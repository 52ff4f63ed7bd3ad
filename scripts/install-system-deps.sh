#!/usr/bin/env bash
# Install the Debian packages tokenwave uses (list: tokenwave/sysdeps.py). As root it runs apt-get;
# otherwise it prints the exact command and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=$(python3 -c "import sys; sys.path.insert(0, '.'); from tokenwave.sysdeps import DEBIAN_PACKAGES; print(' '.join(DEBIAN_PACKAGES))")
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing Debian packages:$missing" >&2
  echo "fix: run  sudo apt-get update && sudo apt-get install -y$missing  then run make again" >&2
  exit 1
fi
echo "installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
