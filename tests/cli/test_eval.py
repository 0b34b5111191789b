"""`nemotron eval`: perplexity against numpy over the transformers fixtures' logits
(tests/data/fixtures/*/expected.safetensors), MTP acceptance against the fixtures' greedy
continuations and chained drafts, text mode against the `tokenizers` library."""
import json
import math
import os
import struct
import subprocess

import numpy as np
import pytest

BIN = os.environ["NEMOTRON_BIN"]
FIXTURES = os.path.join(os.environ["NEMOTRON_TEST_DATA"], "fixtures")
SOURCE = os.environ["NEMOTRON_SOURCE_DIR"]
DEMO = os.path.join(SOURCE, "models", "demo")
NAMES = ["nano-moe", "super-latent-mtp", "dense-mlp", "nano-nvfp4", "super-mixed-mtp"]


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    dtypes = {"F32": np.float32, "I64": np.int64}
    return {k: np.frombuffer(data[8 + n + t["data_offsets"][0]:8 + n + t["data_offsets"][1]],
                             dtype=dtypes[t["dtype"]]).reshape(t["shape"]) for k, t in header.items()}


def expected(name):
    return read_safetensors(os.path.join(FIXTURES, name, "expected.safetensors"))


def nll_sum(logits, ids):
    """sum_i -log_softmax(logits_i)[ids_{i+1}], i = 0..L-2, in float64."""
    l = logits.astype(np.float64)
    m = l.max(1)
    lse = m + np.log(np.exp(l - m[:, None]).sum(1))
    return float((lse[:-1] - l[np.arange(len(ids) - 1), ids[1:]]).sum())


def write_ids(tmp_path, name, ids):
    p = tmp_path / name
    p.write_text(" ".join(map(str, ids)) + "\n")
    return str(p)


def run(*args, timeout=300):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


def eval_json(tmp_path, *args):
    out = str(tmp_path / "eval.json")
    p = run("eval", *args, "--json", out)
    assert p.returncode == 0, p.stderr
    return json.load(open(out)), p.stdout


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("prompt", ["p0", "p2"])
def test_whole_prompt_window_matches_reference(tmp_path, name, prompt):
    e = expected(name)
    if prompt + ".input_ids" not in e:
        prompt = "p1"
    ids = e[prompt + ".input_ids"]
    path = write_ids(tmp_path, "ids.txt", ids)
    for context in (512, len(ids)):
        j, _ = eval_json(tmp_path, "--model", os.path.join(FIXTURES, name), "--ids-file", path,
                         "--context", str(context), "--mtp-drafts", "0")
        r = j["files"][0]["perplexity"]
        want = nll_sum(e[prompt + ".logits"], ids)
        assert r["windows"] == 1 and r["tokens_scored"] == r["tokens"] == len(ids) - 1 and r["tokens_used"] == len(ids)
        assert len(r["window_nll"]) == 1 and math.isclose(r["window_nll"][0], want, rel_tol=1e-4)
        assert math.isclose(r["ppl"], math.exp(want / (len(ids) - 1)), rel_tol=1e-4)
        assert math.isclose(r["nll_sum"], want, rel_tol=1e-4)
        assert math.isclose(r["ppl"], math.exp(r["nll_sum"] / r["tokens_scored"]), rel_tol=1e-12)


@pytest.mark.parametrize("name", ["nano-moe", "super-latent-mtp", "nano-nvfp4"])
def test_windows_start_fresh(tmp_path, name):
    """Stream = p0 + p2[:T0] + p1 with --context T0: the windows are p0, a prefix of p2 (causal, so
    its logits are the first T0 rows of p2's) and p1 (shorter last window)."""
    e = expected(name)
    p0, p1, p2 = (e[f"p{i}.input_ids"] for i in range(3)) if "p2.input_ids" in e else (None,) * 3
    if p0 is None:
        p0, p2 = e["p0.input_ids"], e["p1.input_ids"]
        p1 = None
    T0 = len(p0)
    assert len(p2) >= T0
    parts = [(p0, e["p0.logits"]), (p2[:T0], e["p2.logits" if "p2.logits" in e else "p1.logits"][:T0])]
    if p1 is not None and len(p1) >= 2:
        parts.append((p1, e["p1.logits"]))
    stream = np.concatenate([p for p, _ in parts])
    want = sum(nll_sum(l, p) for p, l in parts)
    scored = sum(len(p) - 1 for p, _ in parts)
    model = os.path.join(FIXTURES, name)
    j, _ = eval_json(tmp_path, "--model", model, "--ids-file", write_ids(tmp_path, "s.txt", stream),
                     "--context", str(T0), "--mtp-drafts", "0")
    r = j["files"][0]["perplexity"]
    assert r["windows"] == len(parts) and r["tokens_scored"] == scored
    for got, (p, l) in zip(r["window_nll"], parts):
        assert math.isclose(got, nll_sum(l, p), rel_tol=1e-4)
    assert math.isclose(r["ppl"], math.exp(want / scored), rel_tol=1e-4)
    # A trailing 1-token window is dropped.
    one_more = np.concatenate([p0, p2[:T0], p0[:1]])
    j, _ = eval_json(tmp_path, "--model", model, "--ids-file", write_ids(tmp_path, "t.txt", one_more),
                     "--context", str(T0), "--mtp-drafts", "0")
    r = j["files"][0]["perplexity"]
    want2 = nll_sum(parts[0][1], p0) + nll_sum(parts[1][1], p2[:T0])
    assert r["windows"] == 2 and r["tokens_scored"] == 2 * (T0 - 1) and r["tokens_used"] == 2 * T0 + 1
    assert math.isclose(r["ppl"], math.exp(want2 / (2 * (T0 - 1))), rel_tol=1e-4)
    # --max-tokens keeps the first N tokens of the file.
    j, _ = eval_json(tmp_path, "--model", model, "--ids-file", write_ids(tmp_path, "u.txt", np.concatenate([p0, p2])),
                     "--context", str(T0), "--max-tokens", str(2 * T0), "--mtp-drafts", "0")
    r = j["files"][0]
    assert r["tokens_in_file"] == T0 + len(p2) and r["perplexity"]["tokens_used"] == 2 * T0
    assert math.isclose(r["perplexity"]["ppl"], math.exp(want2 / (2 * (T0 - 1))), rel_tol=1e-4)


def test_several_files_keep_their_order(tmp_path):
    e = expected("nano-moe")
    a = write_ids(tmp_path, "a.txt", e["p0.input_ids"])
    b = write_ids(tmp_path, "b.txt", e["p2.input_ids"])
    j, out = eval_json(tmp_path, "--model", os.path.join(FIXTURES, "nano-moe"), "--ids-file", b, "--ids-file", a)
    assert [f["path"] for f in j["files"]] == [b, a]
    assert math.isclose(j["files"][0]["perplexity"]["nll_sum"], nll_sum(e["p2.logits"], e["p2.input_ids"]), rel_tol=1e-4)
    assert "MTP acceptance: not run (no MTP head)" in out


def acceptance(generated, step_drafts, K):
    """The protocol's counts, recomputed from the per-step drafts."""
    elig, acc, given = [0] * K, [0] * K, [0] * K
    for gen, steps in zip(generated, step_drafts):
        for n in range(len(gen)):
            d = steps[n] if n < len(steps) else []
            ok = True
            for k in range(1, K + 1):
                if n + k >= len(gen):  # g_{n+1+k} is gen[n+k]
                    break
                elig[k - 1] += 1
                given[k - 1] += ok
                ok = ok and d[k - 1] == gen[n + k]
                acc[k - 1] += ok
    return elig, acc, given


MTP_CASES = [(n, p) for n in ("super-latent-mtp", "super-mixed-mtp") for p in ("p0", "p1", "p2")
             if p + ".mtp_draft_ids" in expected(n)]


@pytest.mark.parametrize("name,prompt", MTP_CASES)
def test_mtp_step0_drafts_match_reference(tmp_path, name, prompt):
    e = expected(name)
    ids, greedy, drafts = (e[prompt + k].tolist() for k in (".input_ids", ".greedy_ids", ".mtp_draft_ids"))
    model = os.path.join(FIXTURES, name)
    stream = write_ids(tmp_path, "s.txt", ids + greedy)
    j, out = eval_json(tmp_path, "--model", model, "--ids-file", stream, "--mtp-prompts", "1",
                       "--mtp-prompt-len", str(len(ids)), "--mtp-gen", str(len(greedy)))
    m = j["files"][0]["mtp"]
    assert m["ran"] and m["stride"] == 0
    assert m["generated"] == [greedy]
    assert m["step_drafts"][0][0] == drafts
    assert len(m["step_drafts"][0]) == len(greedy) - 1
    elig, acc, given = acceptance(m["generated"], m["step_drafts"], 3)
    assert m["eligible"] == elig and m["accepted"] == acc and m["given"] == given
    for k in range(3):
        assert math.isclose(m["cumulative"][k], acc[k] / elig[k])
        assert (m["conditional"][k] is None) if not given[k] else math.isclose(m["conditional"][k], acc[k] / given[k])
    assert math.isclose(m["tokens_per_step"], 1 + sum(m["cumulative"]))
    assert "MTP acceptance (CPU reference)" in out
    # gen = 4: only step 0 has a 3rd draft to check, so position 3 is the fixture's step-0 result.
    j, _ = eval_json(tmp_path, "--model", model, "--ids-file", stream, "--mtp-prompts", "1",
                     "--mtp-prompt-len", str(len(ids)), "--mtp-gen", "4")
    m = j["files"][0]["mtp"]
    assert m["eligible"] == [3, 2, 1]
    assert m["accepted"][2] == int(all(drafts[k] == greedy[k + 1] for k in range(3)))


def test_mtp_prompt_stride_and_skip(tmp_path):
    e = expected("super-latent-mtp")
    stream = e["p0.input_ids"].tolist() + e["p0.greedy_ids"].tolist()  # 53 tokens
    model = os.path.join(FIXTURES, "super-latent-mtp")
    path = write_ids(tmp_path, "s.txt", stream)
    j, _ = eval_json(tmp_path, "--model", model, "--ids-file", path, "--mtp-prompts", "3",
                     "--mtp-prompt-len", "20", "--mtp-gen", "5", "--mtp-drafts", "2")
    m = j["files"][0]["mtp"]
    assert m["stride"] == (53 - 20 - 5) // 2 and len(m["generated"]) == 3
    assert all(len(g) == 5 for g in m["generated"]) and len(m["eligible"]) == 2
    elig, acc, _ = acceptance(m["generated"], m["step_drafts"], 2)
    assert m["eligible"] == elig == [3 * 4, 3 * 3] and m["accepted"] == acc
    j, out = eval_json(tmp_path, "--model", model, "--ids-file", path, "--mtp-prompt-len", "50", "--mtp-gen", "4")
    m = j["files"][0]["mtp"]
    assert not m["ran"] and "53 tokens" in m["skipped"]
    assert "skipped" in out


def test_text_file_on_demo(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    text_path = os.path.join(SOURCE, "README.md")
    text = open(text_path, encoding="utf-8").read()
    ref = tokenizers.Tokenizer.from_file(os.path.join(DEMO, "tokenizer.json")).encode(text, add_special_tokens=False).ids
    p = run("tokenize", "--tokenizer", DEMO, "--text-file", text_path)
    assert p.returncode == 0, p.stderr
    ours = json.loads(p.stdout)
    assert ours == ref
    j, out = eval_json(tmp_path, "--model", DEMO, "--text-file", text_path, "--context", "128",
                       "--mtp-prompts", "2", "--mtp-prompt-len", "16", "--mtp-gen", "4")
    f = j["files"][0]
    r = f["perplexity"]
    n = len(ref)
    assert f["kind"] == "text" and f["tokens_in_file"] == n == r["tokens_used"]
    full, rest = divmod(n, 128)
    assert r["windows"] == full + (rest >= 2)
    assert r["tokens_scored"] == full * 127 + (rest - 1 if rest >= 2 else 0)
    assert math.isfinite(r["mean_nll"]) and math.isclose(r["mean_nll"], r["nll_sum"] / r["tokens_scored"])
    assert "README.md" in out and f"{r['ppl']:.4f}" in out
    # The same ids through --ids-file give the same numbers.
    j2, _ = eval_json(tmp_path, "--model", DEMO, "--ids-file", write_ids(tmp_path, "r.txt", ref), "--context", "128",
                      "--mtp-prompts", "2", "--mtp-prompt-len", "16", "--mtp-gen", "4")
    assert j2["files"][0]["perplexity"]["nll_sum"] == r["nll_sum"]
    assert j2["files"][0]["mtp"]["generated"] == f["mtp"]["generated"]


@pytest.mark.parametrize("case,message", [
    ("missing", "no such file"),
    ("empty", "no tokens"),
    ("context", "--context must be at least 2"),
    ("mtp", "has no MTP head"),
    ("garbage", "expected whitespace-separated token ids"),
    ("vocab", "outside the vocabulary"),
    ("one", "at least 2 tokens"),
    ("none", "--text-file or --ids-file"),
    ("notok", "tokenizer"),
])
def test_bad_inputs(tmp_path, case, message):
    model = os.path.join(FIXTURES, "nano-moe")
    good = write_ids(tmp_path, "g.txt", [5, 6, 7])
    args = ["--ids-file", good]
    if case == "missing":
        args = ["--ids-file", str(tmp_path / "nope.txt")]
    elif case == "empty":
        args = ["--ids-file", write_ids(tmp_path, "e.txt", [])]
    elif case == "context":
        args += ["--context", "1"]
    elif case == "mtp":
        args += ["--mtp-drafts", "3"]
    elif case == "garbage":
        (tmp_path / "x.txt").write_text("1 2 x3\n")
        args = ["--ids-file", str(tmp_path / "x.txt")]
    elif case == "vocab":
        args = ["--ids-file", write_ids(tmp_path, "v.txt", [1, 2, 99999])]
    elif case == "one":
        args = ["--ids-file", write_ids(tmp_path, "o.txt", [4])]
    elif case == "none":
        args = []
    elif case == "notok":
        (tmp_path / "t.txt").write_text("hello")
        args = ["--text-file", str(tmp_path / "t.txt")]
    p = run("eval", "--model", model, *args)
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert "terminate" not in p.stderr
