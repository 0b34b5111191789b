#!/usr/bin/env bash
# Cross build for Linux aarch64 (the DGX Spark's CPU side) on a Debian 12 x86_64 machine, and
# the CPU model and text tests of that build under qemu-user. Installs what it needs
# (idempotent): Debian's cross toolchain, qemu-user, and the arm64 (multiarch) -dev packages of
# the libraries with compiled parts; nlohmann-json and CLI11 are header-only (arch all).
# Configures build-aarch64/ with cmake/toolchains/aarch64-linux-gnu.cmake (CPU code only,
# NEMOTRON_CUDA=OFF), builds everything, and runs through ctest (which starts each test binary
# under qemu-aarch64, CMAKE_CROSSCOMPILING_EMULATOR):
#   the GoogleTest cases of tests/model and tests/text_* (default), or with --all every
#   GoogleTest case that `ctest -LE gpu` runs natively (util, kernels, runtime, cli, server too;
#   ~20 min on 2 cores) but runtime.Speculative.DrawsFollowTheTargetDistribution (a statistical
#   test: 45 s native, past ctest's 900 s timeout under qemu).
# Left out: the Python tests (tests/*/test_*.py: conformance against the Python tokenizers,
# jinja2 and jsonschema, the CLI, the server). They start build-aarch64/nemotron or the grammar
# tool through subprocess, and an aarch64 binary starts that way only with binfmt_misc, which
# containers (CI) lack; ctest's emulator covers the GoogleTest binaries alone.
# --cuda-121a instead compiles the CUDA kernels library alone for the Spark's GB10 (sm_121a)
# with this machine's nvcc, into build-sm121a/ (the .cu code is the same for an aarch64 host);
# not in CI, whose native build compiles them for the default 90a;121a already.
# Usage: bash scripts/cross-aarch64.sh [--all | --cuda-121a] [extra cmake args]
# JOBS=N: build jobs (default nproc); ctest runs nproc tests at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
JOBS=${JOBS:-$(nproc)}

tests='^(model|text_[a-z]+)\.'
skip='\.py\.'
if [ "${1:-}" = "--all" ]; then
  tests='.'
  skip='\.py\.|^runtime\.Speculative\.DrawsFollowTheTargetDistribution$'
  shift
elif [ "${1:-}" = "--cuda-121a" ]; then
  shift
  cmake -S . -B build-sm121a -G Ninja -DCMAKE_BUILD_TYPE=Release -DNEMOTRON_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=121a -DNEMOTRON_WERROR=ON "$@" >/dev/null
  exec cmake --build build-sm121a -j "$JOBS" --target nemotron_cuda
fi

# Host tools (as scripts/install-deps.sh), the cross toolchain and qemu, then the arm64 libraries.
HOST_PACKAGES=(cmake ninja-build ccache pkg-config nlohmann-json3-dev libcli11-dev
  g++-aarch64-linux-gnu qemu-user)
ARM64_PACKAGES=(libpcre2-dev:arm64 libcpp-httplib-dev:arm64 libgtest-dev:arm64 libgmock-dev:arm64
  libbenchmark-dev:arm64)
missing=()
for p in "${HOST_PACKAGES[@]}" "${ARM64_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  # Multiarch packages must match the installed amd64 versions: apt may upgrade a few amd64
  # libraries (zlib, libssl ...) to the versions of the arm64 ones.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

start=$SECONDS
cmake -S . -B build-aarch64 -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchains/aarch64-linux-gnu.cmake" -DNEMOTRON_CUDA=OFF \
  -DNEMOTRON_WERROR=ON "$@" >/dev/null
cmake --build build-aarch64 -j "$JOBS"
built=$SECONDS
ctest --test-dir build-aarch64 --output-on-failure -j "$(nproc)" --timeout 900 -LE gpu \
  -R "$tests" -E "$skip"
echo "aarch64: build $((built - start)) s, tests under qemu $((SECONDS - built)) s"
