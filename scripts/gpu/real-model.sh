#!/usr/bin/env bash
# Runs ON the GPU machine after scripts/gpu/run-tests.sh has configured build-gpu (same call):
# builds the CLI, synthesizes a real-shape checkpoint and decodes on the GPU.
#   bash scripts/gpu/real-model.sh [nano-nvfp4|nano-bf16] [max_tokens]
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out="${OUT:-$root/gpu-logs}"
mkdir -p "$out"
which="${1:-nano-nvfp4}"
n="${2:-64}"
export LD_LIBRARY_PATH="/tmp/gpudeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cmake --build build-gpu -j16 --target nemotron > "$out/build-cli.log" 2>&1 || { tail -30 "$out/build-cli.log"; exit 1; }
cfg=tests/data/configs/nano-30b-a3b.config.json
quant=()
[ "$which" = nano-nvfp4 ] && quant=(--quant tests/data/configs/nano-30b-a3b.nvfp4.hf_quant_config.json)
dir=/tmp/model-$which
[ -f "$dir/config.json" ] || build-gpu/nemotron synth --config "$cfg" "${quant[@]}" --out "$dir" 2>&1 | tail -2
build-gpu/nemotron inspect --model "$dir" --bandwidth 3350 2>&1 | tail -16 | tee "$out/inspect-$which.log"
ids=$(python3 -c "print(','.join(str(1000 + (i * 7919) % 120000) for i in range(32)))")
build-gpu/nemotron generate --model "$dir" --ids "$ids" --max-tokens "$n" --ignore-eos --device cuda 2>&1 | tail -4 | tee "$out/generate-$which.log"
