#!/usr/bin/env bash
# Runs ON the GPU machine after scripts/gpu/run-tests.sh configured build-gpu (same call):
# synthesizes a real-shape checkpoint and runs `nemotron bench` on it.
#   bash scripts/gpu/bench-real.sh [nano-nvfp4|nano-mtp-nvfp4|nano-bf16|super-nvfp4] [bench args...]
# (speculation: bash scripts/gpu/bench-real.sh nano-mtp-nvfp4 --speculative-tokens 0,1,2,3
#  --spec-batch 1,8,64 --spec-accept demo)
# The checkpoint goes to $MODEL_ROOT/model-<name> and is kept for later calls. Default: /tmp,
# except Super NVFP4 (~80 GB: more than the 64 GB disk of the GPU machines), which goes to
# /dev/shm (128 GB there: seen on the H100 machine, 2026-12-06) when it has the room, else /tmp
# (Nano BF16 is 63 GB: it fits the disk, barely).
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out="${OUT:-$root/gpu-logs}"
mkdir -p "$out"
which="${1:-nano-nvfp4}"
shift || true
export LD_LIBRARY_PATH="/tmp/gpudeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cmake --build build-gpu -j16 --target nemotron > "$out/build-cli.log" 2>&1 || { tail -30 "$out/build-cli.log"; exit 1; }
cfg=tests/data/configs/nano-30b-a3b.config.json
quant=()
case "$which" in
  nano-nvfp4) quant=(--quant tests/data/configs/nano-30b-a3b.nvfp4.hf_quant_config.json) ;;
  nano-mtp-nvfp4) cfg=tests/data/configs/nano-30b-a3b-mtp.config.json  # Nano with an MTP head ("*E"), for
    quant=(--quant tests/data/configs/nano-30b-a3b.nvfp4.hf_quant_config.json) ;;  # bench --speculative-tokens
  nano-bf16) ;;
  super-nvfp4) cfg=tests/data/configs/super-120b-a12b.config.json; quant=(--layout super-mixed) ;;
  *) echo "unknown model $which"; exit 2 ;;
esac
root_default=/tmp
if [ "$which" = super-nvfp4 ] && [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')" -gt 90000000 ] 2>/dev/null; then
  root_default=/dev/shm
fi
dir="${MODEL_ROOT:-$root_default}/model-$which"
t0=$(date +%s)
[ -f "$dir/config.json" ] || { build-gpu/nemotron synth --config "$cfg" "${quant[@]}" --out "$dir" --quiet 2>&1 | tail -1;
  echo "synth $which: $(( $(date +%s) - t0 )) s, $(du -sh "$dir" | cut -f1)" | tee "$out/synth-$which.log"; }
build-gpu/nemotron bench --model "$dir" "$@" 2>&1 | grep -v "uploading weights" | tee "$out/bench-$which.log"
