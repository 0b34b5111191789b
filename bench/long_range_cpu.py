#!/usr/bin/env python3
"""Long-range correctness of the CPU reference (issue 17 item 3): the logits of a T-token
sequence computed in one step (`nemotron score`, unchunked) and in chunks of --chunk tokens
(the server's chunked prefill) must be the same, at every position up to T (100K+ for the
issue). Prints the largest |difference| and how many positions are bit-identical.

  python3 bench/long_range_cpu.py --model DIR --tokens 102400 --chunk 4096
A tiny random model keeps this within minutes on a few cores (attention is quadratic in T):
`nemotron synth --config C --out DIR` with C a fixture's config.json whose attention has one
16-wide head (see bench/RESULTS.md for the one measured).
"""
import argparse
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np


def logits(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        info = json.loads(f.read(n))["logits"]
        T, V = info["shape"]
        f.seek(8 + n + info["data_offsets"][0])
        return np.frombuffer(f.read(T * V * 4), dtype="<f4").reshape(T, V)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/nemotron")
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", type=int, default=102400)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=2)
    a = ap.parse_args()
    vocab = json.load(open(os.path.join(a.model, "config.json")))["vocab_size"]
    rng = random.Random(a.seed)
    tmp = tempfile.mkdtemp(prefix="long-range-")
    ids = os.path.join(tmp, "ids.txt")
    with open(ids, "w") as f:
        f.write(",".join(str(rng.randrange(3, vocab)) for _ in range(a.tokens)))
    out = {}
    for name, chunk in (("unchunked", a.tokens), ("chunked", a.chunk)):
        path = os.path.join(tmp, f"{name}.safetensors")
        t0 = time.time()
        p = subprocess.run([a.bin, "score", "--model", a.model, "--ids-file", ids, "--chunk", str(chunk), "--out", path,
                            "--device", "cpu"], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(p.stderr)
        print(f"{name}: {time.time() - t0:.0f} s", flush=True)
        out[name] = logits(path)
    u, c = out["unchunked"], out["chunked"]
    diff = np.abs(u - c)
    same_rows = int(np.sum(np.all(u == c, axis=1)))
    worst = int(np.argmax(diff.max(axis=1)))
    print(json.dumps({"model": a.model, "tokens": a.tokens, "chunk": a.chunk, "max_abs_diff": float(diff.max()),
                      "worst_position": worst, "bit_identical_positions": same_rows,
                      "finite": bool(np.isfinite(u).all() and np.isfinite(c).all()),
                      "logit_rms": float(np.sqrt(np.mean(u.astype(np.float64) ** 2)))}))


if __name__ == "__main__":
    main()
