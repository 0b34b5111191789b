#!/usr/bin/env bash
# Runs ON the GPU machine (through the `run` tool, carry: [".gpudeps"]), from the repo root:
#   bash scripts/gpu/sanitize-gpu.sh [memcheck|racecheck|all] [gtest filter] [--no-build]
# Builds the GPU test binary (build-gpu/tests/nemotron_cuda_tests, as run-tests.sh
# --build-tests does: sm_90a, Release, -lineinfo) and runs it under compute-sanitizer:
#   memcheck  (--leak-check full): out-of-bounds and misaligned device accesses, invalid
#             frees, device-side leaks, CUDA API errors;
#   racecheck (--racecheck-report analysis): shared-memory data races.
# The default filters keep one call under the device tool's 10 minutes: memcheck over the
# kernel tests (each op against its CPU reference), racecheck over the kernels that share
# data through shared memory or a thread-block cluster; pass a gtest filter to choose others
# (the whole-model tests are slow under the sanitizer: run them as separate calls).
# MEMCHECK_TIMEOUT / RACECHECK_TIMEOUT (seconds, default 240 / 180) bound each run.
# Logs go to $OUT (or ./gpu-logs): sanitize-summary.log, memcheck.log, racecheck.log (the
# sanitizer's reports), memcheck-tests.log, racecheck-tests.log (the tests' output).
# Exit status: non-zero when a run reports an error, a test fails, or a run times out.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out="${OUT:-$root/gpu-logs}"
mkdir -p "$out"
tool=all
filter=""
build=1
for a in "$@"; do
  case "$a" in
    memcheck | racecheck | all) tool="$a" ;;
    --no-build) build=0 ;;
    *) filter="$a" ;;
  esac
done
log="$out/sanitize-summary.log"
say() { echo "== $*" | tee -a "$log"; }

kernel_tests="LinearCuda.*:LinearRelu2Cuda.*:NormCuda.*:AttentionCuda.*:MambaCuda.*:MambaDecodeFused.*:MambaPrefill.*"
kernel_tests+=":MoeCuda.*:MoeBatch.*:MoeGrouped.*:GateLogitsCuda.*:SampleCuda.*:TokenMaskCuda.*"
shared_memory_tests="NormCuda.*:AttentionCuda.*:MambaDecodeFused.*:MambaPrefill.*:SampleCuda.*:TokenMaskCuda.*"

if [ "$build" = 1 ]; then
  bash scripts/gpu/run-tests.sh --build-tests || { say "build FAILED (see $out/build.log)"; exit 1; }
fi
# run-tests.sh unpacked the dependency packages here; the test binary links their libraries.
export LD_LIBRARY_PATH="/tmp/gpudeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin=build-gpu/tests/nemotron_cuda_tests
[ -x "$bin" ] || { say "$bin not built"; exit 1; }
cs=$(command -v compute-sanitizer || true)
[ -z "$cs" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && cs=/usr/local/cuda/bin/compute-sanitizer
[ -z "$cs" ] && { say "compute-sanitizer not found"; exit 1; }
"$cs" --version 2>&1 | tail -1 | tee -a "$log"

rc=0
run_tool() {  # name, default filter, timeout, sanitizer flags...
  local name=$1 f=${filter:-$2} limit=$3
  shift 3
  say "$name: --gtest_filter=$f (timeout ${limit}s)"
  local t0=$(date +%s) status=0
  timeout "$limit" "$cs" --tool "$name" --error-exitcode 99 --print-limit 200 --log-file "$out/$name.log" "$@" \
    "$bin" --gtest_filter="$f" > "$out/$name-tests.log" 2>&1 || status=$?
  local errors
  errors=$(grep -Eo "ERROR SUMMARY: [0-9]+ error" "$out/$name.log" | tail -1)
  say "$name: exit $status, ${errors:-no summary}, $(grep -E '^\[  (PASSED|FAILED)' "$out/$name-tests.log" | tr '\n' ' ')$(( $(date +%s) - t0 )) s"
  [ "$status" = 124 ] && say "$name: TIMED OUT (raise ${name^^}_TIMEOUT or narrow the filter)"
  grep -E "^\[  FAILED  \]" "$out/$name-tests.log" | head -20 | tee -a "$log"
  grep -E "^========= (Invalid|Error|Race|Leaked|Program hit|Uninitialized)" "$out/$name.log" | sort | uniq -c | head -20 | tee -a "$log"
  [ "$status" = 0 ] || rc=1
}
if [ "$tool" = memcheck ] || [ "$tool" = all ]; then
  run_tool memcheck "$kernel_tests" "${MEMCHECK_TIMEOUT:-240}" --leak-check full
fi
if [ "$tool" = racecheck ] || [ "$tool" = all ]; then
  run_tool racecheck "$shared_memory_tests" "${RACECHECK_TIMEOUT:-180}" --racecheck-report analysis
fi
say "rc=$rc"
exit $rc
