"""`nemotron serve` over two nodes (model/nodes): two processes on localhost, node 0 serving
HTTP with one rank, node 1 following with the other (--tensor-parallel-size 2 --nnodes 2).
Its answers -- greedy and seeded sampled text, logprobs, a stream -- are those of one process
with both ranks as threads; stopping node 0 ends node 1 with status 0; a killed follower ends
an idle node 0 with status 1 and a message naming node 1, and a killed node 0 its follower."""
import os
import signal
import subprocess
import time

import requests

from conftest import BIN, DEMO, Server, free_port

TP2 = ["--device", "cpu", "--tensor-parallel-size", "2", "--speculative-tokens", "0"]


def follower(port, *extra):
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"nemotron-node1-{port}.log"), "w+")
    proc = subprocess.Popen([BIN, "serve", "--model", DEMO, "--memory", "2", *TP2, "--nnodes", "2", "--node-rank", "1",
                             "--master-port", str(port), *extra], stdout=log, stderr=subprocess.STDOUT)
    return proc, log


def read(log):
    log.flush()
    log.seek(0)
    return log.read()


def answers(url):
    out = []
    for body in ({"prompt": "The history of", "max_tokens": 24, "temperature": 0, "logprobs": 2},
                 {"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0.9, "seed": 5}):
        r = requests.post(url + "/v1/completions", json=body, timeout=120)
        assert r.status_code == 200, r.text
        c = r.json()["choices"][0]
        out.append((c["text"], c["logprobs"]))
    r = requests.post(url + "/v1/chat/completions", timeout=120, stream=True,
                      json={"messages": [{"role": "user", "content": "Say something"}], "max_tokens": 16,
                            "temperature": 0, "stream": True})
    assert r.status_code == 200
    out.append(b"".join(r.iter_content(None)).decode().count("data:"))
    return out


def test_two_nodes_answer_as_one_process_and_stop_together():
    single = Server(*TP2)
    try:
        want = answers(single.url)
    finally:
        single.stop()
    port = free_port()
    node1, log1 = follower(port)
    try:
        node0 = Server(*TP2, "--nnodes", "2", "--master-port", str(port))
        try:
            assert answers(node0.url) == want
        finally:
            node0.stop()
        assert node0.proc.returncode == 0, node0.output()
        assert node1.wait(timeout=30) == 0, read(log1)
        assert "node 0 ended the run" in read(log1)
    finally:
        if node1.poll() is None:
            node1.kill()


def test_a_killed_follower_ends_node_0():
    # With no request in flight: node 0 watches its links (and would fail the next call).
    port = free_port()
    node1, log1 = follower(port)
    node0 = Server(*TP2, "--nnodes", "2", "--master-port", str(port))
    try:
        node1.send_signal(signal.SIGKILL)
        node1.wait(timeout=10)
        deadline = time.time() + 15
        while node0.proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert node0.proc.returncode == 1, node0.output()
        assert "node 1 failed or disconnected" in node0.output()
    finally:
        node0.stop()


def test_a_killed_node_0_ends_the_follower():
    port = free_port()
    node1, log1 = follower(port)
    try:
        node0 = Server(*TP2, "--nnodes", "2", "--master-port", str(port))
        node0.proc.send_signal(signal.SIGKILL)
        node0.proc.wait(timeout=10)
        assert node1.wait(timeout=15) == 1, read(log1)
        assert "node 0 failed or disconnected" in read(log1) or "closed" in read(log1), read(log1)
    finally:
        if node1.poll() is None:
            node1.kill()
