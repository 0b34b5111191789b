#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, ASan + UBSan, CPU only, into build-fuzz/) and
# runs one or all of them on their corpus for SECONDS each; exits non-zero when any run
# finds a crash, a leak, a sanitizer report, a timeout or an out-of-memory.
#
#   bash scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]   # e.g. fuzz.sh grammar 600
#   bash scripts/fuzz.sh all SECONDS [libFuzzer flags...]      # every target, one after another
#   bash scripts/fuzz.sh list                                  # the target names
#
# Targets (fuzz/fuzz_<name>.cpp says what each feeds and checks): safetensors config
# quant_config tokenizer_json tokenizer jinja chat_template output_parser grammar request.
# Seeds are fuzz/corpus/<name>/ (read only); what a run learns goes to
# build-fuzz/fuzz-corpus/<name>/ (kept between runs); crashing inputs are written to
# $FUZZ_OUT/<name>/ (default build-fuzz/fuzz-crashes), which is printed. Reproduce one with
# build-fuzz/fuzz/fuzz_<name> FILE. Environment: JOBS (build parallelism), FUZZ_BUILD_DIR,
# FUZZ_OUT, FUZZ_TIMEOUT (seconds per input, default 25), FUZZ_RSS_MB (default 4096),
# FUZZ_FORK=N (libFuzzer's -fork=N: N processes per target).
set -euo pipefail
cd "$(dirname "$0")/.."
ALL_TARGETS=(safetensors config quant_config tokenizer_json tokenizer jinja chat_template output_parser grammar request)

if [ "${1:-}" = list ]; then
  printf '%s\n' "${ALL_TARGETS[@]}"
  exit 0
fi
if [ $# -lt 2 ]; then
  echo "usage: $0 TARGET|all SECONDS [libFuzzer flags...]   (targets: ${ALL_TARGETS[*]})" >&2
  exit 2
fi
what=$1 seconds=$2
shift 2
if [ "$what" = all ]; then
  targets=("${ALL_TARGETS[@]}")
else
  targets=("$what")
  [[ " ${ALL_TARGETS[*]} " == *" $what "* ]] || { echo "unknown target '$what' (targets: ${ALL_TARGETS[*]})" >&2; exit 2; }
fi

# Longest input per target: about twice its largest seed.
max_len() {
  case $1 in
    tokenizer_json | jinja) echo 32768 ;;
    config | quant_config | chat_template) echo 8192 ;;
    safetensors | request) echo 4096 ;;
    *) echo 2048 ;;
  esac
}

BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
OUT=${FUZZ_OUT:-$BUILD/fuzz-crashes}
JOBS=${JOBS:-$(nproc)}
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DNEMOTRON_CUDA=OFF -DNEMOTRON_FUZZ=ON -DNEMOTRON_TESTS=OFF >/dev/null
fi
cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
summary=()
for t in "${targets[@]}"; do
  # Scratch files (the loaders' targets write each input to a checkpoint directory): in memory
  # where /dev/shm is writable, so that those targets are not bound by the disk.
  scratch_root=$BUILD/fuzz-tmp
  [ -d /dev/shm ] && [ -w /dev/shm ] && scratch_root=/dev/shm/nemotron-fuzz-$$
  corpus=$BUILD/fuzz-corpus/$t crashes=$OUT/$t tmp=$scratch_root/$t
  mkdir -p "$corpus" "$crashes" "$tmp"
  dict=$tmp/dict
  case $t in
    tokenizer | output_parser) : >"$dict" ;;  # text, not JSON
    *) cat fuzz/dict/json.dict >"$dict" ;;
  esac
  cat "fuzz/dict/$t.dict" >>"$dict"
  log=$crashes/last-run.log
  extra=()
  [ -n "${FUZZ_FORK:-}" ] && extra+=(-fork="$FUZZ_FORK")
  echo "== fuzz $t: ${seconds}s, -max_len=$(max_len "$t"), crashes go to $crashes/"
  rc=0
  timer=()  # wall and CPU seconds (user + system) of the run, when GNU time is there
  [ -x /usr/bin/time ] && timer=(/usr/bin/time -f "%e %U %S" -o "$crashes/last-run.time")
  TMPDIR=$tmp "${timer[@]}" "$BUILD/fuzz/fuzz_$t" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
    -timeout="${FUZZ_TIMEOUT:-25}" -rss_limit_mb="${FUZZ_RSS_MB:-4096}" -dict="$dict" \
    -artifact_prefix="$crashes/" -print_final_stats=1 "${extra[@]}" "$@" "$corpus" "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  rm -rf "$tmp"
  rmdir "$scratch_root" 2>/dev/null || true
  execs=$(grep -ao 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  # -fork=N prints no final stats: its last "#N: cov: ..." status line counts the executions.
  [ -z "$execs" ] && execs=$(grep -ao '^#[0-9]*: cov:' "$log" | tail -1 | tr -dc '0-9' || true)
  files=$(find "$corpus" -type f | wc -l)
  bytes=$(find "$corpus" -type f -printf "%s\n" | awk "{s += \$1} END {print s + 0}")
  took=$(tail -1 "$crashes/last-run.time" 2>/dev/null | awk '{printf "%.0f s (%.0f CPU s)", $1, $2 + $3}' || true)
  line="$t: ${took:-${seconds}s}, ${execs:-?} executions, corpus $files files ($bytes bytes)"
  if [ "$rc" != 0 ]; then
    grep -E "ERROR: |FUZZ_CHECK|runtime error|Test unit written|SUMMARY" "$log" | head -20 || true
    echo "!! fuzz $t FAILED (exit $rc); log: $log; crashing inputs in $crashes/" >&2
    # The input itself, so that a CI log is enough to reproduce (base64 -d > FILE).
    unit=$(grep -o "Test unit written to .*" "$log" | tail -1 | sed 's/Test unit written to //')
    if [ -n "$unit" ] && [ -f "$unit" ] && [ "$(stat -c %s "$unit")" -le 2048 ]; then
      echo "   input (base64): $(base64 -w0 "$unit")" >&2
    fi
    failed+=("$t")
    line="$line: FAILED (exit $rc)"
  else
    line="$line: ok"
  fi
  echo "   $line"
  summary+=("$line")
done
echo "== fuzz summary (crashes in $OUT/)"
printf '   %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
