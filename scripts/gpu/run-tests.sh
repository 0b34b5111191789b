#!/usr/bin/env bash
# Runs ON the GPU machine (through the `run` tool, carry: [".gpudeps"]), from the repo root:
#   bash scripts/gpu/run-tests.sh [gtest filter] [--cpu] [--no-bench] [--cli-only] [--no-py] [--build-tests]
# (--cli-only: configure and build the nemotron binary alone, for bench-real.sh; no tests;
# --build-tests: build the GPU test binary alone and run nothing, for sanitize-gpu.sh;
# TEST_TIMEOUT=seconds bounds the GPU test binary, default 1200)
# Also builds `nemotron` and runs the GPU Python tests (tests/cuda/test_*.py: the server on the
# GPU through the openai client) unless --no-py; their packages travel as wheels in .whl/
# (carry: [".gpudeps", ".whl"]; scripts/gpu/fetch-wheels.sh downloads them).
# Unpacks the .deb dependencies into /tmp/gpudeps, configures and builds the CUDA build
# (sm_90a) with -j16, runs the GPU tests (ctest -L gpu), the GEMV bandwidth bench, and
# optionally the CPU tests. Logs go to $OUT (or ./gpu-logs without $OUT).
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out="${OUT:-$root/gpu-logs}"
mkdir -p "$out"
filter="*"; run_cpu=0; run_bench=1; cli_only=0; run_py=1; build_tests=0
for a in "$@"; do
  case "$a" in
    --cpu) run_cpu=1 ;;
    --no-bench) run_bench=0 ;;
    --cli-only) cli_only=1 ;;
    --no-py) run_py=0 ;;
    --build-tests) build_tests=1 ;;
    *) filter="$a" ;;
  esac
done
log="$out/summary.log"
say() { echo "== $*" | tee -a "$log"; }

deps=/tmp/gpudeps
for f in .gpudeps/*.deb; do dpkg -x "$f" "$deps" || { say "dpkg -x $f failed"; exit 1; }; done
# The .so symlinks of the -dev packages point to the runtime libraries unpacked beside them.
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PKG_CONFIG_PATH="$deps/usr/lib/x86_64-linux-gnu/pkgconfig:$deps/usr/share/pkgconfig"
# The .pc files say prefix=/usr: the sysroot maps their -I/-L into the unpacked tree.
export PKG_CONFIG_SYSROOT_DIR="$deps"
{ cat /etc/os-release | head -2; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv;
  nvcc --version | tail -1; cmake --version | head -1; g++ --version | head -1; } 2>&1 | tee -a "$log"

bdir=build-gpu
t0=$(date +%s)
cmake -S . -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNEMOTRON_CUDA=ON -DNEMOTRON_WERROR=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DCMAKE_PREFIX_PATH="$deps/usr;$deps/usr/lib/x86_64-linux-gnu/cmake;$deps/usr/share/cmake" \
  -DCMAKE_INCLUDE_PATH="$deps/usr/include" -DCMAKE_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu" \
  -DCMAKE_CXX_FLAGS="-isystem $deps/usr/include" -DCMAKE_CUDA_FLAGS="-isystem $deps/usr/include" \
  > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; say "configure FAILED"; exit 1; }
targets=(nemotron_cuda_tests)
[ "$run_py" = 1 ] && targets+=(nemotron)
[ "$run_bench" = 1 ] && targets+=(bench_gemv_cuda)
[ "$run_cpu" = 1 ] && targets=(all)
[ "$cli_only" = 1 ] && targets=(nemotron)
[ "$build_tests" = 1 ] && targets=(nemotron_cuda_tests)
cmake --build "$bdir" -j16 --target "${targets[@]}" > "$out/build.log" 2>&1 \
  || { grep -E "error|FAILED" "$out/build.log" | head -40; say "build FAILED"; exit 1; }
say "configure+build: $(( $(date +%s) - t0 )) s"
[ "$cli_only" = 1 ] || [ "$build_tests" = 1 ] && exit 0

rc=0
timeout "${TEST_TIMEOUT:-1200}" "$bdir/tests/nemotron_cuda_tests" --gtest_filter="$filter" 2>&1 | tee "$out/gpu-tests.log" | \
  grep -E "^\[  (PASSED|FAILED) |^\[==========\]|FAILED|max_err|error" | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || rc=1
if [ "$run_py" = 1 ]; then
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      > "$out/pip.log" 2>&1 || { tail -5 "$out/pip.log"; say "wheel install FAILED"; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  NEMOTRON_BIN="$root/$bdir/nemotron" NEMOTRON_SOURCE_DIR="$root" PYTHONUNBUFFERED=1 \
    timeout 600 python3 -m pytest -q -p no:cacheprovider tests/cuda 2>&1 | tee "$out/gpu-py-tests.log" | tail -15
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
  say "python GPU tests: $(tail -1 "$out/gpu-py-tests.log")"
fi
if [ "$run_bench" = 1 ] && [ -x "$bdir/bench/bench_gemv_cuda" ]; then
  "$bdir/bench/bench_gemv_cuda" 2>&1 | tee "$out/bench-gemv.log" | tail -40
fi
if [ "$run_cpu" = 1 ]; then
  ctest --test-dir "$bdir" -LE gpu -j16 --output-on-failure > "$out/cpu-tests.log" 2>&1 || rc=1
  tail -5 "$out/cpu-tests.log" | tee -a "$log"
fi
say "rc=$rc"
exit $rc
