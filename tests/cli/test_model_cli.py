"""`nemotron score`, `generate` and `inspect` from the command line, against the
transformers fixtures (tests/data/fixtures/*/expected.safetensors)."""
import json
import os
import struct
import subprocess
import tempfile

import numpy as np
import pytest

BIN = os.environ["NEMOTRON_BIN"]
FIXTURES = os.path.join(os.environ["NEMOTRON_TEST_DATA"], "fixtures")
NAMES = ["nano-moe", "super-latent-mtp", "dense-mlp", "nano-nvfp4", "super-mixed-mtp"]


def read_safetensors(path):
    """Independent reader (numpy), so the test does not trust our own reader."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    dtypes = {"F32": np.float32, "I64": np.int64}
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + b:8 + n + e], dtype=dtypes[t["dtype"]]).reshape(t["shape"])
    return out


def run(*args):
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)
    return p


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_score_reproduces_reference_logits(name, chunk):
    expected = read_safetensors(os.path.join(FIXTURES, name, "expected.safetensors"))
    ids = expected["p0.input_ids"]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "logits.safetensors")
        args = ["score", "--model", os.path.join(FIXTURES, name), "--ids", ",".join(map(str, ids)), "--out", out]
        if chunk:
            args += ["--chunk", str(chunk)]
        p = run(*args)
        assert p.returncode == 0, p.stderr
        got = read_safetensors(out)["logits"]
    ref = expected["p0.logits"]
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-3


def test_score_reads_ids_from_a_file():
    expected = read_safetensors(os.path.join(FIXTURES, "nano-moe", "expected.safetensors"))
    ids = expected["p0.input_ids"]
    with tempfile.TemporaryDirectory() as tmp:
        path, out = os.path.join(tmp, "ids.txt"), os.path.join(tmp, "logits.safetensors")
        with open(path, "w") as f:
            f.write("[" + ", ".join(map(str, ids)) + "]\n")
        p = run("score", "--model", os.path.join(FIXTURES, "nano-moe"), "--ids-file", path, "--out", out)
        assert p.returncode == 0, p.stderr
        got = read_safetensors(out)["logits"]
    assert np.abs(got - expected["p0.logits"]).max() <= 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_generate_greedy_and_mtp_drafts(name):
    expected = read_safetensors(os.path.join(FIXTURES, name, "expected.safetensors"))
    ids = expected["p1.input_ids"]
    greedy = expected["p1.greedy_ids"].tolist()
    has_mtp = "p1.mtp_draft_ids" in expected
    args = ["generate", "--model", os.path.join(FIXTURES, name), "--ids", ",".join(map(str, ids)),
            "--max-tokens", str(len(greedy)), "--ignore-eos", "--json"]
    if has_mtp:
        args += ["--mtp-drafts", "3"]
    p = run(*args)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["ids"] == greedy
    if has_mtp:
        assert result["mtp_drafts"] == expected["p1.mtp_draft_ids"].tolist()
    else:
        assert result["mtp_drafts"] == []


def test_generate_stops_at_eos_unless_ignored():
    model = os.path.join(FIXTURES, "nano-moe")
    expected = read_safetensors(os.path.join(model, "expected.safetensors"))
    ids = ",".join(map(str, expected["p0.input_ids"]))
    greedy = expected["p0.greedy_ids"].tolist()
    # Declare a later greedy token (its first occurrence) a stop id: generation ends right after it.
    k = next(i for i in range(2, len(greedy)) if greedy[i] not in greedy[:i])
    p = run("generate", "--model", model, "--ids", ids, "--max-tokens", "12", "--stop-ids", str(greedy[k]), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["ids"] == greedy[:k + 1]
    p = run("generate", "--model", model, "--ids", ids, "--max-tokens", "12", "--stop-ids", str(greedy[k]),
            "--ignore-eos", "--json")
    assert json.loads(p.stdout.strip().splitlines()[-1])["ids"] == greedy


def test_mtp_drafts_on_model_without_mtp_is_an_error():
    p = run("generate", "--model", os.path.join(FIXTURES, "nano-moe"), "--ids", "5,6", "--mtp-drafts", "2")
    assert p.returncode != 0
    assert "has no MTP head" in p.stderr


@pytest.mark.parametrize("args,message", [
    (["score", "--model", "/nonexistent", "--ids", "1", "--out", "/tmp/x"], "not a model directory"),
    (["score", "--model", FIXTURES + "/nano-moe", "--ids", "1,abc", "--out", "/tmp/x"], "--ids"),
    (["score", "--model", FIXTURES + "/nano-moe", "--ids", "1,99999", "--out", "/tmp/x"], "outside the vocabulary"),
    (["score", "--model", FIXTURES + "/nano-moe", "--out", "/tmp/x"], "give exactly one of --ids, --ids-file"),
    (["score", "--model", FIXTURES + "/nano-moe", "--ids-file", "/nonexistent", "--out", "/tmp/x"], "/nonexistent"),
    (["score", "--model", FIXTURES + "/nano-moe", "--ids", "1", "--mamba-ssm-cache-dtype", "fp16", "--out", "/tmp/x"],
     "--mamba-ssm-cache-dtype"),
    (["generate", "--model", FIXTURES + "/nano-moe", "--ids", ""], "give the prompt with --ids or --prompt"),
    (["generate", "--model", FIXTURES + "/nano-moe", "--ids", ","], "expected comma-separated token ids"),
    (["generate", "--model", FIXTURES + "/nano-moe", "--ids", "[]"], "no token ids"),
    (["generate", "--model", FIXTURES + "/nano-moe", "--ids", "1", "--prompt", "x"], "excludes"),
    (["generate", "--model", FIXTURES + "/nano-moe", "--prompt", "x"], "tokenizer"),
    (["inspect"], "--model"),
    (["frobnicate"], "unknown command"),
])
def test_bad_arguments_give_clear_errors(args, message):
    p = run(*args)
    assert p.returncode != 0
    assert message in p.stderr, p.stderr


def test_inspect_reports_formats_and_roofline():
    p = run("inspect", "--model", os.path.join(FIXTURES, "super-mixed-mtp"), "--bandwidth", "1000")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "MIXED_PRECISION" in out
    assert "mamba.in_proj" in out and "FP8" in out and "NVFP4" in out
    assert "mtp head    *E" in out
    assert "decode ceiling at 1000.0 GB/s" in out
