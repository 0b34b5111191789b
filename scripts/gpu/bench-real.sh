#!/usr/bin/env bash
# Runs ON the GPU machine after scripts/gpu/run-tests.sh configured build-gpu (same call):
# synthesizes a real-shape checkpoint and runs `nemotron bench` on it.
#   bash scripts/gpu/bench-real.sh [nano-nvfp4|nano-bf16] [bench args...]
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out="${OUT:-$root/gpu-logs}"
mkdir -p "$out"
which="${1:-nano-nvfp4}"
shift || true
export LD_LIBRARY_PATH="/tmp/gpudeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cmake --build build-gpu -j16 --target nemotron > "$out/build-cli.log" 2>&1 || { tail -30 "$out/build-cli.log"; exit 1; }
quant=()
[ "$which" = nano-nvfp4 ] && quant=(--quant tests/data/configs/nano-30b-a3b.nvfp4.hf_quant_config.json)
dir=/tmp/model-$which
[ -f "$dir/config.json" ] || build-gpu/nemotron synth --config tests/data/configs/nano-30b-a3b.config.json "${quant[@]}" --out "$dir" 2>&1 | tail -1
build-gpu/nemotron bench --model "$dir" "$@" 2>&1 | grep -v "uploading weights" | tee "$out/bench-$which.log"
