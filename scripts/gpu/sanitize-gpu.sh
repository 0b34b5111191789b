#!/usr/bin/env bash
# Runs ON the GPU machine (through the `run` tool, carry: [".gpudeps"]), from the repo root:
#   bash scripts/gpu/sanitize-gpu.sh [memcheck|racecheck|all] [gtest filter] [--no-build] [--per-test]
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
# --per-test: one sanitizer process per test of the filter (listed with --gtest_list_tests), each
# bounded by PER_TEST_TIMEOUT (default 120 s), and a line per test in the summary (clean, its
# error count, failed, or timed out): a slow test (racecheck over a 131,072-entry sort takes
# minutes) then costs only its own result, and the others are reported whole. PER_TEST_JOBS
# (default 1) runs that many tests at once (the sanitizer is bound by one CPU core per process).
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
per_test=0
for a in "$@"; do
  case "$a" in
    memcheck | racecheck | all) tool="$a" ;;
    --no-build) build=0 ;;
    --per-test) per_test=1 ;;
    *) filter="$a" ;;
  esac
done
log="$out/sanitize-summary.log"
say() { echo "== $*" | tee -a "$log"; }

kernel_tests="LinearCuda.*:LinearRelu2Cuda.*:NormCuda.*:AttentionCuda.*:MambaCuda.*:MambaDecodeFused.*:MambaPrefill.*"
kernel_tests+=":MoeCuda.*:MoeBatch.*:MoeGrouped.*:GateLogitsCuda.*:SampleCuda.*:TokenMaskCuda.*"
# The sampler's full-size V = 131072 tests take over 500 s each under racecheck:
# SampleCuda.RacecheckSizedV131072 runs the same kernels at that V (both cluster sizes) on few
# rows. The chi-square test draws 10^5 samples (statistics, not shared memory).
shared_memory_tests="NormCuda.*:AttentionCuda.*:AttentionRunsCuda.*:MambaDecodeFused.*:MambaPrefill.*:SampleCuda.*:TokenMaskCuda.*"
shared_memory_tests+="-SampleCuda.MatchesCpuV131072:SampleCuda.RowIndependentOfBatch:SampleCuda.GraphReplayWithNewRows"
shared_memory_tests+=":SampleCuda.ChiSquareOfGpuSamples"

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
# One process per test: name, default filter, sanitizer flags...
run_per_test() {
  local name=$1 f=${filter:-$2} limit=${PER_TEST_TIMEOUT:-120}
  shift 2
  say "$name per test: --gtest_filter=$f (timeout ${limit}s each)"
  local tests suite="" t
  tests=$("$bin" --gtest_filter="$f" --gtest_list_tests | while IFS= read -r line; do
    case "$line" in
      " "*) t="${line#  }"; echo "$suite${t%%  #*}" ;;
      *) suite="${line%%  #*}" ;;
    esac
  done)
  mkdir -p "$out/$name-per-test"
  local jobs=${PER_TEST_JOBS:-1} i=0
  for t in $tests; do
    sanitize_one "$name" "$t" "$limit" "$@" &
    i=$((i + 1))
    [ $((i % jobs)) = 0 ] && wait
  done
  wait
  for t in $tests; do
    local v="$out/$name-per-test/${t//\//_}.verdict"
    say "$name $t: $(cat "$v" 2>/dev/null || echo 'no verdict')"
    grep -q '^clean' "$v" 2>/dev/null || rc=1
  done
}
# One test under the sanitizer; writes its verdict beside its logs (run in the background).
sanitize_one() {  # name, test, timeout, sanitizer flags...
  local name=$1 t=$2 limit=$3
  shift 3
  local t0=$(date +%s) status=0 tlog="$out/$name-per-test/${t//\//_}"
  timeout "$limit" "$cs" --tool "$name" --error-exitcode 99 --print-limit 200 --log-file "$tlog.log" "$@" \
    "$bin" --gtest_filter="$t" > "$tlog.tests.log" 2>&1 || status=$?
  local errors verdict
  errors=$(grep -Eo "ERROR SUMMARY: [0-9]+ error" "$tlog.log" | tail -1)
  case "$status" in
    0) verdict="clean (${errors:-no summary})" ;;
    124) verdict="TIMED OUT" ;;
    99) verdict="ERRORS: ${errors:-see $tlog.log}" ;;
    *) verdict="exit $status (${errors:-no summary}; test failed?)" ;;
  esac
  echo "$verdict, $(( $(date +%s) - t0 )) s" > "$tlog.verdict"
}
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
  if [ "$per_test" = 1 ]; then run_per_test memcheck "$kernel_tests" --leak-check full
  else run_tool memcheck "$kernel_tests" "${MEMCHECK_TIMEOUT:-240}" --leak-check full; fi
fi
if [ "$tool" = racecheck ] || [ "$tool" = all ]; then
  if [ "$per_test" = 1 ]; then run_per_test racecheck "$shared_memory_tests" --racecheck-report analysis
  else run_tool racecheck "$shared_memory_tests" "${RACECHECK_TIMEOUT:-180}" --racecheck-report analysis; fi
fi
say "rc=$rc"
exit $rc
