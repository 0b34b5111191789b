#!/usr/bin/env bash
# Packs what the training run needs into .train/ (git-ignored; carried to the GPU machine):
# the corpus splits (xz), the chat data and the tokenizer.
#   bash tools/train_demo/pack.sh CORPUS_DIR TOKENIZER_DIR
set -euo pipefail
corpus="$1"; tokdir="$2"
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/.train"
mkdir -p "$out/tokenizer"
for f in train valid test; do
  for k in prose code; do xz -T2 -6 -c "$corpus/$f.$k.txt" > "$out/$f.$k.txt.xz"; done
done
cp "$corpus/manifest.json" "$out/"
python3 "$root/tools/train_demo/make_chat_data.py" --corpus "$corpus" --split train --out "$out/chat.train.jsonl"
python3 "$root/tools/train_demo/make_chat_data.py" --corpus "$corpus" --split valid --out "$out/chat.valid.jsonl"
xz -T2 -6 -f "$out/chat.train.jsonl" "$out/chat.valid.jsonl"
cp "$tokdir/tokenizer.json" "$tokdir/tokenizer_config.json" "$out/tokenizer/"
du -sh "$out"
