"""A client that disconnects from a NON-streaming request: its sequences are cancelled and the
state slot and KV pages freed within about a second, long before the generation would end.

Timing on the demo model (CPU, 2 cores, measured while writing this test): one sequence of
1,000 tokens takes ~1.5 s, 10,000 tokens ~27 s; n=2 x 1,000 tokens ~3.9 s. The requests below
ask for 20,000 tokens (n=1) or 10,000 (n=2), i.e. ~30-70 s of generation, while the test allows
5 s from the close to an idle engine."""
import json
import socket
import struct
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

NO_THINK = {"enable_thinking": False}
CLEANUP_S = 5.0


def metrics(server):
    r = requests.get(server.url + "/metrics", timeout=30)
    assert r.status_code == 200
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            if s.name.endswith("_bucket"):
                continue
            key = s.name
            if "finished_reason" in s.labels:
                key += "{%s}" % s.labels["finished_reason"]
            out[key] = s.value
    return out


def idle(m):
    return (m["nemotron:num_requests_running"] == 0 and m["nemotron:num_requests_waiting"] == 0
            and m["nemotron:kv_cache_reserved_tokens"] == 0 and m["nemotron:state_slots_used"] == 0)


def wait_for(server, pred, timeout):
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(server)
        if pred(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within %.1f s: %s" % (timeout, m))
        time.sleep(0.05)


def send_raw(server, path, body):
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(data) + data)
    return s


CASES = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "go"}], "max_tokens": 20000,
                              "chat_template_kwargs": NO_THINK}, 1, False),
    ("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 10000, "n": 2}, 2, False),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 20000, "n": 2,
                              "chat_template_kwargs": NO_THINK}, 2, True),
]


@pytest.mark.parametrize("path,body,n,reset", CASES, ids=["chat-close", "completions-n2-close", "chat-n2-reset"])
def test_nonstream_disconnect_cancels(server, path, body, n, reset):
    before = wait_for(server, idle, 30)
    body = dict(body, stream=False, ignore_eos=True, temperature=0.7, seed=1)
    s = send_raw(server, path, body)
    try:
        # Generation is under way (every choice admitted) ...
        wait_for(server, lambda m: m["nemotron:num_requests_running"] == n
                 and m["nemotron:generation_tokens_total"] > before["nemotron:generation_tokens_total"], 30)
        time.sleep(0.3)
        # ... and nothing has been written yet: the status line waits for the result.
        s.settimeout(0.2)
        with pytest.raises(socket.timeout):
            s.recv(1)
        if reset:  # abortive close: RST instead of FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        s.close()
    closed_at = time.monotonic()
    m = wait_for(server, idle, CLEANUP_S)
    elapsed = time.monotonic() - closed_at
    assert elapsed < CLEANUP_S
    assert m["nemotron:request_success_total{abort}"] == before["nemotron:request_success_total{abort}"] + n
    generated = m["nemotron:generation_tokens_total"] - before["nemotron:generation_tokens_total"]
    assert 0 < generated < n * body["max_tokens"] / 4
    # The engine stays idle (nothing was left running in the background).
    time.sleep(0.5)
    assert idle(metrics(server))


def test_long_nonstream_request_still_completes(server):
    """The disconnect check must not misfire on a client that is still waiting: a request that
    runs for several check intervals (100 ms) returns its full result."""
    r = requests.post(server.url + "/v1/completions", timeout=120,
                      json={"prompt": "x", "max_tokens": 600, "ignore_eos": True, "n": 2, "seed": 3})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    j = r.json()
    assert [c["finish_reason"] for c in j["choices"]] == ["length", "length"]
    assert j["usage"]["completion_tokens"] == 1200
    wait_for(server, idle, 10)


def test_serving_after_disconnects(server):
    r = requests.post(server.url + "/v1/chat/completions", timeout=120,
                      json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8,
                            "ignore_eos": True, "temperature": 0, "chat_template_kwargs": NO_THINK})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["object"] == "chat.completion"
    assert j["choices"][0]["finish_reason"] == "length"
    assert j["usage"]["completion_tokens"] == 8
