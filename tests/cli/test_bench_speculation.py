"""`nemotron bench --speculative-tokens` on the CPU backend (the demo model, which has an MTP
head): the table's JSON, forced acceptance (rate 1 keeps every draft: K + 1 tokens per verify;
rate 0 keeps none), the target's own acceptance on chat prompts, and the errors."""
import json
import os
import subprocess
import tempfile

BIN = os.environ["NEMOTRON_BIN"]
DEMO = os.path.join(os.environ.get("NEMOTRON_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
                    "models", "demo")


def bench(*args):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "b.json")
        p = subprocess.run([BIN, "bench", "--model", DEMO, "--device", "cpu", "--json", out, *args],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        with open(out) as f:
            return json.load(f)["speculation"], p.stdout


def runs(j):
    return {(r["K"], r["mode"], r["batch"]): r for r in j["runs"]}


def test_forced_acceptance_rates_give_their_tokens_per_verify():
    j, out = bench("--speculative-tokens", "2,0", "--spec-accept", "1.0", "--spec-batch", "1,2",
                   "--spec-tokens", "24")
    r = runs(j)
    assert set(r) == {(0, "off", 1), (0, "off", 2), (2, "always", 1), (2, "always", 2), (2, "auto", 1),
                      (2, "auto", 2)}
    assert j["settings"]["K"] == [0, 2]  # sorted: the baseline first
    for B in (1, 2):
        assert r[(0, "off", B)]["tokens"] == 24 * B
        assert r[(0, "off", B)]["tokens_per_verify"] == 1.0
        assert r[(2, "always", B)]["tokens"] == 24 * B
        assert r[(2, "always", B)]["tokens_per_verify"] == 3.0
        # Every decode step verifies: 23 tokens after the first in steps of 3 (the last may stop early).
        assert 7 <= r[(2, "always", B)]["verifies_per_request"] <= 8
        assert r[(2, "always", B)]["vs_k0"] > 0
        assert r[(0, "off", B)]["decode_tok_s"] > 0
    assert "tokens/verify" in out and "vs K=0" in out
    j, _ = bench("--speculative-tokens", "3", "--spec-accept", "0", "--spec-tokens", "12", "--no-spec-auto")
    (only,) = j["runs"]
    assert only["mode"] == "always" and only["tokens_per_verify"] == 1.0 and only["tokens"] == 12


def test_real_acceptance_on_chat_prompts():
    j, _ = bench("--speculative-tokens", "3", "--spec-tokens", "48", "--no-spec-auto")
    assert j["settings"]["prompts"].startswith("chat prompts")
    (only,) = j["runs"]
    # The trained demo model's head is right most of the time on its own text (3.1 per verify
    # measured with generate); far above what random drafts would give.
    assert only["tokens_per_verify"] > 1.8


def test_errors_name_the_flag():
    for args, what in [(["--spec-accept", "1.5"], "--spec-accept"), (["--spec-accept", "x"], "--spec-accept"),
                       (["--spec-batch", "0"], "--spec-batch"), (["--speculative-tokens", "17"], "--speculative-tokens")]:
        full = ["--speculative-tokens", "1", *args] if args[0] != "--speculative-tokens" else args
        p = subprocess.run([BIN, "bench", "--model", DEMO, "--device", "cpu", *full], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode != 0 and what in p.stderr, (args, p.stderr)


def test_gpu_section_flags_are_named_before_the_device_is_asked_for():
    # On any machine (with or without a GPU), a bad flag of the GPU sections is the error.
    for args, what in [(["--batch", "0"], "--batch"), (["--prefill", "0"], "--prefill"),
                       (["--mixed-prompt", "128"], "--mixed-prompt needs --batch"),
                       (["--batch", "8", "--mixed-prompt", "0"], "--mixed-prompt"),
                       (["--batch", "64", "--mixed-prompt", "2048"], "fit --chunk 2048"),
                       (["--batch", "64", "--mixed-prompt", "16x128"], "fit --chunk 2048"),
                       (["--batch", "8", "--mixed-prompt", "0x128"], "N and P must be at least 1"),
                       (["--batch", "8", "--mixed-prompt", "4x"], "is not P or NxP"),
                       (["--batch", "8", "--mixed-prompt", "128,"], "is not P or NxP")]:
        p = subprocess.run([BIN, "bench", "--model", DEMO, *args], capture_output=True, text=True, timeout=120)
        assert p.returncode != 0 and what in p.stderr, (args, p.stderr)
