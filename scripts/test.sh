#!/usr/bin/env bash
# Installs everything, builds with warnings as errors, runs every CPU test, cross-builds for
# aarch64 and runs the model and text tests of that build under qemu-user, then every fuzz
# target briefly when FUZZ_SECONDS is set (seconds each; build-fuzz/, scripts/fuzz.sh). Off by
# default until a clean run of every target is recorded (wip/fuzz, in progress): a crash the
# fuzzers find in 20 s would fail every CI run.
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
if [ "${FUZZ_SECONDS:-0}" != 0 ]; then
  bash scripts/fuzz.sh all "${FUZZ_SECONDS}"
fi
