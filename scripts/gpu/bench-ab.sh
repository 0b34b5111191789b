#!/usr/bin/env bash
# A/B of environment switches in one run: `nemotron bench` on one checkpoint once per setting,
# one after another on the same machine (compare numbers only within one call).
#   bash scripts/gpu/bench-ab.sh MODEL_DIR SETTING [SETTING ...] -- [bench args]
# A SETTING is space-separated VAR=value pairs, or `default` (the environment as it is), e.g.
#   bash scripts/gpu/bench-ab.sh /tmp/model-nano-nvfp4 default NEMOTRON_EXPERT_DOWN=waits \
#     NEMOTRON_MOE_SIDE_STREAM=0 -- --depths 0 --prefill '' --batch 1,8,64
# NEMOTRON: the binary (default build-gpu/nemotron). AB_TIMEOUT: seconds per run (default 300).
# Logs: $OUT (or ./gpu-logs)/ab-N.log per setting, and ab-summary.log with each setting's
# single-stream decode, prefill and batched rows, also printed.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
usage() { echo "usage: bench-ab.sh MODEL_DIR SETTING [SETTING ...] -- [bench args]" >&2; exit 2; }
[ $# -ge 2 ] || usage
model=$1
shift
settings=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  settings+=("$1")
  shift
done
[ $# -gt 0 ] && shift  # the --
[ ${#settings[@]} -ge 1 ] || usage
for s in "${settings[@]}"; do
  [ "$s" = default ] && continue
  for kv in $s; do
    [[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_]*=.*$ ]] || { echo "bench-ab.sh: '$kv' in setting '$s' is not VAR=value" >&2; exit 2; }
  done
done
bin=${NEMOTRON:-build-gpu/nemotron}
[ -x "$bin" ] || command -v "$bin" > /dev/null || { echo "bench-ab.sh: no binary $bin (set NEMOTRON)" >&2; exit 2; }
out="${OUT:-$root/gpu-logs}"
mkdir -p "$out"
summary="$out/ab-summary.log"
: > "$summary"
rc=0
i=0
for s in "${settings[@]}"; do
  i=$((i + 1))
  log="$out/ab-$i.log"
  env_args=()
  [ "$s" = default ] || read -r -a env_args <<< "$s"
  status=0
  env "${env_args[@]}" timeout "${AB_TIMEOUT:-300}" "$bin" bench --model "$model" "$@" > "$log" 2>&1 || status=$?
  [ "$status" = 0 ] || rc=1
  {
    echo "== $i: $s (exit $status)"
    # Single-stream rows (depth, mode, tok/s, ...), prefill rows (tokens, seconds, tok/s, TTFT)
    # and batched rows (B, prefill ms, step ms, tok/s, ...).
    grep -E '^[0-9]+ +(graph|eager) |^ +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+' "$log" || echo "(no result rows; see $log)"
  } | tee -a "$summary"
done
exit $rc
