#!/usr/bin/env bash
# Installs everything, builds with warnings as errors, and runs every CPU test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
bash scripts/build.sh -DNEMOTRON_WERROR=ON "$@"
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900
