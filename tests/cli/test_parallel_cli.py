"""Tensor and expert parallelism from the command line: `nemotron score --device cpu` with
--tensor-parallel-size / --expert-parallel-size writes the logits of the unsharded run (within
1e-5 of their scale) on every fixture; `generate` gives the same ids; sizes that do not split
and the CUDA backend are clear errors. Over two nodes (two processes on localhost, --nnodes 2)
`score` writes the bytes one process with both ranks writes; node flags that do not fit are
clear errors."""
import json
import os
import socket
import subprocess
import tempfile

import numpy as np
import pytest

from test_model_cli import read_safetensors

BIN = os.environ["NEMOTRON_BIN"]
FIXTURES = os.path.join(os.environ["NEMOTRON_TEST_DATA"], "fixtures")
NAMES = sorted(n for n in os.listdir(FIXTURES) if os.path.exists(os.path.join(FIXTURES, n, "config.json")))


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)


def score(name, ids, *flags, chunk=None):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "logits.safetensors")
        args = ["score", "--device", "cpu", "--model", os.path.join(FIXTURES, name), "--ids", ",".join(map(str, ids)),
                "--out", out, *flags]
        if chunk:
            args += ["--chunk", str(chunk)]
        p = run(*args)
        assert p.returncode == 0, p.stderr
        return read_safetensors(out)["logits"], p.stderr


@pytest.mark.parametrize("name", NAMES)
def test_score_sharded_equals_unsharded(name):
    ids = read_safetensors(os.path.join(FIXTURES, name, "expected.safetensors"))["p0.input_ids"]
    ref, _ = score(name, ids)
    for flags in (["--tensor-parallel-size", "2"], ["--tensor-parallel-size", "4"], ["--expert-parallel-size", "2"],
                  ["--expert-parallel-size", "4"], ["--tensor-parallel-size", "2", "--expert-parallel-size", "2"]):
        got, err = score(name, ids, *flags, chunk=3)  # prefill chunks and their decode continuation
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max()), flags
        assert "ranks" in err


def test_generate_sharded_gives_the_same_ids():
    path = os.path.join(FIXTURES, "super-latent-mtp")
    ids = read_safetensors(os.path.join(path, "expected.safetensors"))["p1.input_ids"]
    args = ["generate", "--device", "cpu", "--model", path, "--ids", ",".join(map(str, ids)), "--max-tokens", "6",
            "--ignore-eos", "--json", "--mtp-drafts", "2"]
    ref = run(*args)
    assert ref.returncode == 0, ref.stderr
    got = run(*args, "--tensor-parallel-size", "2", "--expert-parallel-size", "4")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout.strip().splitlines()[-1]) == json.loads(ref.stdout.strip().splitlines()[-1])


def test_sizes_that_do_not_split_and_cuda_are_clear_errors():
    path = os.path.join(FIXTURES, "nano-moe")
    p = run("score", "--device", "cpu", "--model", path, "--ids", "1,2,3", "--out", "/dev/null",
            "--tensor-parallel-size", "3")
    assert p.returncode != 0
    assert "num_attention_heads (4) is not divisible by --tensor-parallel-size 3" in p.stderr
    p = run("score", "--device", "cpu", "--model", path, "--ids", "1,2,3", "--out", "/dev/null",
            "--tensor-parallel-size", "2", "--expert-parallel-size", "3")
    assert p.returncode != 0
    assert "the smaller must divide the larger" in p.stderr
    # The sharded GPU forward needs a GPU per rank (or NEMOTRON_SAME_DEVICE_RANKS=1 on one GPU).
    p = run("score", "--device", "cuda", "--model", path, "--ids", "1,2,3", "--out", "/dev/null",
            "--tensor-parallel-size", "2")
    assert p.returncode != 0
    assert ("no CUDA device" in p.stderr or "needs 2 GPUs" in p.stderr), p.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sizes", [["--tensor-parallel-size", "2"], ["--expert-parallel-size", "2"]])
def test_score_over_two_nodes_equals_one_process(sizes):
    path = os.path.join(FIXTURES, "super-mixed-mtp")
    ids = ",".join(map(str, read_safetensors(os.path.join(path, "expected.safetensors"))["p0.input_ids"]))
    with tempfile.TemporaryDirectory() as tmp:
        common = ["score", "--device", "cpu", "--model", path, "--ids", ids, "--chunk", "3", *sizes]
        one = run(*common, "--out", os.path.join(tmp, "one.safetensors"))
        assert one.returncode == 0, one.stderr
        port = str(free_port())
        node = ["--nnodes", "2", "--master-port", port]
        follower = subprocess.Popen([BIN, *common, "--out", os.path.join(tmp, "unused"), *node, "--node-rank", "1"],
                                    stderr=subprocess.PIPE, text=True)
        leader = run(*common, "--out", os.path.join(tmp, "two.safetensors"), *node)
        _, err = follower.communicate(timeout=120)
        assert leader.returncode == 0, leader.stderr
        assert follower.returncode == 0, err
        assert "over 2 nodes" in leader.stderr
        assert not os.path.exists(os.path.join(tmp, "unused"))  # a follower writes nothing
        with open(os.path.join(tmp, "one.safetensors"), "rb") as a, open(os.path.join(tmp, "two.safetensors"), "rb") as b:
            assert a.read() == b.read()


def test_generate_with_drafts_over_two_nodes_gives_the_same_ids():
    # MTP drafts (mtp_draft / roll_back told to the follower) over two processes.
    path = os.path.join(FIXTURES, "super-latent-mtp")
    ids = ",".join(map(str, read_safetensors(os.path.join(path, "expected.safetensors"))["p1.input_ids"]))
    common = ["generate", "--device", "cpu", "--model", path, "--ids", ids, "--max-tokens", "8", "--ignore-eos",
              "--json", "--mtp-drafts", "2", "--tensor-parallel-size", "2", "--expert-parallel-size", "2"]
    one = run(*common)
    assert one.returncode == 0, one.stderr
    node = ["--nnodes", "2", "--master-port", str(free_port())]
    follower = subprocess.Popen([BIN, *common, *node, "--node-rank", "1"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    two = run(*common, *node)
    out, err = follower.communicate(timeout=120)
    assert two.returncode == 0, two.stderr
    assert follower.returncode == 0, err
    assert out == ""  # the follower prints no result
    assert json.loads(two.stdout.strip().splitlines()[-1]) == json.loads(one.stdout.strip().splitlines()[-1])


def test_node_flags_that_do_not_fit_are_clear_errors():
    path = os.path.join(FIXTURES, "nano-moe")
    base = ["score", "--model", path, "--ids", "1,2,3", "--out", "/dev/null"]
    for flags, message in ((["--device", "cpu", "--tensor-parallel-size", "2", "--nnodes", "2", "--node-rank", "2"],
                            "--node-rank 2: must be in [0, --nnodes 2)"),
                           (["--device", "cpu", "--tensor-parallel-size", "4", "--nnodes", "2"],
                            "on the CPU backend each node holds one rank"),
                           (["--device", "cpu", "--tensor-parallel-size", "2", "--nnodes", "4"],
                            "the world must be a multiple of --nnodes")):
        p = run(*base, *flags)
        assert p.returncode != 0
        assert message in p.stderr, p.stderr
