#!/usr/bin/env python3
"""Slow clients against an OpenAI-compatible server: N connections that each send their request
one byte every --interval seconds (half stall in the request head, half in an announced body),
reopened whenever the server closes them, while normal requests -- GET /health and a short
completion, each on a new connection -- are timed. Standard library only.

    python3 bench/slowloris.py --url http://127.0.0.1:8080 --slow 500 --duration 20 [--json out.json]

Every connection comes from this machine's address: for --slow over the server's
--max-connections-per-ip (256) start it with --max-connections-per-ip 0, else the excess is
answered 429 and reopened in a loop.
"""
import argparse
import http.client
import json
import selectors
import socket
import threading
import time
import urllib.parse


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Slow:
    def __init__(self, host, port, n, interval):
        self.host, self.port, self.interval = host, port, interval
        body_head = (b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n")
        self.heads = [b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      b"X-Pad: " + b"a" * 4000 + b"\r\n\r\n", body_head]
        self.sel = selectors.DefaultSelector()
        self.conns = {}  # socket -> [kind, bytes sent]
        self.opened = self.closed_by_server = self.failed_connects = 0
        for i in range(n):
            self.open(i % 2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open(self, kind):
        try:
            s = socket.create_connection((self.host, self.port), timeout=5)
        except OSError:
            self.failed_connects += 1
            return
        sent = 0
        if kind == 1:  # the whole head at once: this one stalls in its body
            s.sendall(self.heads[1])
            sent = len(self.heads[1])
        s.setblocking(False)
        self.conns[s] = [kind, sent]
        self.sel.register(s, selectors.EVENT_READ)
        self.opened += 1

    def reopen(self, s):
        kind = self.conns.pop(s)[0]
        self.sel.unregister(s)
        s.close()
        self.closed_by_server += 1
        self.open(kind)

    def run(self):
        while not self.stop.is_set():
            tick = time.time()
            for s in list(self.conns):
                kind, sent = self.conns[s]
                head = self.heads[kind]
                b = head[sent:sent + 1] if sent < len(head) else b"a"
                try:
                    s.send(b)
                    self.conns[s][1] += 1
                except OSError:
                    self.reopen(s)
            # whatever the server answered (408), and closes
            deadline = tick + self.interval
            while True:
                left = deadline - time.time()
                if left <= 0 or self.stop.is_set():
                    break
                for key, _ in self.sel.select(timeout=left):
                    s = key.fileobj
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    if not data and s in self.conns:
                        self.reopen(s)

    def close(self):
        self.stop.set()
        self.thread.join()
        for s in self.conns:
            s.close()


def timed_request(host, port, method, path, body=None, timeout=30):
    t = time.perf_counter()
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        r.read()
        return time.perf_counter() - t, r.status
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--slow", type=int, default=500, help="slow connections held open")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between two bytes of a slow connection")
    ap.add_argument("--duration", type=float, default=20, help="seconds of measurement")
    ap.add_argument("--health-every", type=float, default=0.1)
    ap.add_argument("--completion-every", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=30, help="timeout of one measured request")
    ap.add_argument("--json", help="write the numbers here")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    host, port = u.hostname, u.port or 80

    slow = Slow(host, port, a.slow, a.interval)
    slow.thread.start()
    time.sleep(min(3.0, a.duration / 4))  # every slow connection open and dribbling
    lat = {"health": [], "completion": []}
    errors = {"health": 0, "completion": 0}
    body = json.dumps({"prompt": "Hello", "max_tokens": 2, "temperature": 0})
    end = time.time() + a.duration
    next_completion = time.time()
    while time.time() < end:
        jobs = [("health", "GET", "/health", None)]
        if time.time() >= next_completion:
            jobs.append(("completion", "POST", "/v1/completions", body))
            next_completion += a.completion_every
        for kind, method, path, b in jobs:
            try:
                dt, status = timed_request(host, port, method, path, b, a.timeout)
                if status == 200:
                    lat[kind].append(dt)
                else:
                    errors[kind] += 1
            except OSError:
                errors[kind] += 1
        time.sleep(a.health_every)
    held = len(slow.conns)
    slow.close()

    out = {"slow_connections": a.slow, "interval_s": a.interval, "duration_s": a.duration,
           "slow_open_at_end": held, "slow_closed_by_server": slow.closed_by_server,
           "slow_failed_connects": slow.failed_connects}
    print("slow connections: %d (1 byte / %.1f s), %d closed by the server and reopened, %d failed connects"
          % (a.slow, a.interval, slow.closed_by_server, slow.failed_connects))
    print("%-11s %6s %6s %9s %9s %9s" % ("request", "ok", "errors", "p50 ms", "p99 ms", "max ms"))
    for kind in ("health", "completion"):
        xs = lat[kind]
        row = {"ok": len(xs), "errors": errors[kind], "p50_ms": pct(xs, 50) * 1e3, "p99_ms": pct(xs, 99) * 1e3,
               "max_ms": (max(xs) if xs else float("nan")) * 1e3}
        out[kind] = row
        print("%-11s %6d %6d %9.1f %9.1f %9.1f" % (kind, row["ok"], row["errors"], row["p50_ms"], row["p99_ms"],
                                                     row["max_ms"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
