#!/usr/bin/env bash
# Downloads (here, on the development machine) the Debian packages that the GPU machine lacks
# into .gpudeps/ at the repository root. scripts/gpu/run-tests.sh unpacks them there
# (dpkg -x into /tmp/gpudeps, never into /). Pass the folder to `run` with carry: [".gpudeps"].
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dest="$root/.gpudeps"
mkdir -p "$dest"
cd "$dest"
rm -f ./*.deb
pkgs=(nlohmann-json3-dev libcli11-dev
      libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3
      libgtest-dev libgmock-dev googletest
      libbenchmark-dev libbenchmark1debian
      libcpp-httplib-dev libcpp-httplib0.11
      # cpp-httplib.pc requires these (pkg-config checks Requires.private too); the runtime
      # libssl/zlib of the GPU machine's own OS are used, libbrotli1 is unpacked beside.
      libssl-dev zlib1g-dev libbrotli-dev libbrotli1)
apt-get download "${pkgs[@]}"
ls -l "$dest"
du -sh "$dest"
