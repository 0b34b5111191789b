#!/usr/bin/env python3
"""Load benchmark for any OpenAI-compatible server (ours, vLLM, SGLang, llama-server, ...).

For each concurrency level it keeps C streaming requests in flight until --num-requests have
finished, and reports time to first token (TTFT) and inter-token latency (ITL) percentiles
(p50/p90/p99), output tokens/s and requests/s, as a table and as JSON (--json FILE, rewritten
after every level, or the last line of stdout with --json -).

  python3 bench/load.py --url http://127.0.0.1:8080 --model demo --concurrency 1,2,4,8
  python3 bench/load.py --completions --vocab-size 131072 --temperature 0.7 --top-p 0.95 --seed 1 ...

Requests: streaming chat (/v1/chat/completions, the prompt a repeated word sized to about
--prompt-tokens tokens, one token per word for most tokenizers), or with --completions
/v1/completions with a prompt of exactly --prompt-tokens token ids (pseudo-random ids in
[min(1000, V/2), V) for V = --vocab-size, different for every request of a level and the same
at every level; skip_special_tokens false, so special tokens stream as text too).
--extra-body merges fields into every request (a structured output, chat_template_kwargs, ...):
the same load with and without a grammar gives the cost of constrained decoding.

Tokens are counted from the streamed usage chunk (stream_options.include_usage) when the
server sends one, else one per chunk that carries a token. Timestamps are taken per streamed
chunk that carries a token (a non-empty content / reasoning / tool-call delta or completion
text, or logprob entries); TTFT is the first such chunk. A chunk carrying n tokens (known from
its logprob entries when --logprobs asks for them) counts as n intervals of gap / n. A server
may hold back tokens that decode to no text on their own (bytes of a character, tokens a
tokenizer does not know) and send them with a later chunk: the JSON's tokens_per_chunk
(tokens / chunks) says how far ITL is from per token; 1.0 = every token in its own chunk.
Per level it also prints when the client had sent its first C requests (a client that cannot
start C requests at once shows here, not as server time) and the response head's latency: a
streaming server sends its head once the request is parsed and submitted, so TTFT minus head is
the engine's queue + prefill, and head alone is the client's send plus the server's front.
--trace keeps these times per request in the JSON. Only the standard library.
"""
import argparse
import json
import multiprocessing
import queue as queue_module
import random
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def prompt_ids(args, index):
    """Token ids of request `index` (deterministic for --seed and index)."""
    rng = random.Random((args.seed or 0) * 1000003 + index)
    lo = min(1000, args.vocab_size // 2)
    return [rng.randrange(lo, args.vocab_size) for _ in range(max(1, args.prompt_tokens))]


def request_body(args, index, prompt):
    body = {"model": args.model, "max_tokens": args.max_tokens, "stream": True,
            "stream_options": {"include_usage": True}, "temperature": args.temperature}
    if args.completions:
        body["prompt"] = prompt_ids(args, index)
        body["skip_special_tokens"] = False
        if args.logprobs:
            body["logprobs"] = 0
    else:
        body["messages"] = [{"role": "user", "content": prompt}]
        if args.logprobs:
            body["logprobs"] = True
    if args.top_p is not None:
        body["top_p"] = args.top_p
    if args.seed is not None:
        body["seed"] = args.seed + index
    if args.ignore_eos:
        body["ignore_eos"] = True
    body.update(args.extra_body)
    return body


def chunk_tokens(chunk, completions):
    """Tokens a streamed chunk carries: its logprob entries when present, else 1 per choice
    with a non-empty content / reasoning / tool-call delta (chat) or text (completions)."""
    n = 0
    for ch in chunk.get("choices", []):
        lp = ch.get("logprobs") or {}
        entries = lp.get("tokens") if completions else lp.get("content")
        if entries:
            n += len(entries)
        elif completions:
            n += 1 if ch.get("text") else 0
        else:
            d = ch.get("delta", {})
            n += 1 if (d.get("content") or d.get("reasoning_content") or d.get("reasoning") or d.get("tool_calls")) else 0
    return n


def one_request(args, index, prompt, level_t0):
    body = request_body(args, index, prompt)
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = "Bearer " + args.api_key
    path = "/v1/completions" if args.completions else "/v1/chat/completions"
    req = urllib.request.Request(args.url.rstrip("/") + path, data=json.dumps(body).encode(), headers=headers,
                                 method="POST")
    t0 = time.perf_counter()
    stamps, counts, usage = [], [], None  # one stamp and token count per chunk that carries tokens
    with urllib.request.urlopen(req, timeout=args.timeout) as resp:
        t_head = time.perf_counter()
        for raw in resp:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk and not chunk.get("choices"):
                raise RuntimeError("stream error: " + json.dumps(chunk["error"])[:300])
            if chunk.get("usage"):
                usage = chunk["usage"]
            n = chunk_tokens(chunk, args.completions)
            if n:
                stamps.append(time.perf_counter())
                counts.append(n)
    t1 = time.perf_counter()
    tokens = usage["completion_tokens"] if usage else sum(counts)
    itl = []
    for a, b, n in zip(stamps, stamps[1:], counts[1:]):
        itl.extend([(b - a) / n] * n)
    return {"start": t0 - level_t0, "head": t_head - t0, "ttft": (stamps[0] - t0) if stamps else t1 - t0,
            "itl": itl, "tokens": tokens, "chunks": len(stamps), "e2e": t1 - t0}


def serve_requests(args, prompt, t0, num_requests, counter, threads):
    """`threads` client threads taking request indices from the shared counter until
    num_requests were taken; returns (results, errors)."""
    results, errors, lock = [], [], threading.Lock()

    def worker():
        while True:
            with counter.get_lock():
                if counter.value >= num_requests:
                    return
                index = counter.value
                counter.value += 1
            try:
                r = one_request(args, index, prompt, t0)
                with lock:
                    results.append(r)
            except urllib.error.HTTPError as e:  # reported with the server's message, not fatal
                body = e.read().decode("utf-8", "replace")[:300]
                with lock:
                    errors.append(f"{e}: {body}")
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                with lock:
                    errors.append(str(e))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results, errors


def client_process(args, prompt, t0, num_requests, counter, threads, queue):
    queue.put(serve_requests(args, prompt, t0, num_requests, counter, threads))


def run_level(args, concurrency, num_requests, prompt):
    # --processes P > 1: the C client threads spread over P processes (time.perf_counter is the
    # system's monotonic clock on Linux, so their times share the level's origin t0).
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("q", 0)
    procs = max(1, min(args.processes, concurrency))
    t0 = time.perf_counter()
    if procs == 1:
        results, errors = serve_requests(args, prompt, t0, num_requests, counter, concurrency)
    else:
        queue = ctx.Queue()
        sizes = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
        workers = [ctx.Process(target=client_process, args=(args, prompt, t0, num_requests, counter, n, queue))
                   for n in sizes]
        for w in workers:
            w.start()
        results, errors = [], []
        got = 0
        while got < len(workers):  # read before joining: a child exits only once its results are taken
            try:
                r, e = queue.get(timeout=1.0)
            except queue_module.Empty:
                if not any(w.is_alive() for w in workers) and queue.empty():
                    errors.extend(["a client process exited without its results"] * (len(workers) - got))
                    break
                continue
            results.extend(r)
            errors.extend(e)
            got += 1
        for w in workers:
            w.join()
    wall = time.perf_counter() - t0
    ttft = [r["ttft"] for r in results]
    head = [r["head"] for r in results]
    # The first `concurrency` requests start together: how long the client took to send them
    first = sorted(r["start"] for r in results)[:concurrency]
    itl = [x for r in results for x in r["itl"]]
    e2e = [r["e2e"] for r in results]
    tokens = sum(r["tokens"] for r in results)
    chunks = sum(r["chunks"] for r in results)
    return {"concurrency": concurrency, "requests": len(results), "errors": len(errors),
            "first_error": errors[0] if errors else None, "wall_s": wall,
            "ttft_p50": percentile(ttft, 50), "ttft_p90": percentile(ttft, 90), "ttft_p99": percentile(ttft, 99),
            "head_p50": percentile(head, 50), "head_p90": percentile(head, 90), "head_p99": percentile(head, 99),
            "first_wave_start_max": first[-1] if first else float("nan"),
            "itl_p50": percentile(itl, 50), "itl_p90": percentile(itl, 90), "itl_p99": percentile(itl, 99),
            "itl_mean": statistics.mean(itl) if itl else float("nan"),
            "e2e_p50": percentile(e2e, 50), "e2e_p99": percentile(e2e, 99),
            "output_tok_s": tokens / wall if wall > 0 else 0.0, "req_s": len(results) / wall if wall > 0 else 0.0,
            "output_tokens": tokens, "tokens_per_chunk": tokens / chunks if chunks else float("nan"),
            "mean_output_tokens": statistics.mean([r["tokens"] for r in results]) if results else 0,
            "trace": [{k: r[k] for k in ("start", "head", "ttft", "e2e", "tokens")} for r in results] if args.trace else None}


def int_list(text, what):
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        sys.exit(f"{what}: expected comma-separated integers, got {text!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL (without /v1)")
    ap.add_argument("--model", default="", help="model name sent in requests")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--concurrency", default="1,2,4,8,16,32,64", help="comma-separated levels")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--num-requests", default="32",
                    help="requests per concurrency level: one number, or one per level (comma-separated)")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-p", type=float, default=None, help="top_p sent with every request (default: not sent)")
    ap.add_argument("--seed", type=int, default=None,
                    help="request i of a level is sent seed + i; also seeds the --completions prompt ids")
    ap.add_argument("--ignore-eos", action="store_true", help="send ignore_eos (vLLM extension) for fixed lengths")
    ap.add_argument("--completions", action="store_true",
                    help="POST /v1/completions with a prompt of --prompt-tokens token ids instead of chat")
    ap.add_argument("--vocab-size", type=int, default=8192,
                    help="--completions prompt ids are drawn from [min(1000, V/2), V) (default 8192, the demo model's)")
    ap.add_argument("--logprobs", action="store_true",
                    help="ask for logprobs (completions: logprobs=0; chat: logprobs=true) to count each chunk's tokens "
                         "exactly; costs the server a log-softmax over the vocabulary per token")
    ap.add_argument("--extra-body", type=json.loads, default={},
                    help='JSON object merged into every request, e.g. \'{"response_format": {"type": "json_object"}}\'')
    ap.add_argument("--label", default="", help="a name for these settings (kept in the JSON; plot.py shows it)")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--processes", type=int, default=1,
                    help="spread each level's client threads over this many processes (one Python process "
                         "serializes its threads' parsing; see the client line of the output)")
    ap.add_argument("--trace", action="store_true",
                    help="keep every request's start (from the level's start), response head, TTFT, end-to-end time "
                         "and tokens in the JSON (levels[i].trace)")
    ap.add_argument("--json", default="", help="write the results as JSON to this file ('-' = stdout)")
    args = ap.parse_args()
    if args.processes < 1:
        sys.exit("--processes must be at least 1")
    if args.completions and args.vocab_size < 2:
        sys.exit("--vocab-size must be at least 2")
    prompt = " ".join(["hello"] * max(1, args.prompt_tokens))
    levels = int_list(args.concurrency, "--concurrency")
    nreq = int_list(args.num_requests, "--num-requests")
    if len(nreq) == 1:
        nreq = nreq * len(levels)
    if len(nreq) != len(levels) or any(n < 1 for n in nreq) or any(c < 1 for c in levels):
        sys.exit("--num-requests: one positive number, or one per --concurrency level")
    settings = {"label": args.label, "url": args.url, "model": args.model,
                "endpoint": "/v1/completions" if args.completions else "/v1/chat/completions",
                "concurrency": levels, "num_requests": nreq, "prompt_tokens": args.prompt_tokens,
                "max_tokens": args.max_tokens, "temperature": args.temperature, "top_p": args.top_p,
                "seed": args.seed, "ignore_eos": args.ignore_eos, "logprobs": args.logprobs,
                "processes": args.processes,
                "vocab_size": args.vocab_size if args.completions else None}
    rows = []
    out = {"url": args.url, "model": args.model, "prompt_tokens": args.prompt_tokens,
           "max_tokens": args.max_tokens,
           "num_requests": nreq[0] if len(set(nreq)) == 1 else nreq, "settings": settings, "levels": rows}

    def write_json():
        if args.json and args.json != "-":
            with open(args.json, "w") as f:
                json.dump(out, f, indent=2)

    hdr = f"{'conc':>5} {'reqs':>5} {'err':>4} {'ttft p50/p90/p99 (ms)':>24} {'itl p50/p90/p99 (ms)':>22} {'tok/s':>9} {'req/s':>7}"
    print(hdr)
    for c, n in zip(levels, nreq):
        r = run_level(args, c, n, prompt)
        rows.append(r)
        ms = lambda k: f"{1000 * r[k]:.1f}"
        print(f"{c:>5} {r['requests']:>5} {r['errors']:>4} "
              f"{ms('ttft_p50') + '/' + ms('ttft_p90') + '/' + ms('ttft_p99'):>24} "
              f"{ms('itl_p50') + '/' + ms('itl_p90') + '/' + ms('itl_p99'):>22} "
              f"{r['output_tok_s']:>9.1f} {r['req_s']:>7.2f}", flush=True)
        print(f"{'':>5} client: first {c} requests sent within {1000 * r['first_wave_start_max']:.1f} ms; "
              f"response head p50/p90/p99 {ms('head_p50')}/{ms('head_p90')}/{ms('head_p99')} ms "
              "(the server's handler done: submitted)", flush=True)
        if r["first_error"]:
            print("  first error:", r["first_error"], file=sys.stderr)
        if r["tokens_per_chunk"] > 1.05 and not args.logprobs:
            print(f"  note: {r['tokens_per_chunk']:.2f} tokens per streamed chunk: ITL is per chunk share, "
                  "not per token (see --help)", file=sys.stderr)
        write_json()
    if args.json == "-":
        print(json.dumps(out))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
