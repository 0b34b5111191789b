"""`nemotron serve` driven by the official openai client on the demo model (random weights:
the text is meaningless, so the tests check shapes and invariants that hold for any model:
streaming == non-streaming, greedy/seeded reproducibility, stop-string truncation, token
accounting against /tokenize, logprob consistency)."""
import math

import pytest
import requests

MSGS = [{"role": "user", "content": "Hello, who are you?"}]
NO_THINK = {"chat_template_kwargs": {"enable_thinking": False}}


def chat(client, **kw):
    kw.setdefault("model", "demo")
    kw.setdefault("messages", MSGS)
    return client.chat.completions.create(**kw)


def stream_text(client, **kw):
    """Concatenated (content, reasoning, finish_reason, usage) of a streamed chat."""
    content, reasoning, finish, usage = "", "", None, None
    for ch in chat(client, stream=True, **kw):
        if ch.usage is not None:
            usage = ch.usage
        for c in ch.choices:
            d = c.delta
            content += d.content or ""
            extra = d.model_extra or {}
            reasoning += extra.get("reasoning_content") or ""
            assert (extra.get("reasoning_content") or "") == (extra.get("reasoning") or "")
            if c.finish_reason:
                finish = c.finish_reason
    return content, reasoning, finish, usage


def test_health_and_models(server):
    assert requests.get(server.url + "/health").json() == {"status": "ok"}
    models = requests.get(server.url + "/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["demo"]
    assert models["data"][0]["max_model_len"] > 0


def test_models_via_client(client):
    assert [m.id for m in client.models.list().data] == ["demo"]


def test_chat_nonstream_shape_and_usage(server, client):
    r = chat(client, max_tokens=12, temperature=0, extra_body=NO_THINK)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert len(r.choices) == 1 and r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason in ("length", "stop")
    n = requests.post(server.url + "/tokenize",
                      json={"messages": MSGS, "chat_template_kwargs": {"enable_thinking": False}}).json()["count"]
    assert r.usage.prompt_tokens == n
    assert r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == n + r.usage.completion_tokens


@pytest.mark.parametrize("kwargs", [NO_THINK, {}])
def test_stream_equals_nonstream_greedy(client, kwargs):
    r = chat(client, max_tokens=24, temperature=0, extra_body=kwargs)
    msg = r.choices[0].message
    content, reasoning, finish, usage = stream_text(
        client, max_tokens=24, temperature=0, extra_body=kwargs, stream_options={"include_usage": True})
    assert content == (msg.content or "")
    assert reasoning == ((msg.model_extra or {}).get("reasoning_content") or "")
    assert finish == r.choices[0].finish_reason
    assert usage.completion_tokens == r.usage.completion_tokens
    assert usage.prompt_tokens == r.usage.prompt_tokens


def test_stream_equals_nonstream_seeded(client):
    kw = dict(max_tokens=20, temperature=1.0, top_p=0.9, seed=1234, extra_body=NO_THINK)
    a = chat(client, **kw).choices[0].message.content
    b = stream_text(client, **kw)[0]
    c = chat(client, **kw).choices[0].message.content
    assert a == b == c


def test_seed_changes_output(client):
    outs = {chat(client, max_tokens=16, temperature=1.0, seed=s, extra_body=NO_THINK).choices[0].message.content
            for s in range(4)}
    assert len(outs) > 1


def test_reasoning_fields_when_thinking(client):
    r = chat(client, max_tokens=16, temperature=0)  # thinking on by default
    extra = r.choices[0].message.model_extra
    assert "reasoning_content" in extra and "reasoning" in extra
    assert extra["reasoning_content"] == extra["reasoning"]
    # The random model never closes </think> within 16 tokens: everything is reasoning.
    assert extra["reasoning_content"]


def test_include_reasoning_false(client):
    r = chat(client, max_tokens=8, temperature=0, extra_body={"include_reasoning": False})
    assert "reasoning_content" not in (r.choices[0].message.model_extra or {})


def test_max_tokens_length(client):
    r = chat(client, max_tokens=3, temperature=0, extra_body={"ignore_eos": True, **NO_THINK})
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3
    r = chat(client, max_completion_tokens=2, temperature=0, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 2


def test_stop_string_truncates(client):
    base = chat(client, max_tokens=40, temperature=0, extra_body={"ignore_eos": True, **NO_THINK})
    text = base.choices[0].message.content
    assert len(text) > 12
    stop = text[8:12]
    cut = text.index(stop)
    r = chat(client, max_tokens=40, temperature=0, stop=[stop], extra_body={"ignore_eos": True, **NO_THINK})
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == text[:cut]
    assert r.choices[0].model_extra["stop_reason"] == stop
    assert r.usage.completion_tokens < 40
    streamed, _, finish, _ = stream_text(client, max_tokens=40, temperature=0, stop=stop,
                                         extra_body={"ignore_eos": True, **NO_THINK})
    assert streamed == text[:cut] and finish == "stop"


def test_n_choices(client):
    r = chat(client, max_tokens=10, temperature=1.0, seed=7, n=2, extra_body=NO_THINK)
    assert [c.index for c in r.choices] == [0, 1]
    # choice i uses seed + i: choice 1 equals choice 0 of a request seeded 8.
    alone = chat(client, max_tokens=10, temperature=1.0, seed=8, extra_body=NO_THINK)
    assert r.choices[1].message.content == alone.choices[0].message.content
    assert r.usage.completion_tokens == sum(
        chat(client, max_tokens=10, temperature=1.0, seed=s, extra_body=NO_THINK).usage.completion_tokens
        for s in (7, 8))
    seen = set()
    for ch in chat(client, max_tokens=6, temperature=1.0, seed=7, n=2, stream=True, extra_body=NO_THINK):
        for c in ch.choices:
            seen.add(c.index)
    assert seen == {0, 1}


def test_logprobs_shapes(client):
    r = chat(client, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3,
             extra_body={"ignore_eos": True, **NO_THINK})
    content = r.choices[0].logprobs.content
    assert len(content) == 8
    for e in content:
        assert e.logprob <= 0
        tops = [t.logprob for t in e.top_logprobs]
        assert len(tops) == 3
        assert tops == sorted(tops, reverse=True)
        # greedy: the chosen token is the most likely one
        assert math.isclose(e.logprob, tops[0], rel_tol=1e-6, abs_tol=1e-6)
        assert e.bytes == list(e.token.encode("utf-8"))
    streamed = []
    for ch in chat(client, max_tokens=8, temperature=0, logprobs=True, top_logprobs=2, stream=True,
                   extra_body={"ignore_eos": True, **NO_THINK}):
        for c in ch.choices:
            if c.logprobs and c.logprobs.content:
                streamed += [e.logprob for e in c.logprobs.content]
    assert streamed == pytest.approx([e.logprob for e in content])


def test_completions(client, server):
    r = client.completions.create(model="demo", prompt="The capital of France is", max_tokens=8, temperature=0,
                                  logprobs=2, extra_body={"ignore_eos": True})
    assert r.object == "text_completion"
    c = r.choices[0]
    assert c.finish_reason == "length"
    assert len(c.logprobs.tokens) == 8 and len(c.logprobs.top_logprobs) == 8
    assert all(lp <= 0 for lp in c.logprobs.token_logprobs)
    n = requests.post(server.url + "/tokenize", json={"prompt": "The capital of France is"}).json()["count"]
    assert r.usage.prompt_tokens == n
    text = "".join(ch.choices[0].text for ch in client.completions.create(
        model="demo", prompt="The capital of France is", max_tokens=8, temperature=0, stream=True,
        extra_body={"ignore_eos": True}) if ch.choices)
    assert text == c.text
    ids = requests.post(server.url + "/tokenize", json={"prompt": "The capital"}).json()["tokens"]
    r2 = client.completions.create(model="demo", prompt=ids, max_tokens=4, temperature=0)
    assert r2.usage.prompt_tokens == len(ids)
    echo = client.completions.create(model="demo", prompt="The capital", max_tokens=4, temperature=0, echo=True)
    assert echo.choices[0].text.startswith("The capital")


def test_tokenize_detokenize_round_trip(server):
    text = "Hello world! Ünïcödé 🙂 123"
    t = requests.post(server.url + "/tokenize", json={"prompt": text, "return_token_strs": True}).json()
    assert t["count"] == len(t["tokens"]) == len(t["token_strs"])
    d = requests.post(server.url + "/detokenize", json={"tokens": t["tokens"]}).json()
    assert d["prompt"] == text


def test_tools_reach_the_prompt(server, client):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    with_tools = requests.post(server.url + "/tokenize", json={"messages": MSGS, "tools": tools,
                                                                "return_token_strs": True}).json()
    without = requests.post(server.url + "/tokenize", json={"messages": MSGS}).json()
    assert with_tools["count"] > without["count"]
    text = requests.post(server.url + "/detokenize", json={"tokens": with_tools["tokens"]}).json()["prompt"]
    assert "<name>get_weather</name>" in text and "# Tools" in text
    # The request is accepted with every tool_choice; the random model rarely calls a tool.
    for choice in ["auto", "none", "required", {"type": "function", "function": {"name": "get_weather"}}]:
        r = chat(client, max_tokens=6, temperature=0, tools=tools, tool_choice=choice)
        assert r.choices[0].finish_reason in ("length", "stop", "tool_calls")


def test_thinking_prompt_endings(server):
    on = requests.post(server.url + "/tokenize", json={"messages": MSGS}).json()["tokens"]
    off = requests.post(server.url + "/tokenize", json={"messages": MSGS, **NO_THINK}).json()["tokens"]
    dec = lambda ids: requests.post(server.url + "/detokenize", json={"tokens": ids}).json()["prompt"]
    assert dec(on).endswith("<|im_start|>assistant\n<think>\n")
    assert dec(off).endswith("<|im_start|>assistant\n<think></think>")


def test_context_overflow(client, server):
    limit = requests.get(server.url + "/v1/models").json()["data"][0]["max_model_len"]
    from openai import BadRequestError
    with pytest.raises(BadRequestError) as e:
        chat(client, max_tokens=limit)
    assert "maximum context length is" in str(e.value)
