"""Tensor and expert parallelism from the command line: `nemotron score --device cpu` with
--tensor-parallel-size / --expert-parallel-size writes the logits of the unsharded run (within
1e-5 of their scale) on every fixture; `generate` gives the same ids; sizes that do not split
and the CUDA backend are clear errors."""
import json
import os
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
