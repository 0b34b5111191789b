#!/usr/bin/env python3
"""Load benchmark for any OpenAI-compatible server (ours, vLLM, SGLang, llama-server, ...).

For each concurrency level it keeps C streaming chat requests in flight until
--num-requests have finished, and reports time to first token (TTFT) and inter-token
latency (ITL) percentiles (p50/p90/p99), output tokens/s and requests/s, as a table and as
JSON (--json FILE, or the last line of stdout with --json -).

  python3 bench/load.py --url http://127.0.0.1:8080 --model demo --concurrency 1,2,4,8

Tokens are counted from the streamed usage chunk (stream_options.include_usage) when the
server sends one, else one per non-empty delta. The prompt is a repeated word sized to about
--prompt-tokens tokens (one token per word for most tokenizers). Only the standard library.
"""
import argparse
import json
import statistics
import sys
import threading
import time
import urllib.request


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def one_request(args, prompt):
    body = {"model": args.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": args.max_tokens,
            "stream": True, "stream_options": {"include_usage": True}, "temperature": args.temperature}
    if args.ignore_eos:
        body["ignore_eos"] = True
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = "Bearer " + args.api_key
    req = urllib.request.Request(args.url.rstrip("/") + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers=headers, method="POST")
    t0 = time.perf_counter()
    stamps, usage = [], None
    with urllib.request.urlopen(req, timeout=args.timeout) as resp:
        for raw in resp:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if chunk.get("usage"):
                usage = chunk["usage"]
            for ch in chunk.get("choices", []):
                d = ch.get("delta", {})
                if d.get("content") or d.get("reasoning_content") or d.get("reasoning") or d.get("tool_calls"):
                    stamps.append(time.perf_counter())
    t1 = time.perf_counter()
    tokens = usage["completion_tokens"] if usage else len(stamps)
    return {"ttft": (stamps[0] - t0) if stamps else t1 - t0,
            "itl": [b - a for a, b in zip(stamps, stamps[1:])], "tokens": tokens, "e2e": t1 - t0}


def run_level(args, concurrency, prompt):
    results, errors, lock = [], [], threading.Lock()
    remaining = [args.num_requests]

    def worker():
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            try:
                r = one_request(args, prompt)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                with lock:
                    errors.append(str(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttft = [r["ttft"] for r in results]
    itl = [x for r in results for x in r["itl"]]
    tokens = sum(r["tokens"] for r in results)
    return {"concurrency": concurrency, "requests": len(results), "errors": len(errors),
            "first_error": errors[0] if errors else None, "wall_s": wall,
            "ttft_p50": percentile(ttft, 50), "ttft_p90": percentile(ttft, 90), "ttft_p99": percentile(ttft, 99),
            "itl_p50": percentile(itl, 50), "itl_p90": percentile(itl, 90), "itl_p99": percentile(itl, 99),
            "output_tok_s": tokens / wall if wall > 0 else 0.0, "req_s": len(results) / wall if wall > 0 else 0.0,
            "mean_output_tokens": statistics.mean([r["tokens"] for r in results]) if results else 0}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL (without /v1)")
    ap.add_argument("--model", default="", help="model name sent in requests")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--concurrency", default="1,2,4,8,16,32,64", help="comma-separated levels")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--num-requests", type=int, default=32, help="requests per concurrency level")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--ignore-eos", action="store_true", help="send ignore_eos (vLLM extension) for fixed lengths")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", default="", help="write the results as JSON to this file ('-' = stdout)")
    args = ap.parse_args()
    prompt = " ".join(["hello"] * max(1, args.prompt_tokens))
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    rows = []
    hdr = f"{'conc':>5} {'reqs':>5} {'err':>4} {'ttft p50/p90/p99 (ms)':>24} {'itl p50/p90/p99 (ms)':>22} {'tok/s':>9} {'req/s':>7}"
    print(hdr)
    for c in levels:
        r = run_level(args, c, prompt)
        rows.append(r)
        ms = lambda k: f"{1000 * r[k]:.1f}"
        print(f"{c:>5} {r['requests']:>5} {r['errors']:>4} "
              f"{ms('ttft_p50') + '/' + ms('ttft_p90') + '/' + ms('ttft_p99'):>24} "
              f"{ms('itl_p50') + '/' + ms('itl_p90') + '/' + ms('itl_p99'):>22} "
              f"{r['output_tok_s']:>9.1f} {r['req_s']:>7.2f}", flush=True)
        if r["first_error"]:
            print("  first error:", r["first_error"], file=sys.stderr)
    out = {"url": args.url, "model": args.model, "prompt_tokens": args.prompt_tokens,
           "max_tokens": args.max_tokens, "num_requests": args.num_requests, "levels": rows}
    if args.json == "-":
        print(json.dumps(out))
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
