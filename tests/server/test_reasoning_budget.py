"""Reasoning budget through the server: thinking_token_budget / reasoning_effort /
chat_template_kwargs.reasoning_budget end the reasoning after that many tokens (the server
forces "</think>") and the answer follows; bad values are 400s naming the field."""
import requests

from conftest import Server  # noqa: F401  (the `server` fixture)

Q = [{"role": "user", "content": "What does \"ephemeral\" mean?"}]


def chat(server, **kw):
    r = requests.post(server.url + "/v1/chat/completions",
                      json={"messages": Q, "max_tokens": 48, "temperature": 0, **kw}, timeout=120)
    return r


def tokens(server, text):
    return len(requests.post(server.url + "/tokenize", json={"prompt": text, "add_special_tokens": False},
                             timeout=30).json()["tokens"])


def test_budget_ends_reasoning(server):
    free = chat(server).json()["choices"][0]["message"]
    assert tokens(server, free["reasoning_content"]) > 8  # the demo model reasons longer than the budget
    for kw in [{"thinking_token_budget": 4}, {"chat_template_kwargs": {"reasoning_budget": 4}}]:
        m = chat(server, **kw).json()["choices"][0]["message"]
        assert tokens(server, m["reasoning_content"]) <= 5, m
        assert free["reasoning_content"].startswith(m["reasoning_content"].strip())
        assert m["content"], m  # the answer follows the forced end
    low = chat(server, reasoning_effort="low").json()["choices"][0]["message"]
    assert low["reasoning_content"] == free["reasoning_content"]  # 1024 tokens: not reached here


def test_bad_budgets_are_400s(server):
    for kw, param in [({"thinking_token_budget": -1}, "thinking_token_budget"),
                      ({"reasoning_effort": "max"}, "reasoning_effort"),
                      ({"chat_template_kwargs": {"reasoning_budget": "x"}}, "chat_template_kwargs")]:
        r = chat(server, **kw)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param
