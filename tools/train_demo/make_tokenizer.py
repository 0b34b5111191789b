#!/usr/bin/env python3
"""Trains the tokenizer of the trained demo model on the corpus (tools/corpus/build_corpus.py).

Nemotron 3's structure (see tools/make_demo_tokenizer.py, which this reuses): ids 0-999
special (<unk> 0, <s> 1, </s> 2, <|im_start|> 10, <|im_end|> 11, <think> 12, </think> 13,
<tool_call> 14 ...), byte b at 1000 + b, merges from 1256 up, the Tekken split regex.

Training text: a deterministic sample of the train split, 64 KiB blocks taken at a fixed
stride from train.prose.txt and train.code.txt (about --sample-mb MiB each), so that the
merges cover dictionary prose, fortunes, documentation and Python code. The BPE trainer
runs single-threaded, which makes the result reproducible.

Usage: python3 tools/train_demo/make_tokenizer.py --corpus CORPUS_DIR --out DIR [--vocab-size 8192]
"""
import argparse
import json
import os
import sys

os.environ.setdefault("RAYON_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import make_demo_tokenizer as mdt  # noqa: E402

BLOCK = 64 * 1024


def sample(path, megabytes):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    want = megabytes * 1024 * 1024
    blocks = max(1, len(text) // BLOCK)
    stride = max(1, blocks * BLOCK // want)
    return [text[i * BLOCK:(i + 1) * BLOCK] for i in range(0, blocks, stride)]


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--sample-mb", type=int, default=12)
    args = ap.parse_args()
    texts = sample(os.path.join(args.corpus, "train.prose.txt"), args.sample_mb)
    texts += sample(os.path.join(args.corpus, "train.code.txt"), args.sample_mb)
    tok = mdt.build_nemotron_tokenizer(texts, args.vocab_size)
    with open(os.path.join(root, "data", "chat_templates", "nemotron3-nano-30b-a3b.chat_template.jinja"),
              encoding="utf-8") as f:
        chat_template = f.read()
    os.makedirs(args.out, exist_ok=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(mdt.tokenizer_config(tok, chat_template), f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {args.out}/tokenizer.json ({tok.get_vocab_size()} tokens), "
          f"trained on {sum(len(t) for t in texts) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
