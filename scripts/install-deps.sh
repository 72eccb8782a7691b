#!/usr/bin/env bash
# Installs the Debian packages Tern needs to build and test, when any is missing.
# As root it runs apt-get; otherwise it prints the exact command and fails.
#   scripts/install-deps.sh build   # to build and run
#   scripts/install-deps.sh test    # to run every test as well
set -euo pipefail
need=(pkg-config zlib1g-dev libsqlite3-dev libssl-dev libmongoc-dev librabbitmq-dev)
if [ "${1:-build}" = "test" ] || [ "${1:-build}" = "bench" ]; then
  need+=(sip-tester openssl python3 python3-venv rabbitmq-server)
fi
if [ "${1:-build}" = "bench" ]; then
  need+=(kamailio)
fi
missing=()
for package in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
command -v swift >/dev/null || { echo "swift is not on PATH: install the Swift 6.1+ toolchain first" >&2; exit 1; }
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing packages: ${missing[*]}" >&2
  echo "Run: sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing ${missing[*]}"
apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
