"""The serving benchmark's tools: bench/step_log.py sums a step log as its docstring says (segments
at idle gaps, kinds of step, host time, the fill-up time of a burst), and bench/load.py against a
stand-in streaming server counts every request and token once, with threads and with several
processes, and keeps the per-request trace it is asked for."""
import http.server
import json
import os
import socketserver
import subprocess
import sys
import tempfile
import threading

ROOT = os.environ.get("NEMOTRON_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
STEP_LOG = os.path.join(ROOT, "bench", "step_log.py")
LOAD = os.path.join(ROOT, "bench", "load.py")
HEADER = "step,start_s,gap_s,prep_s,run_s,sequences,decode_rows,prompt_rows,drafts,running,waiting\n"


def sums(csv_text):
    with tempfile.TemporaryDirectory() as d:
        log, out = os.path.join(d, "steps.csv"), os.path.join(d, "steps.json")
        with open(log, "w") as f:
            f.write(csv_text)
        p = subprocess.run([sys.executable, STEP_LOG, log, "--json", out], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        with open(out) as f:
            return json.load(f), p.stdout


def test_step_log_segments_kinds_and_fill_up():
    rows = [
        # a burst: one prompt alone, then the rest arrive over 0.2 s beside the first's decodes
        (0, 1.0, 1.0, 0.001, 0.020, 1, 0, 128, 0, 1, 0),
        (1, 1.021, 0.0, 0.001, 0.030, 3, 1, 256, 0, 3, 0),
        (2, 1.100, 0.048, 0.001, 0.030, 4, 3, 128, 0, 4, 1),
        (3, 1.200, 0.069, 0.001, 0.010, 4, 4, 0, 0, 4, 0),
        (4, 1.211, 0.0, 0.0, 0.010, 4, 4, 0, 6, 4, 0),  # a verify step (drafts)
        # after an idle second: a second run
        (5, 2.500, 1.279, 0.001, 0.005, 2, 2, 0, 0, 2, 0),
    ]
    text = HEADER + "".join(",".join(str(v) for v in r) + "\n" for r in rows)
    j, out = sums(text)
    assert len(j) == 2  # one sum per segment
    a, b = j
    assert a["steps"] == 5 and b["steps"] == 1
    assert a["decode_rows"] == 12 and a["prompt_rows"] == 512
    assert a["max_running"] == 4 and a["max_waiting"] == 1 and a["steps_waiting"] == 1
    assert abs(a["max_running_after_s"] - 0.100) < 1e-9  # first reached at the third step
    assert abs(a["wall_s"] - (1.211 + 0.010 - 1.0)) < 1e-9
    # host: the first step's preparation, then every later step's gap and preparation
    assert abs(a["host_s"] - (0.001 + 0.001 + 0.048 + 0.001 + 0.069 + 0.001)) < 1e-9
    assert a["kinds"]["prompt"]["steps"] == 1 and a["kinds"]["mixed"]["steps"] == 2
    assert a["kinds"]["decode"]["steps"] == 1 and a["kinds"]["verify"]["steps"] == 1
    assert a["decode_by_batch"] == {"4": {"steps": 1, "run_s": 0.010}}
    assert "segment 1:" in out and "first at +0.100 s" in out


def test_step_log_refuses_other_csv():
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "x.csv")
        with open(log, "w") as f:
            f.write("a,b\n1,2\n")
        p = subprocess.run([sys.executable, STEP_LOG, log], capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "not a step log" in p.stderr


class Streamer(http.server.BaseHTTPRequestHandler):
    """/v1/completions: `max_tokens` chunks of one token each, then the usage chunk."""
    protocol_version = "HTTP/1.0"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = int(body["max_tokens"])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for _ in range(n):
            chunk = {"choices": [{"index": 0, "text": "x", "finish_reason": None}]}
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()
        self.wfile.write(b'data: {"choices": [], "usage": {"completion_tokens": %d}}\n\n' % n)
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 128


def test_load_counts_every_request_once_with_threads_and_processes():
    srv = Server(("127.0.0.1", 0), Streamer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for procs in (1, 3):
            with tempfile.TemporaryDirectory() as d:
                out = os.path.join(d, "load.json")
                p = subprocess.run([sys.executable, LOAD, "--url", f"http://127.0.0.1:{srv.server_address[1]}",
                                    "--completions", "--concurrency", "4,7", "--num-requests", "9,14", "--max-tokens", "5",
                                    "--processes", str(procs), "--trace", "--json", out],
                                   capture_output=True, text=True, timeout=120)
                assert p.returncode == 0, p.stdout + p.stderr
                with open(out) as f:
                    levels = json.load(f)["levels"]
                assert [lv["requests"] for lv in levels] == [9, 14]
                for lv in levels:
                    assert lv["errors"] == 0 and lv["output_tokens"] == 5 * lv["requests"]
                    assert len(lv["trace"]) == lv["requests"]
                    for r in lv["trace"]:
                        assert 0 <= r["start"] and 0 <= r["head"] <= r["ttft"] <= r["e2e"] and r["tokens"] == 5
                    assert lv["first_wave_start_max"] <= max(r["start"] for r in lv["trace"])
                assert p.stdout.count("client: first") == 2
    finally:
        srv.shutdown()


def test_load_refuses_zero_processes():
    p = subprocess.run([sys.executable, LOAD, "--processes", "0"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "--processes must be at least 1" in p.stderr
