#!/usr/bin/env bash
# Installs what nemotron.cpp needs to build and test on Debian 12 (apt + pip). Idempotent.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
APT_PACKAGES=(cmake ninja-build g++ ccache pkg-config nlohmann-json3-dev libcpp-httplib-dev
  libpcre2-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev python3 python3-pip
  json-schema-test-suite clang libclang-rt-14-dev)  # clang + libFuzzer runtime: scripts/fuzz.sh
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "${1:-}" = "--test" ]; then
  # Python packages used only by the tests (reference implementations and clients).
  python3 -m pip install -q --disable-pip-version-check -r "$(dirname "$0")/../tests/requirements.txt"
fi
