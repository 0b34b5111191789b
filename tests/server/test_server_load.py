"""Concurrency, client disconnects and /metrics."""
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from prometheus_client.parser import text_string_to_metric_families

NO_THINK = {"enable_thinking": False}


def metrics(server):
    r = requests.get(server.url + "/metrics")
    assert r.status_code == 200
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            key = s.name
            if "finished_reason" in s.labels:
                key += "{%s}" % s.labels["finished_reason"]
            if s.name.endswith("_bucket"):
                continue
            out[key] = s.value
    return out


def greedy(server, i):
    body = {"messages": [{"role": "user", "content": f"Tell me about number {i}"}], "max_tokens": 16,
            "temperature": 0, "ignore_eos": True, "chat_template_kwargs": NO_THINK}
    r = requests.post(server.url + "/v1/chat/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_concurrent_clients_match_alone(server):
    alone = [greedy(server, i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda i: greedy(server, i), range(8)))
    assert together == alone


def wait_idle(server, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = metrics(server)
        if m["nemotron:num_requests_running"] == 0 and m["nemotron:num_requests_waiting"] == 0:
            return m
        time.sleep(0.1)
    raise AssertionError("requests still running: %s" % metrics(server))


def test_disconnect_mid_stream_cancels(server):
    before = metrics(server)
    body = json.dumps({"messages": [{"role": "user", "content": "go"}], "max_tokens": 100000, "stream": True,
                       "ignore_eos": True, "temperature": 0}).encode()
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        got = b""
        while got.count(b"data:") < 3:
            chunk = s.recv(4096)
            assert chunk
            got += chunk
        assert b"200 OK" in got
        s.close()
    m = wait_idle(server)
    assert m["nemotron:kv_cache_reserved_tokens"] == 0
    assert m["nemotron:request_success_total{abort}"] >= before["nemotron:request_success_total{abort}"] + 3
    # and with requests' streaming API
    with requests.post(server.url + "/v1/completions", stream=True, timeout=60,
                       json={"prompt": "x", "max_tokens": 100000, "stream": True, "ignore_eos": True}) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 4:
                break
    wait_idle(server)
    assert greedy(server, 0)  # still serving


def test_metrics_counters_increase(server):
    a = metrics(server)
    greedy(server, 1)
    b = metrics(server)
    for name in ["nemotron:prompt_tokens_total", "nemotron:generation_tokens_total",
                 "nemotron:time_to_first_token_seconds_count", "nemotron:inter_token_latency_seconds_count",
                 "nemotron:e2e_request_latency_seconds_count", "nemotron:request_success_total{length}"]:
        assert b[name] > a[name], name
    assert b["nemotron:generation_tokens_total"] - a["nemotron:generation_tokens_total"] == 16
    assert b["nemotron:inter_token_latency_seconds_count"] - a["nemotron:inter_token_latency_seconds_count"] == 15
    # One request: one queue time and one prefill time, together within its time to first token.
    for name in ["nemotron:request_queue_time_seconds", "nemotron:request_prefill_time_seconds"]:
        assert b[name + "_count"] - a[name + "_count"] == 1, name
    added = lambda name: b[name + "_sum"] - a[name + "_sum"]
    assert added("nemotron:request_queue_time_seconds") >= 0
    assert added("nemotron:request_prefill_time_seconds") > 0
    assert (added("nemotron:request_queue_time_seconds") + added("nemotron:request_prefill_time_seconds")
            <= added("nemotron:time_to_first_token_seconds"))
    assert b["nemotron:state_slots_total"] >= 1
    assert b["nemotron:kv_cache_capacity_tokens"] > 0
    assert 0 <= b["nemotron:kv_cache_usage_perc"] <= 1


def test_sigterm_graceful_with_stream_in_flight():
    from conftest import Server
    s = Server()
    r = requests.post(s.url + "/v1/completions", stream=True, timeout=60,
                      json={"prompt": "x", "max_tokens": 100000, "stream": True, "ignore_eos": True})
    lines = r.iter_lines()
    next(lines)
    s.proc.terminate()
    assert s.proc.wait(timeout=30) == 0
    assert "stopped" in s.output()
    s.log.close()
