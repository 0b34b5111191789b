"""Structured outputs and enforced tool calls through the server, on the demo model (which was
never trained on JSON or tools, so whatever valid output comes back is the grammar's doing):
response_format json_schema / json_object, vLLM's guided_* and structured_outputs, the
Responses API's text.format, Anthropic's output_format, and tool_choice required / named.
Outputs are checked with independent validators (jsonschema, re, json), greedy and sampled,
streamed and not."""
import json
import re

import jsonschema
import pytest
import requests

from conftest import Server  # noqa: F401  (the `server` and `client` fixtures)

Q = [{"role": "user", "content": "Describe a person."}]
NO_THINK = {"chat_template_kwargs": {"enable_thinking": False}}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        "score": {"type": ["number", "null"]},
    },
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
                   "days": {"type": "integer", "minimum": 1, "maximum": 7},
                   "note": {"type": "string", "maxLength": 8}},
    "required": ["city", "days"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}}, "required": ["zone"]}}}


def chat(server, **kw):
    body = {"messages": Q, "max_tokens": 256, "temperature": 0, **kw}
    r = requests.post(server.url + "/v1/chat/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def stream_chat(server, **kw):
    body = {"messages": Q, "max_tokens": 256, "temperature": 0, "stream": True, **kw}
    content, reasoning, finish = "", "", None
    with requests.post(server.url + "/v1/chat/completions", json=body, stream=True, timeout=300) as r:
        assert r.status_code == 200, r.text
        for line in r.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            for c in json.loads(line[6:])["choices"]:
                content += c["delta"].get("content") or ""
                reasoning += c["delta"].get("reasoning_content") or ""
                finish = c.get("finish_reason") or finish
    return content, reasoning, finish


def test_json_schema_greedy_with_and_without_reasoning(server, client):
    for extra in [{}, NO_THINK]:
        r = client.chat.completions.create(model="demo", messages=Q, max_tokens=256, temperature=0,
                                           response_format=RESPONSE_FORMAT, extra_body=extra)
        c = r.choices[0]
        assert c.finish_reason == "stop", c
        jsonschema.validate(json.loads(c.message.content), PERSON)
    # With reasoning on, the reasoning was free text and the schema applied after </think>.
    assert r.choices[0].message.content.startswith("{")


def test_json_schema_sampled_always_validates(server):
    for seed in range(6):
        r = chat(server, response_format=RESPONSE_FORMAT, temperature=1.0, seed=seed, n=2, **NO_THINK)
        for c in r["choices"]:
            assert c["finish_reason"] == "stop", c
            jsonschema.validate(json.loads(c["message"]["content"]), PERSON)


def test_streaming_equals_non_streaming(server):
    for kw in [{"response_format": RESPONSE_FORMAT}, {"guided_regex": r"[a-z]{2,5}-\d{3}", **NO_THINK},
               {"response_format": RESPONSE_FORMAT, "temperature": 0.9, "seed": 7, **NO_THINK}]:
        whole = chat(server, **kw)["choices"][0]
        content, reasoning, finish = stream_chat(server, **kw)
        assert content == whole["message"]["content"]
        assert reasoning == (whole["message"].get("reasoning_content") or "")
        assert finish == whole["finish_reason"] == "stop"


def test_json_object_and_vllm_fields(server):
    # Any object: the demo model's greedy strings loop, so a penalty (and a sample) let it close.
    for kw in [{"frequency_penalty": 1.0}, {"temperature": 1.0, "seed": 0}]:
        c = chat(server, response_format={"type": "json_object"}, max_tokens=400, **kw, **NO_THINK)["choices"][0]
        assert c["finish_reason"] == "stop", c
        assert isinstance(json.loads(c["message"]["content"]), dict)
    choice = chat(server, guided_choice=["alpha", "beta", "gamma delta"], temperature=1.0, seed=3, **NO_THINK)
    assert choice["choices"][0]["message"]["content"] in {"alpha", "beta", "gamma delta"}
    regex = r"[A-Z][a-z]{1,8}, \d{1,3} (cm|kg)"
    assert re.fullmatch(regex, chat(server, guided_regex=regex, **NO_THINK)["choices"][0]["message"]["content"])
    grammar = 'root ::= "[" item ("," item){0,3} "]"\nitem ::= [0-9] | "x"'
    text = chat(server, guided_grammar=grammar, **NO_THINK)["choices"][0]["message"]["content"]
    assert re.fullmatch(r"\[([0-9x])(,[0-9x]){0,3}\]", text), text
    schema = {"type": "array", "items": {"type": "boolean"}, "minItems": 2, "maxItems": 2}
    text = chat(server, structured_outputs={"json": schema}, **NO_THINK)["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(text), schema)
    text = chat(server, guided_json=json.dumps(schema), **NO_THINK)["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(text), schema)


def test_completions_endpoint(server):
    regex = r"(yes|no)\.[0-9]{2}"
    for seed in range(3):
        r = requests.post(server.url + "/v1/completions", timeout=300, json={
            "prompt": "The answer is", "max_tokens": 32, "guided_regex": regex, "temperature": 1.0, "seed": seed})
        assert r.status_code == 200, r.text
        c = r.json()["choices"][0]
        assert re.fullmatch(regex, c["text"]) and c["finish_reason"] == "stop", c


def test_ignore_eos_still_ends_at_the_match(server):
    c = chat(server, guided_choice=["yes", "no"], ignore_eos=True, **NO_THINK)["choices"][0]
    assert c["message"]["content"] in {"yes", "no"} and c["finish_reason"] == "stop"


def check_calls(calls, tools, name=None):
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    assert calls, "no tool call"
    for call in calls:
        assert call["function"]["name"] in by_name
        if name:
            assert call["function"]["name"] == name
        jsonschema.validate(json.loads(call["function"]["arguments"]), by_name[call["function"]["name"]])


def test_tool_choice_required_and_named(server):
    tools = [WEATHER, CLOCK]
    for seed in range(3):
        r = chat(server, tools=tools, tool_choice="required", parallel_tool_calls=False, temperature=1.0, seed=seed,
                 **NO_THINK)
        c = r["choices"][0]
        assert c["finish_reason"] == "tool_calls", c
        assert len(c["message"]["tool_calls"]) == 1
        assert not c["message"]["content"]
        check_calls(c["message"]["tool_calls"], tools)
    named = {"type": "function", "function": {"name": "get_time"}}
    c = chat(server, tools=tools, tool_choice=named, parallel_tool_calls=False, **NO_THINK)["choices"][0]
    assert c["finish_reason"] == "tool_calls" and len(c["message"]["tool_calls"]) == 1
    check_calls(c["message"]["tool_calls"], tools, name="get_time")
    # Parallel calls allowed (the default): one to 16, each valid. The demo model makes all 16.
    c = chat(server, tools=tools, tool_choice="required", max_tokens=2048, **NO_THINK)["choices"][0]
    assert c["finish_reason"] == "tool_calls" and 1 <= len(c["message"]["tool_calls"]) <= 16, c
    check_calls(c["message"]["tool_calls"], tools)


def test_tool_choice_streamed_like_non_streamed(server):
    kw = {"tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False, **NO_THINK}
    whole = chat(server, **kw)["choices"][0]
    body = {"messages": Q, "max_tokens": 256, "temperature": 0, "stream": True, **kw}
    args, name, finish = "", "", None
    with requests.post(server.url + "/v1/chat/completions", json=body, stream=True, timeout=300) as r:
        for line in r.iter_lines():
            if line.startswith(b"data: {"):
                for c in json.loads(line[6:])["choices"]:
                    for tc in c["delta"].get("tool_calls") or []:
                        name += tc["function"].get("name") or ""
                        args += tc["function"].get("arguments") or ""
                    finish = c.get("finish_reason") or finish
    call = whole["message"]["tool_calls"][0]["function"]
    assert (name, json.loads(args), finish) == (call["name"], json.loads(call["arguments"]), "tool_calls")


def test_responses_text_format(server):
    body = {"input": "Describe a person.", "max_output_tokens": 256, "temperature": 0,
            "text": {"format": {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}}}
    r = requests.post(server.url + "/v1/responses", json=body, timeout=300)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["text"]["format"]["type"] == "json_schema"
    text = "".join(p["text"] for item in out["output"] if item["type"] == "message" for p in item["content"])
    jsonschema.validate(json.loads(text), PERSON)


def test_anthropic_output_format_and_tool_choice_any(server):
    headers = {"x-api-key": "unused", "anthropic-version": "2023-06-01"}
    body = {"model": "demo", "max_tokens": 256, "messages": Q, "temperature": 0,
            "output_config": {"format": {"type": "json_schema", "schema": PERSON}}}
    r = requests.post(server.url + "/v1/messages", json=body, headers=headers, timeout=300)
    assert r.status_code == 200, r.text
    text = "".join(b["text"] for b in r.json()["content"] if b["type"] == "text")
    jsonschema.validate(json.loads(text), PERSON)
    tool = {"name": "get_time", "input_schema": CLOCK["function"]["parameters"]}
    body = {"model": "demo", "max_tokens": 256, "messages": Q, "tools": [tool], "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "thinking": {"type": "disabled"}}
    m = requests.post(server.url + "/v1/messages", json=body, headers=headers, timeout=300).json()
    uses = [b for b in m["content"] if b["type"] == "tool_use"]
    assert m["stop_reason"] == "tool_use" and uses, m
    jsonschema.validate(uses[0]["input"], tool["input_schema"])


@pytest.mark.parametrize("kw,param", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "if": {}}}}},
     "response_format"),
    ({"guided_regex": "(a"}, "guided_regex"),
    ({"guided_grammar": "root ::= other"}, "guided_grammar"),
    ({"tools": [WEATHER], "tool_choice": "required", "guided_choice": ["a"]}, "guided_choice"),
])
def test_grammar_errors_are_400s_naming_the_field(server, kw, param):
    r = requests.post(server.url + "/v1/chat/completions", json={"messages": Q, **kw}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["message"]
