"""Issue 18: one long prompt must not block everyone. With a small step budget a long prompt
needs many engine steps of prefill; a short request sent while it prefills gets its reply
within a step or two (the step budget is shared between the prompts), not after the long
prompt's whole prefill."""
import subprocess
import threading
import time

import pytest
import requests

from conftest import BIN, DEMO, Server


@pytest.fixture(scope="module")
def server():
    s = Server("--max-step-tokens", "64")
    yield s
    s.stop()


def running(server):
    for line in requests.get(server.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("nemotron:num_requests_running"):
            return float(line.split()[-1])
    raise AssertionError("no num_requests_running metric")


def complete(server, prompt, out, key):
    t = time.monotonic()
    r = requests.post(server.url + "/v1/completions", json={"prompt": prompt, "max_tokens": 1, "temperature": 0},
                      timeout=600)
    assert r.status_code == 200, r.text
    out[key] = (t, time.monotonic())


def test_short_request_is_not_blocked_by_a_long_prompt(server):
    long_ids = [100 + (i * 37) % 8000 for i in range(3072)]  # 48 steps of prefill at 64 tokens
    times = {}
    long = threading.Thread(target=complete, args=(server, long_ids, times, "long"))
    long.start()
    deadline = time.monotonic() + 60
    while running(server) < 1:  # the long prompt is admitted and prefilling
        assert time.monotonic() < deadline
        time.sleep(0.01)
    complete(server, [5, 6, 7], times, "short")
    long.join()
    long_latency = times["long"][1] - times["long"][0]
    short_latency = times["short"][1] - times["short"][0]
    assert times["short"][1] < times["long"][1], times
    # The short reply comes within a few steps, not after the long prompt's 48.
    assert short_latency < 0.25 * long_latency, (short_latency, long_latency)


def steps(server):
    for line in requests.get(server.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("nemotron:engine_steps_total"):
            return float(line.split()[-1])
    raise AssertionError("no engine_steps_total metric")


def test_prompts_only_steps_take_the_prefill_budget():
    """--prefill-step-tokens: a prompt arriving while nothing decodes is prefilled in steps of the
    larger budget (3 steps of 1,024 instead of 48 of 64); the plan names both budgets."""
    s = Server("--max-step-tokens", "64", "--prefill-step-tokens", "1024")
    try:
        assert "64 tokens per step, 1024 in steps that decode no sequence" in s.output()
        before = steps(s)
        times = {}
        complete(s, [100 + (i * 37) % 8000 for i in range(3072)], times, "long")
        assert steps(s) - before <= 4, steps(s) - before
    finally:
        s.stop()


def test_a_prefill_budget_below_the_step_budget_is_refused():
    r = subprocess.run([BIN, "serve", "--model", DEMO, "--port", "0", "--memory", "2", "--max-step-tokens", "64",
                        "--prefill-step-tokens", "32"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r
    assert "--prefill-step-tokens 32" in r.stderr and "--max-step-tokens 64" in r.stderr, r.stderr
