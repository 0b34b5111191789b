"""`nemotron run` driven through a pipe: two user lines, two streamed replies, exit 0 at EOF."""
import os
import subprocess

BIN = os.environ.get("NEMOTRON_BIN", "build/nemotron")
DEMO = os.path.join(os.environ.get("NEMOTRON_SOURCE_DIR", "."), "models", "demo")


def run(stdin, *args):
    return subprocess.run([BIN, "run", "--model", DEMO, "--memory", "1", "--max-tokens", "8", "--temperature", "0",
                           *args], input=stdin, capture_output=True, text=True, timeout=300)


def test_two_turns_thinking():
    p = run("Hello\nAnd now?\n", "--verbose")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("Thinking...") == 2 and p.stdout.count("...done thinking.") == 2
    rates = [l for l in p.stderr.splitlines() if l.startswith("prompt eval:")]
    assert len(rates) == 2 and "eval:" in rates[0] and "tokens/s" in rates[0]
    # the second prompt contains the first turn: more prompt tokens
    n = [int(l.split()[2]) for l in rates]
    assert n[1] > n[0]


def test_no_think_and_bye():
    p = run("Hi\n/bye\nnever read\n", "--no-think", "--system", "You are terse.")
    assert p.returncode == 0, p.stderr
    assert "Thinking" not in p.stdout
    assert p.stdout.strip()  # one reply


def test_greedy_is_reproducible():
    assert run("Hello\n", "--no-think").stdout == run("Hello\n", "--no-think").stdout


def test_empty_input():
    p = run("")
    assert p.returncode == 0 and p.stdout == ""


def test_bad_model_dir():
    p = subprocess.run([BIN, "run", "--model", "/nonexistent"], input="", capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "error" in p.stderr
