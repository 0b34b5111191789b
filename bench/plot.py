#!/usr/bin/env python3
"""Plots of serving benchmarks: load.py JSON files and `nemotron bench --json` files.

  python3 bench/plot.py --out plots/ greedy.json t07.json bench.json

Writes to the --out folder (created if missing):
  load_throughput.png  output tok/s and ITL p50 against concurrency, one line per load.py
                       file (labelled with its --label, else its settings)
  decode_depth.png     single-stream decode tok/s against context depth, per bench file and
                       mode (graph / eager)
  batch_step.png       batched decode step time and tok/s against batch size, per bench file
A plot whose inputs are absent is not written. The file kinds are told apart by content
(bench files have "kind": "nemotron-bench", load.py files "levels"). Needs matplotlib only
(Debian: python3-matplotlib, with /usr/bin/python3).
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402


def log2_axis(ax, values):
    """A base-2 log x axis ticked at the measured values, labelled as plain numbers."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(values)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def load_label(path, d):
    s = d.get("settings") or {}
    if s.get("label"):
        return s["label"]
    parts = ["completions" if s.get("endpoint") == "/v1/completions" else "chat"]
    t = s.get("temperature", 0.0)
    parts.append("greedy" if not t else f"T={t:g}")
    if s.get("top_p") is not None:
        parts.append(f"top_p={s['top_p']:g}")
    parts.append(f"{d.get('prompt_tokens', '?')} in / {d.get('max_tokens', '?')} out")
    return ", ".join(parts) + f" ({os.path.basename(path)})"


def bench_label(path, d):
    dev = (d.get("device") or {}).get("name", "?")
    m = d.get("model") or {}
    name = os.path.basename(os.path.normpath(m.get("dir", ""))) or "?"
    return f"{name} {m.get('quant', '')}, {dev} ({os.path.basename(path)})"


def plot_load(files, out):
    fig, (ax_t, ax_i) = plt.subplots(1, 2, figsize=(12, 4.5))
    xs = []
    for path, d in files:
        rows = [r for r in d["levels"] if r.get("requests")]
        if not rows:
            continue
        c = [r["concurrency"] for r in rows]
        xs += c
        label = load_label(path, d)
        ax_t.plot(c, [r["output_tok_s"] for r in rows], marker="o", label=label)
        ax_i.plot(c, [1000 * r["itl_p50"] for r in rows], marker="o", label=label)
    for ax, title, unit in ((ax_t, "output throughput", "output tok/s"), (ax_i, "inter-token latency p50", "ms")):
        log2_axis(ax, xs or [1])
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_ylim(bottom=0)
    ax_t.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, "load_throughput.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_depth(files, out):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    n = 0
    for path, d in files:
        for mode in ("graph", "eager"):
            rows = sorted((r for r in d.get("decode", []) if r.get("mode") == mode), key=lambda r: r["depth"])
            if not rows:
                continue
            ax.plot([r["depth"] for r in rows], [r["tok_s"] for r in rows], marker="o",
                     label=f"{bench_label(path, d)}, {mode}")
            n += 1
    if not n:
        plt.close(fig)
        return None
    ax.set_xscale("symlog", linthresh=1024)
    ax.set_xlabel("context depth (tokens)")
    ax.set_ylabel("decode tok/s (one sequence)")
    ax.set_title("single-stream decode against context depth")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, "decode_depth.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_batch(files, out):
    fig, (ax_s, ax_t) = plt.subplots(1, 2, figsize=(12, 4.5))
    n, xs = 0, []
    for path, d in files:
        rows = sorted(d.get("batch", []), key=lambda r: r["batch"])
        if not rows:
            continue
        b = [r["batch"] for r in rows]
        xs += b
        label = bench_label(path, d)
        ax_s.plot(b, [r["step_ms"] for r in rows], marker="o", label=label)
        ax_t.plot(b, [r["tok_s"] for r in rows], marker="o", label=label)
        n += 1
    if not n:
        plt.close(fig)
        return None
    for ax, title, unit in ((ax_s, "decode step time", "ms per step"), (ax_t, "decode throughput", "tok/s (B / step)")):
        log2_axis(ax, xs)
        ax.set_xlabel("batch size B (sequences per step)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
    ax_s.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, "batch_step.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="load.py and/or nemotron bench JSON files")
    ap.add_argument("--out", required=True, help="folder for the PNG files")
    args = ap.parse_args()
    loads, benches = [], []
    for path in args.files:
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            sys.exit(f"{path}: {e}")
        if isinstance(d, dict) and d.get("kind") == "nemotron-bench":
            benches.append((path, d))
        elif isinstance(d, dict) and isinstance(d.get("levels"), list):
            loads.append((path, d))
        else:
            sys.exit(f"{path}: neither a load.py result (no 'levels') nor a nemotron bench --json file")
    os.makedirs(args.out, exist_ok=True)
    written = []
    if loads:
        written.append(plot_load(loads, args.out))
    if benches:
        written += [plot_depth(benches, args.out), plot_batch(benches, args.out)]
    written = [p for p in written if p]
    for p in written:
        print("wrote", p)
    if not written:
        sys.exit("nothing to plot")


if __name__ == "__main__":
    main()
