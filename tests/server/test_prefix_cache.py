"""The prefix cache through the server (CPU backend): a conversation's second turn resumes from
the first turn's snapshot (usage.prompt_tokens_details.cached_tokens, /metrics), its reply equals
the reply of a server without the cache (greedy), and --no-prefix-cache turns it off."""
import re

import pytest
import requests

from conftest import Server


def chat(server, messages, **kw):
    body = {"messages": messages, "max_tokens": 24, "temperature": 0, **kw}
    r = requests.post(server.url + "/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def metric(server, name):
    text = requests.get(server.url + "/metrics", timeout=30).text
    m = re.search(r"^" + re.escape(name) + r"\{[^}]*\} (\S+)$", text, re.M)
    return float(m.group(1))


def conversation(server):
    turns, usages = [], []
    messages = [{"role": "system", "content": "You answer briefly."}]
    for question in ["What does \"ephemeral\" mean?", "And \"transient\"?", "Give an example."]:
        messages.append({"role": "user", "content": question})
        r = chat(server, messages)
        reply = r["choices"][0]["message"]
        turns.append(reply.get("content") or "")
        usages.append(r["usage"])
        messages.append({"role": "assistant", "content": reply.get("content") or ""})
    return turns, usages


def test_turns_resume_from_the_cache_and_equal_uncached_replies():
    on, off = Server(), Server("--no-prefix-cache")
    try:
        with_cache, u_on = conversation(on)
        without, u_off = conversation(off)
        assert with_cache == without
        assert u_on[0]["prompt_tokens_details"]["cached_tokens"] == 0
        for u in u_on[1:]:
            # The history before the previous generation prompt came from the cache.
            assert 0 < u["prompt_tokens_details"]["cached_tokens"] < u["prompt_tokens"]
        assert all(u["prompt_tokens_details"]["cached_tokens"] == 0 for u in u_off)
        assert metric(on, "nemotron:prefix_cache_hits") > 0
        assert metric(on, "nemotron:prefix_cache_snapshots") > 0
        assert metric(off, "nemotron:prefix_cache_budget_bytes") == 0
    finally:
        on.stop()
        off.stop()


def test_prefixes_survive_a_restart(tmp_path):
    d = str(tmp_path / "prefixes")
    messages = [{"role": "system", "content": "You answer briefly."},
                {"role": "user", "content": "What does \"ephemeral\" mean?"}]
    first = Server("--prefix-cache-dir", d)
    try:
        reply = chat(first, messages)["choices"][0]["message"].get("content") or ""
    finally:
        first.stop()  # SIGTERM: the cached prefixes are written
    messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And \"transient\"?"}]
    second = Server("--prefix-cache-dir", d)
    try:
        u = chat(second, messages)["usage"]
        assert u["prompt_tokens_details"]["cached_tokens"] > 0
    finally:
        second.stop()
