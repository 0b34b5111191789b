#!/usr/bin/env python3
"""Drift of a 16-bit SSM state (--mamba-ssm-cache-dtype) against float32, through the CLI.

For each storage (float32; bfloat16 and float16, each with stochastic and nearest rounding):
  * perplexity of the model over --windows windows of --context tokens, every position fed as a
    decode (`nemotron eval --step-tokens 1`: the state is written back, and rounded, after every
    token), on a prose text and a code text;
  * top-1 agreement along the texts: the first --gen tokens of each text teacher-forced
    (`nemotron score --chunk 1`, decode-like): the fraction of positions whose argmax equals the
    float32 model's argmax there;
  * greedy agreement over --gen generated tokens: the float32 model's greedy continuation of a
    prompt (`nemotron generate`, speculation off), then each storage teacher-forced along it
    (`nemotron score --chunk 1`): the fraction of positions whose argmax is the float32 token,
    and, free-running (`generate`), the first token where its own greedy stream leaves the
    float32 one (a small model's greedy stream soon repeats itself: the text agreement above is
    the more telling number).

The texts are files this machine has (no download): Python's standard library for code and the
common licenses / Debian docs for prose, concatenated in a fixed order (see TEXTS). For the demo
model these overlap its training corpus, which does not matter for a difference between two
storages of the same model.

  python3 bench/ssm_state_drift.py --bin build/nemotron --model models/demo --json out.json
"""
import argparse
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

TEXTS = {
    "prose": sorted(glob.glob("/usr/share/common-licenses/*")) + sorted(glob.glob("/usr/share/doc/*/copyright"))[:400],
    "code": [f for n in ("argparse", "typing", "inspect", "subprocess", "pathlib", "dataclasses", "enum",
                         "functools", "collections/__init__", "json/decoder", "json/encoder", "logging/__init__",
                         "textwrap", "tarfile", "zipfile/__init__", "configparser", "email/message", "ast",
                         "difflib", "pickle")
             for f in glob.glob(f"/usr/lib/python3*/{n}.py")],
}

STORAGES = [("float32", "stochastic"), ("bfloat16", "stochastic"), ("bfloat16", "nearest"),
            ("float16", "stochastic"), ("float16", "nearest")]


def run(cmd):
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return p.stdout, time.time() - t0


def read_logits(path):
    """The `logits` F32 [T, V] tensor of a safetensors file (numpy-free argmax per row)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        info = header["logits"]
        T, V = info["shape"]
        f.seek(8 + n + info["data_offsets"][0])
        data = f.read(T * V * 4)
    try:
        import numpy as np
        return list(np.frombuffer(data, dtype="<f4").reshape(T, V).argmax(axis=1))
    except ImportError:
        rows = []
        for t in range(T):
            row = struct.unpack_from(f"<{V}f", data, t * V * 4)
            rows.append(max(range(V), key=row.__getitem__))
        return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/nemotron")
    ap.add_argument("--model", default="models/demo")
    ap.add_argument("--context", type=int, default=8192)
    ap.add_argument("--windows", type=int, default=2, help="windows per text")
    ap.add_argument("--gen", type=int, default=2048)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default="")
    ap.add_argument("--no-ppl", action="store_true", help="skip the perplexity runs (the slow part)")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="ssm-drift-")
    files = {}
    for name, paths in TEXTS.items():
        if not paths:
            sys.exit(f"no {name} text found on this machine ({name}: {TEXTS[name]})")
        path = os.path.join(tmp, f"{name}.txt")
        with open(path, "w", encoding="utf-8", errors="replace") as out:
            for p in paths:
                with open(p, encoding="utf-8", errors="replace") as f:
                    out.write(f.read() + "\n")
        files[name] = path
    tokens = a.windows * a.context
    base = [a.bin]
    results = {"model": a.model, "device": a.device, "context": a.context, "windows": a.windows, "gen": a.gen,
               "texts": {k: len(v) for k, v in TEXTS.items()}, "storages": []}

    # The float32 greedy continuation of the first prompt_tokens ids of the code text.
    out, _ = run(base + ["tokenize", "--tokenizer", a.model, "--text-file", files["code"]])
    ids = json.loads(out)[: a.prompt_tokens]
    gen_cmd = base + ["generate", "--model", a.model, "--ids", ",".join(map(str, ids)), "--max-tokens", str(a.gen),
                      "--ignore-eos", "--json", "--speculative-tokens", "0", "--device", a.device]
    text_ids = {}
    for name, path in files.items():
        out, _ = run(base + ["tokenize", "--tokenizer", a.model, "--text-file", path])
        text_ids[name] = json.loads(out)[: a.gen]
    ref = None
    ref_text = {}
    for dtype, rounding in STORAGES:
        flags = ["--mamba-ssm-cache-dtype", dtype, "--mamba-ssm-rounding", rounding]
        row = {"dtype": dtype, "rounding": rounding if dtype != "float32" else "-"}
        if not a.no_ppl:
            jpath = os.path.join(tmp, f"eval-{dtype}-{rounding}.json")
            _, secs = run(base + ["eval", "--model", a.model, "--text-file", files["prose"], "--text-file",
                                  files["code"], "--max-tokens", str(tokens), "--context", str(a.context),
                                  "--step-tokens", "1", "--mtp-drafts", "0", "--device", a.device, "--json",
                                  jpath] + flags)
            ev = json.load(open(jpath))
            row["ppl"] = {os.path.basename(f["path"]).split(".")[0]: f["perplexity"]["ppl"] for f in ev["files"]}
            row["eval_seconds"] = round(secs, 1)
        lpath = os.path.join(tmp, "logits.safetensors")
        row["text_top1_agreement"] = {}
        for name, tids in text_ids.items():
            run(base + ["score", "--model", a.model, "--ids", ",".join(map(str, tids)), "--chunk", "1", "--out",
                        lpath, "--device", a.device] + flags)
            am = read_logits(lpath)
            ref_text.setdefault(name, am)
            row["text_top1_agreement"][name] = sum(1 for x, y in zip(am, ref_text[name]) if x == y) / len(am)
        out, _ = run(gen_cmd + flags)
        gen = json.loads(out.strip().splitlines()[-1])["ids"]
        if ref is None:
            ref = gen
        first = next((i for i, (x, y) in enumerate(zip(gen, ref)) if x != y), None)
        row["free_running_first_difference"] = first  # None: the whole stream equals float32's
        seq = ids + ref
        run(base + ["score", "--model", a.model, "--ids", ",".join(map(str, seq)), "--chunk", "1", "--out", lpath,
                    "--device", a.device] + flags)
        am = read_logits(lpath)
        # Position len(ids) - 1 + i predicts ref[i].
        agree = sum(1 for i, t in enumerate(ref) if am[len(ids) - 1 + i] == t)
        row["teacher_forced_agreement"] = agree / len(ref)
        os.remove(lpath)
        results["storages"].append(row)
        print(json.dumps(row), flush=True)

    f32 = results["storages"][0].get("ppl", {})
    print(f"\n| SSM state | rounding | prose ppl ({a.windows} x {a.context}, decode) | code ppl | "
          f"top-1 = float32's along the texts (prose / code, {a.gen} positions) | "
          f"greedy agreement ({a.gen} tokens, teacher-forced) | free-running first difference |")
    print("|---|---|---|---|---|---|---|")
    for r in results["storages"]:
        def cell(k):
            if k not in r.get("ppl", {}):
                return "-"
            rel = (r["ppl"][k] / f32[k] - 1) * 100
            return f"{r['ppl'][k]:.4f}" + ("" if r["dtype"] == "float32" else f" ({rel:+.3f}%)")
        ta = r["text_top1_agreement"]
        fd = r["free_running_first_difference"]
        print(f"| {r['dtype']} | {r['rounding']} | {cell('prose')} | {cell('code')} | "
              f"{ta['prose'] * 100:.2f}% / {ta['code'] * 100:.2f}% | "
              f"{r['teacher_forced_agreement'] * 100:.2f}% | {'none' if fd is None else fd} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
