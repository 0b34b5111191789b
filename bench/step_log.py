#!/usr/bin/env python3
"""Where a server's time goes: sums the step log of `nemotron serve --step-log FILE`.

The log has one CSV line per engine step (runtime/engine.h, EngineOptions::step_log). Steps are
split into segments at idle gaps (no step for longer than --idle seconds: between two load
runs), and each segment is summed:
  - wall: first step's start to last step's end;
  - per kind of step (decode only, mixed: decodes beside prompt rows, prompt only, verify: some
    sequence verified drafts): steps, seconds on the device side (run_s: launch to tokens
    back), rows;
  - host: gap_s + prep_s (finishing the previous step, taking in requests, preparing this one:
    the device waits unless the backend overlaps it);
  - decode-only steps by batch size: where the tail of a load run (few sequences left) goes;
  - the most sequences running and waiting (not admitted: no slot or KV room) when a step was
    scheduled, and how long after the segment's start the most running were first reached (a
    burst of requests that reaches the engine spread out shows here).
Usage: bench/step_log.py steps.csv [--idle 0.25] [--json out.json]
"""
import argparse
import csv
import json
import sys


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = ["step", "start_s", "gap_s", "prep_s", "run_s", "sequences", "decode_rows", "prompt_rows", "drafts",
            "running", "waiting"]
    if rows and any(k not in rows[0] for k in need):
        sys.exit(f"{path}: not a step log (columns {', '.join(need)} expected)")
    out = []
    for r in rows:
        out.append({k: (float(r[k]) if k.endswith("_s") else int(r[k])) for k in need})
    return out


def kind(s):
    if s["drafts"] > 0:
        return "verify"
    if s["prompt_rows"] == 0:
        return "decode"
    return "mixed" if s["decode_rows"] > 0 else "prompt"


def segments(steps, idle):
    seg = []
    for s in steps:
        if seg and s["gap_s"] > idle:
            yield seg
            seg = []
        seg.append(s)
    if seg:
        yield seg


def summarize(seg):
    first, last = seg[0], seg[-1]
    wall = last["start_s"] + last["prep_s"] + last["run_s"] - first["start_s"]
    kinds = {}
    for s in seg:
        k = kinds.setdefault(kind(s), {"steps": 0, "run_s": 0.0, "decode_rows": 0, "prompt_rows": 0})
        k["steps"] += 1
        k["run_s"] += s["run_s"]
        k["decode_rows"] += s["decode_rows"]
        k["prompt_rows"] += s["prompt_rows"]
    host = sum(s["gap_s"] + s["prep_s"] for s in seg[1:]) + first["prep_s"]
    by_batch = {}
    for s in seg:
        if kind(s) == "decode":
            b = by_batch.setdefault(s["sequences"], {"steps": 0, "run_s": 0.0})
            b["steps"] += 1
            b["run_s"] += s["run_s"]
    return {"start_s": first["start_s"], "steps": len(seg), "wall_s": wall, "host_s": host,
            "decode_rows": sum(s["decode_rows"] for s in seg), "prompt_rows": sum(s["prompt_rows"] for s in seg),
            "max_running": max(s["running"] for s in seg), "max_waiting": max(s["waiting"] for s in seg),
            # how long the segment took to fill up: a burst of requests that reaches the engine
            # spread out (a slow client or front) shows here
            "max_running_after_s": next(s["start_s"] for s in seg if s["running"] == max(t["running"] for t in seg))
            - first["start_s"],
            "steps_waiting": sum(1 for s in seg if s["waiting"] > 0),
            "kinds": kinds, "decode_by_batch": {str(b): v for b, v in sorted(by_batch.items())}}


def show(i, m):
    print(f"segment {i}: from {m['start_s']:.3f} s, {m['steps']} steps, wall {m['wall_s']:.3f} s, "
          f"host between launches {m['host_s']:.3f} s ({100 * m['host_s'] / max(m['wall_s'], 1e-9):.1f}%), "
          f"{m['decode_rows']} decode rows, {m['prompt_rows']} prompt rows; running up to {m['max_running']} "
          f"(first at +{m['max_running_after_s']:.3f} s), "
          f"waiting up to {m['max_waiting']} ({m['steps_waiting']} steps with requests waiting)")
    for name, k in sorted(m["kinds"].items()):
        print(f"  {name:<7} {k['steps']:>6} steps {k['run_s']:>8.3f} s "
              f"({100 * k['run_s'] / max(m['wall_s'], 1e-9):5.1f}%)  mean {1e3 * k['run_s'] / k['steps']:7.2f} ms, "
              f"rows/step: decode {k['decode_rows'] / k['steps']:.1f}, prompt {k['prompt_rows'] / k['steps']:.1f}")
    if m["decode_by_batch"]:
        # Buckets (previous power of two, this one]: the full batch apart from the ramps.
        buckets = {}
        for b, v in m["decode_by_batch"].items():
            hi = 1
            while hi < int(b):
                hi *= 2
            k = buckets.setdefault(hi, [0, 0.0])
            k[0] += v["steps"]
            k[1] += v["run_s"]
        parts = [f"<= {hi}: {n} x {1e3 * t / n:.2f} ms" for hi, (n, t) in sorted(buckets.items())]
        print("  decode steps by sequences: " + ", ".join(parts))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("--idle", type=float, default=0.25, help="a gap longer than this starts a new segment (s)")
    ap.add_argument("--json", help="write the segments' sums here")
    args = ap.parse_args()
    steps = read(args.log)
    if not steps:
        sys.exit(f"{args.log}: no steps")
    sums = [summarize(seg) for seg in segments(steps, args.idle)]
    for i, m in enumerate(sums):
        show(i, m)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(sums, f, indent=1)


if __name__ == "__main__":
    main()
