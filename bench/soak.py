#!/usr/bin/env python3
"""Soak test for an OpenAI-compatible server: many clients for a long time, with the traffic that
breaks servers (issue 18): streaming and non-streaming chat completions, mixed prompt lengths,
`n` > 1, sampled and greedy, and clients that disconnect at random points (right after sending,
or after a few streamed chunks). Every --sample seconds it records the server process's RSS
(/proc/PID/status, --server-pid), its GPU memory (nvidia-smi, when present; the device's whole
use without --server-pid) and the request counts so far.

Pass/fail (exit status 1 on failure, the reasons printed):
  - no errors: every request that was not disconnected on purpose gets a 200 and a complete
    answer (a streamed one ends with [DONE]); the server answers /health at the end;
  - flat memory: from the first sample after --warmup seconds to the last, RSS grows by at most
    --rss-slack MiB and the GPU memory in use by at most --gpu-slack MiB. A CPU server keeps its
    prefix-cache snapshots in host memory, filling the cache's budget as it runs: with
    --host-prefix-cache the cache's bytes (/metrics nemotron:prefix_cache_bytes) are taken
    off the RSS before comparing.

  python3 bench/soak.py --url http://127.0.0.1:8080 --server-pid PID --duration 600 \\
      --concurrency 64 --json soak.json
Standard library only.
"""
import argparse
import http.client
import json
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

WORDS = ("alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega river stone cloud "
         "forest signal vector matrix kernel buffer thread socket parser module").split()


def prompt_words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.disconnected = 0
        self.errors = 0
        self.tokens = 0
        self.first_errors = []

    def add(self, what, tokens=0, error=None):
        with self.lock:
            setattr(self, what, getattr(self, what) + 1)
            self.tokens += tokens
            if error and len(self.first_errors) < 10:
                self.first_errors.append(error)

    def snapshot(self):
        with self.lock:
            return {"ok": self.ok, "disconnected": self.disconnected, "errors": self.errors, "tokens": self.tokens}


def one_request(args, rng, counts):
    """Sends one request; returns after it completed, failed or was dropped on purpose."""
    stream = rng.random() < args.stream_fraction
    n = rng.choice([1, 1, 1, 2, 4]) if rng.random() < args.n_fraction else 1
    length = int(rng.choice(args.prompt_words))
    body = {"model": args.model, "messages": [{"role": "user", "content": prompt_words(rng, length)}],
            "max_tokens": rng.randint(1, args.max_tokens), "n": n, "stream": stream}
    if rng.random() < 0.5:
        body.update(temperature=0.8, top_p=0.95, seed=rng.randint(0, 1 << 30))
    else:
        body["temperature"] = 0
    if args.ignore_eos:
        body["ignore_eos"] = True
    drop = rng.random() < args.disconnect_fraction
    drop_after = rng.randint(0, 6)  # streamed chunks read before dropping (0: right after sending)
    u = urllib.parse.urlparse(args.url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=args.timeout)
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = "Bearer " + args.api_key
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=headers)
        if drop and drop_after == 0:
            conn.close()
            counts.add("disconnected")
            return
        resp = conn.getresponse()
        if resp.status != 200:
            counts.add("errors", error=f"HTTP {resp.status}: {resp.read(300)!r}")
            return
        if not stream:
            data = json.loads(resp.read())
            choices = data.get("choices", [])
            if len(choices) != n or any(c.get("finish_reason") not in ("stop", "length") for c in choices):
                counts.add("errors", error=f"bad answer: {json.dumps(data)[:300]}")
                return
            counts.add("ok", tokens=(data.get("usage") or {}).get("completion_tokens", 0))
            return
        chunks, done, tokens = 0, False, 0
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                break
            chunk = json.loads(payload)
            if "error" in chunk:
                counts.add("errors", error=f"stream error: {payload[:300]!r}")
                return
            chunks += 1
            tokens += sum(1 for c in chunk.get("choices", []) if (c.get("delta") or {}).get("content"))
            if drop and chunks >= drop_after:
                conn.close()
                counts.add("disconnected")
                return
        if done:
            counts.add("ok", tokens=tokens)
        else:
            counts.add("errors", error="stream ended without [DONE]")
    except Exception as e:  # noqa: BLE001 - every failure is counted and reported
        counts.add("errors", error=f"{type(e).__name__}: {e}")
    finally:
        conn.close()


def client(args, index, deadline, counts):
    rng = random.Random(args.seed * 1000003 + index)
    while time.monotonic() < deadline:
        one_request(args, rng, counts)


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def gpu_mib(pid=0):
    """The GPU memory of process `pid` (nvidia-smi --query-compute-apps), so that other GPU work
    beside the server does not move the samples; the device's whole use when pid is 0 or the
    process is not listed (None without nvidia-smi)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        if pid:
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
            used = [float(u) for p, u in (line.split(",") for line in out.splitlines() if "," in line)
                    if p.strip() == str(pid)]
            if used:
                return sum(used)
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout.split()
        return float(out[0]) if out else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def prefix_cache_mib(url):
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=10) as r:
            for line in r.read().decode("utf-8", "replace").splitlines():
                if line.startswith("nemotron:prefix_cache_bytes"):
                    return float(line.split()[-1]) / 1048576.0
    except Exception:  # noqa: BLE001
        return None
    return None


def health(url):
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=10) as r:
            return r.status
    except Exception:  # noqa: BLE001
        return 0


def sample(args, t, counts):
    s = {"t": t, **counts.snapshot(), "rss_mib": rss_mib(args.server_pid) if args.server_pid else None,
         "gpu_mib": gpu_mib(args.server_pid), "prefix_cache_mib": prefix_cache_mib(args.url)}
    s["rss_less_cache_mib"] = (s["rss_mib"] - s["prefix_cache_mib"]
                               if s["rss_mib"] is not None and s["prefix_cache_mib"] is not None else None)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--model", default="")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--server-pid", type=int, default=0, help="the server's pid (RSS samples); 0: none")
    ap.add_argument("--duration", type=float, default=600, help="seconds of load")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--sample", type=float, default=10, help="seconds between memory samples")
    ap.add_argument("--warmup", type=float, default=60, help="memory is compared from the first sample after this")
    ap.add_argument("--prompt-words", default="8,60,400,2000", help="prompt lengths drawn from (words)")
    ap.add_argument("--max-tokens", type=int, default=96, help="max_tokens drawn from 1..this")
    ap.add_argument("--stream-fraction", type=float, default=0.75)
    ap.add_argument("--n-fraction", type=float, default=0.2, help="requests that draw n from {1, 2, 4}")
    ap.add_argument("--disconnect-fraction", type=float, default=0.15)
    ap.add_argument("--ignore-eos", action="store_true")
    ap.add_argument("--host-prefix-cache", action="store_true",
                    help="the server's prefix cache is in host memory (CPU device): RSS is compared less its bytes")
    ap.add_argument("--rss-slack", type=float, default=256, help="MiB of RSS growth allowed")
    ap.add_argument("--gpu-slack", type=float, default=64, help="MiB of GPU memory growth allowed")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per request")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    args.prompt_words = [int(x) for x in args.prompt_words.split(",") if x]

    counts = Counts()
    t0 = time.monotonic()
    deadline = t0 + args.duration
    threads = [threading.Thread(target=client, args=(args, i, deadline, counts), daemon=True)
               for i in range(args.concurrency)]
    for t in threads:
        t.start()
    samples = []
    print(f"{'t s':>6} {'ok':>7} {'dropped':>7} {'errors':>6} {'tokens':>8} {'RSS MiB':>9} {'GPU MiB':>9}", flush=True)
    next_sample = t0
    while True:
        now = time.monotonic()
        if now >= next_sample:
            s = sample(args, now - t0, counts)
            samples.append(s)
            fmt = lambda v: f"{v:9.1f}" if v is not None else f"{'-':>9}"  # noqa: E731
            print(f"{s['t']:6.0f} {s['ok']:7d} {s['disconnected']:7d} {s['errors']:6d} {s['tokens']:8d} "
                  f"{fmt(s['rss_mib'])} {fmt(s['gpu_mib'])}", flush=True)
            next_sample += args.sample
        if now >= deadline and not any(t.is_alive() for t in threads):
            break
        if now >= deadline + args.timeout + 30:
            break  # a request outlived its timeout: the stuck ones count below
        time.sleep(min(0.5, max(0.05, next_sample - time.monotonic())))
    stuck = sum(1 for t in threads if t.is_alive())
    final = sample(args, time.monotonic() - t0, counts)
    samples.append(final)
    health_end = health(args.url)

    failures = []
    if final["errors"]:
        failures.append(f"{final['errors']} failed requests; first: {counts.first_errors[:3]}")
    if stuck:
        failures.append(f"{stuck} clients still waiting {args.timeout + 30:.0f} s after the end")
    if health_end != 200:
        failures.append(f"/health answered {health_end} at the end")
    if final["ok"] == 0:
        failures.append("no request completed")
    base = next((s for s in samples if s["t"] >= args.warmup), None)
    growth = {}
    rss_key = "rss_less_cache_mib" if args.host_prefix_cache else "rss_mib"
    for key, slack in ((rss_key, args.rss_slack), ("gpu_mib", args.gpu_slack)):
        vals = [s[key] for s in samples if s["t"] >= args.warmup and s[key] is not None]
        if base is None or base[key] is None or not vals:
            continue
        growth[key] = max(vals) - base[key]
        if growth[key] > slack:
            failures.append(f"{key} grew {growth[key]:.1f} MiB after {args.warmup:.0f} s (allowed {slack:.0f})")
    print(f"\n{final['ok']} completed, {final['disconnected']} dropped on purpose, {final['errors']} errors, "
          f"{final['tokens']} streamed/completion tokens in {final['t']:.0f} s; growth after warm-up: "
          + (", ".join(f"{k} {v:+.1f} MiB" for k, v in growth.items()) or "not sampled"))
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print("PASS")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"kind": "soak", "settings": {k: v for k, v in vars(args).items() if k != "api_key"},
                       "samples": samples, "growth_mib": growth, "first_errors": counts.first_errors,
                       "failures": failures}, f, indent=2)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
