#!/usr/bin/env bash
# Installs everything, builds with warnings as errors, runs every CPU test, cross-builds for
# aarch64 and runs the model and text tests of that build under qemu-user, then every fuzz
# target briefly: FUZZ_SECONDS each (default 10; 0 skips; build-fuzz/, scripts/fuzz.sh). Every
# target has run clean for 110 s or more (bench/RESULTS.md), the grammar compiler for 19 CPU
# minutes after its timeout was fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
bash scripts/build.sh -DNEMOTRON_WERROR=ON "$@"
# GPU-labelled tests need a GPU machine: scripts/gpu/run-tests.sh runs them.
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900 -LE gpu
# Linux aarch64 (DGX Spark): cross build of the CPU code, the model and text tests under qemu-user
# (~10-15 min on 2 cores from a cold ccache). CROSS_AARCH64=0 skips it.
if [ "${CROSS_AARCH64:-1}" != 0 ]; then
  bash scripts/cross-aarch64.sh
fi
# Fuzzing smoke run: the seed corpora plus FUZZ_SECONDS of mutations per target (ASan + UBSan).
if [ "${FUZZ_SECONDS:-10}" != 0 ]; then
  bash scripts/fuzz.sh all "${FUZZ_SECONDS:-10}"
fi
