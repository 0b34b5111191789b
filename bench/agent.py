#!/usr/bin/env python3
"""Multi-turn agent benchmark for an OpenAI-compatible server (the prefix cache's use case).

Each conversation starts with a long shared system prompt (standing in for a coding agent's
system prompt + tool definitions, --prefix-tokens words, identical for every conversation),
then runs --turns turns: a user message of about --turn-tokens new words, the assistant's
reply (--max-tokens, greedy), appended to the history for the next turn. C conversations run
at once (--concurrency, several levels). Reported per turn: time to first token (TTFT, p50 over
the conversations), the prompt tokens and the cached prompt tokens the server reports
(usage.prompt_tokens_details.cached_tokens, when it does), and the hit rate = cached / prompt
tokens over turns 2..N. Run it against a server with the cache and one without (`nemotron
serve --no-prefix-cache`) to compare. Standard library only.

  python3 bench/agent.py --url http://127.0.0.1:8080 --turns 10 --prefix-tokens 16000 \\
      --turn-tokens 300 --concurrency 1,8 --json agent.json
"""
import argparse
import json
import statistics
import sys
import threading
import time
import urllib.request

WORDS = ("alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega river stone cloud "
         "forest signal vector matrix kernel buffer thread socket parser module").split()


def words(n, seed):
    return " ".join(WORDS[(i * 7 + seed * 13) % len(WORDS)] for i in range(n))


def chat(args, messages):
    body = {"model": args.model, "messages": messages, "max_tokens": args.max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    if args.ignore_eos:
        body["ignore_eos"] = True
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = "Bearer " + args.api_key
    req = urllib.request.Request(args.url.rstrip("/") + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers=headers, method="POST")
    t0 = time.perf_counter()
    ttft, text, usage = None, [], None
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
                piece = d.get("content") or d.get("reasoning_content") or d.get("reasoning")
                if piece or d.get("tool_calls"):
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    if d.get("content"):
                        text.append(d["content"])
    usage = usage or {}
    return {"ttft": ttft if ttft is not None else time.perf_counter() - t0, "reply": "".join(text),
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)}


def conversation(args, index, results):
    system = "You are a coding agent. Tools and rules follow.\n" + words(args.prefix_tokens, 0)
    messages = [{"role": "system", "content": system}]
    for turn in range(args.turns):
        messages.append({"role": "user", "content": f"Task {index}.{turn}: " + words(args.turn_tokens, index * 100 + turn)})
        r = chat(args, messages)
        results[turn].append(r)
        messages.append({"role": "assistant", "content": r["reply"]})


def run_level(args, concurrency):
    results = [[] for _ in range(args.turns)]
    errors = []

    def worker(i):
        try:
            conversation(args, i, results)
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(str(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    turns = []
    for n, rs in enumerate(results):
        if not rs:
            continue
        turns.append({"turn": n + 1, "conversations": len(rs), "ttft_p50": statistics.median(r["ttft"] for r in rs),
                      "ttft_max": max(r["ttft"] for r in rs),
                      "prompt_tokens": statistics.mean(r["prompt_tokens"] for r in rs),
                      "cached_tokens": statistics.mean(r["cached_tokens"] for r in rs)})
    later = [r for rs in results[1:] for r in rs]
    prompt = sum(r["prompt_tokens"] for r in later)
    hit = sum(r["cached_tokens"] for r in later) / prompt if prompt else 0.0
    return {"concurrency": concurrency, "wall_s": wall, "errors": len(errors),
            "first_error": errors[0] if errors else None, "hit_rate_turns_2_on": hit, "turns": turns}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--model", default="")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--prefix-tokens", type=int, default=16000, help="words of the shared system prompt")
    ap.add_argument("--turn-tokens", type=int, default=300, help="new words per user turn")
    ap.add_argument("--max-tokens", type=int, default=64, help="reply length")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--ignore-eos", action="store_true")
    ap.add_argument("--label", default="")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    out = {"kind": "agent", "url": args.url, "label": args.label,
           "settings": {k: getattr(args, k) for k in ("turns", "prefix_tokens", "turn_tokens", "max_tokens")},
           "levels": []}
    failed = False
    for c in [int(x) for x in args.concurrency.split(",") if x.strip()]:
        r = run_level(args, c)
        out["levels"].append(r)
        print(f"concurrency {c}: {r['wall_s']:.1f} s, hit rate (turns 2..{args.turns}) {100 * r['hit_rate_turns_2_on']:.1f}%"
              + (f", {r['errors']} errors: {r['first_error']}" if r["errors"] else ""))
        print(f"{'turn':>5} {'prompt':>8} {'cached':>8} {'ttft p50 ms':>12} {'ttft max ms':>12}")
        for t in r["turns"]:
            print(f"{t['turn']:>5} {t['prompt_tokens']:>8.0f} {t['cached_tokens']:>8.0f} {1000 * t['ttft_p50']:>12.1f} "
                  f"{1000 * t['ttft_max']:>12.1f}")
        failed = failed or r["errors"] > 0
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=2)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
