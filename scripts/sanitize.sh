#!/usr/bin/env bash
# Builds the CPU code and tests with ASan + UBSan (NEMOTRON_SANITIZE=ON, CPU only, into
# build-asan/) and runs the CPU test suite, `ctest -LE gpu`, under them. Every sanitizer
# report aborts the process, so a report is a failing test.
#
#   bash scripts/sanitize.sh                 # every CPU test (C++ and Python)
#   bash scripts/sanitize.sh --gtest-only    # the C++ test binaries only (-E '\.py\.')
#   bash scripts/sanitize.sh [ctest args]    # e.g. -R text_grammar
#
# Environment: CXX (default g++; clang++ works too), JOBS (build and test parallelism),
# SANITIZE_BUILD_DIR (default build-asan), SANITIZE_TIMEOUT (seconds per test, default 3600:
# the model tests run several times slower instrumented). The Python tests run the
# instrumented `nemotron` binary (the server, the CLI); Python itself is not instrumented.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${SANITIZE_BUILD_DIR:-build-asan}
JOBS=${JOBS:-$(nproc)}
args=()
for a in "$@"; do
  if [ "$a" = --gtest-only ]; then args+=(-E '\.py\.'); else args+=("$a"); fi
done
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="${CXX:-g++}" \
  -DNEMOTRON_CUDA=OFF -DNEMOTRON_SANITIZE=ON >/dev/null
cmake --build "$BUILD" -j "$JOBS"
# Leaks are reported at exit (LeakSanitizer); halt_on_error makes UBSan reports fatal in
# code built with recovery (the flags say -fno-sanitize-recover=all already).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_init_order=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Timed tests (a stalled stream cancelled within 30 s, ...) stretch their bounds: the
# instrumented server generates several times slower (tests/common/time_scale.h).
export NEMOTRON_TEST_TIME_SCALE=${NEMOTRON_TEST_TIME_SCALE:-4}
ctest --test-dir "$BUILD" --output-on-failure -j "$JOBS" --timeout "${SANITIZE_TIMEOUT:-3600}" -LE gpu "${args[@]}"
