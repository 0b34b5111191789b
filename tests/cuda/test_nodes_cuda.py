"""Several nodes over NCCL (model/nodes with the CUDA backend), on one machine with two GPUs:
two processes, node 0 on GPU 0 and node 1 on GPU 1 (CUDA_VISIBLE_DEVICES), each holding one
rank; NCCL joins them through the ids node 0 sends in its hello. `score` writes the logits one
process with both GPUs writes (TP 2, EP 2: two ranks, the same sums); `serve` answers what
one process serves, and a killed follower ends node 0 with status 1. Skipped with fewer than
two GPUs (label gpu: scripts/gpu/run-tests.sh on a machine with several)."""
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
from nemotron_server import BIN, DEMO, Server, free_port  # noqa: E402


def gpu_count():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


pytestmark = pytest.mark.skipif(gpu_count() < 2, reason="needs two GPUs")


def on_gpu(i):
    return dict(os.environ, CUDA_VISIBLE_DEVICES=str(i))


def read_logits(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    t = header["logits"]
    b, e = t["data_offsets"]
    return np.frombuffer(data[b:e], dtype=np.float32).reshape(t["shape"])


IDS = "1,1841,1278,4190,1307,1278,7087,1063,1294,1261"


@pytest.mark.parametrize("sizes", [["--tensor-parallel-size", "2"], ["--expert-parallel-size", "2"]])
def test_score_over_two_nodes_equals_one_process(sizes):
    with tempfile.TemporaryDirectory() as tmp:
        common = ["score", "--device", "cuda", "--model", DEMO, "--ids", IDS, *sizes]
        one = subprocess.run([BIN, *common, "--out", f"{tmp}/one.st"], capture_output=True, text=True, timeout=300)
        assert one.returncode == 0, one.stderr
        node = ["--nnodes", "2", "--master-port", str(free_port())]
        follower = subprocess.Popen([BIN, *common, "--out", f"{tmp}/unused", *node, "--node-rank", "1"],
                                    stderr=subprocess.PIPE, text=True, env=on_gpu(1))
        leader = subprocess.run([BIN, *common, "--out", f"{tmp}/two.st", *node], capture_output=True, text=True,
                                timeout=300, env=on_gpu(0))
        _, err = follower.communicate(timeout=120)
        assert leader.returncode == 0, leader.stderr
        assert follower.returncode == 0, err
        want, got = read_logits(f"{tmp}/one.st"), read_logits(f"{tmp}/two.st")
        # Two ranks: every all-reduce adds two values (NCCL's order cannot matter); allow rounding.
        assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


def test_serve_over_two_nodes_and_a_killed_follower():
    body = {"prompt": [int(i) for i in IDS.split(",")], "max_tokens": 16, "temperature": 0,
            "ignore_eos": True}
    one = Server("--device", "cuda", "--tensor-parallel-size", "2", "--max-num-seqs", "4", memory="4")
    try:
        want = requests.post(one.url + "/v1/completions", json=body, timeout=120).json()["choices"][0]["text"]
    finally:
        one.stop()
    port = str(free_port())
    flags = ["--device", "cuda", "--tensor-parallel-size", "2", "--max-num-seqs", "4", "--nnodes", "2",
             "--master-port", port]
    node1 = subprocess.Popen([BIN, "serve", "--model", DEMO, "--memory", "4", *flags, "--node-rank", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=on_gpu(1))
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = "0"
    try:
        node0 = Server(*flags, memory="4")
    finally:
        if saved is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    try:
        r = requests.post(node0.url + "/v1/completions", json=body, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == want
        node1.send_signal(signal.SIGKILL)
        node1.wait(timeout=10)
        deadline = time.time() + 20
        while node0.proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert node0.proc.returncode == 1, node0.output()
        assert "node 1 failed or disconnected" in node0.output()
    finally:
        node0.stop()
        if node1.poll() is None:
            node1.kill()
