#!/usr/bin/env bash
# Installs everything, builds with warnings as errors, and runs every CPU test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
bash scripts/build.sh -DNEMOTRON_WERROR=ON "$@"
# GPU-labelled tests need a GPU machine: scripts/gpu/run-tests.sh runs them.
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900 -LE gpu
