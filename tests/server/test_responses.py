"""The Responses API (/v1/responses) through the official openai client on the demo model:
response shape and usage against /tokenize of the equivalent chat, items input, instructions,
max_output_tokens -> incomplete, streamed event order (text deltas = final text, greedy stream =
non-stream), previous_response_id continuation (the second prompt holds the first turn; prefix
cache hit), function_call / function_call_output items in the prompt, retrieve / delete, the
store's bound, client disconnects, and the error shapes of bad requests. (That a tool-call
text becomes a function_call item is tested in test_responses.cpp: the demo model never
writes one.)"""
import json
import time

import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server

NO_THINK = {"effort": "none"}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather of a city", "strict": False,
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
CHAT_TOOLS = [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                                 "parameters": t["parameters"]}} for t in TOOLS]


def create(client, **kw):
    kw.setdefault("model", "demo")
    kw.setdefault("temperature", 0)
    return client.responses.create(**kw)


def prompt_tokens(server, messages, thinking=False, tools=None):
    body = {"messages": messages, "chat_template_kwargs": {"enable_thinking": thinking}}
    if tools:
        body["tools"] = tools
    r = requests.post(server.url + "/tokenize", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["count"]


def check_usage(r):
    u = r.usage
    assert u.total_tokens == u.input_tokens + u.output_tokens
    assert 0 <= u.output_tokens_details.reasoning_tokens <= u.output_tokens
    assert 0 <= u.input_tokens_details.cached_tokens < u.input_tokens


def test_string_input(server, client):
    r = create(client, input="What does \"ephemeral\" mean?", max_output_tokens=32, reasoning=NO_THINK)
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.status in ("completed", "incomplete") and r.model == "demo"
    assert [o.type for o in r.output] == ["message"]
    msg = r.output[0]
    assert msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.content[0].type == "output_text" and msg.content[0].annotations == []
    assert r.output_text == msg.content[0].text and r.output_text
    assert r.usage.input_tokens == prompt_tokens(server, [{"role": "user", "content": "What does \"ephemeral\" mean?"}])
    assert r.usage.output_tokens_details.reasoning_tokens == 0
    check_usage(r)
    # Settings echoed as the SDK reads them.
    assert r.max_output_tokens == 32 and r.temperature == 0 and r.tools == [] and r.tool_choice == "auto"
    assert r.store is True and r.parallel_tool_calls is True and r.previous_response_id is None
    assert r.reasoning.effort == "none" and r.text.format.type == "text"


def test_items_input_and_instructions(server, client):
    items = [{"role": "user", "content": "Hi"},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello."}]},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Define ephemeral."}]}]
    r = create(client, input=items, instructions="You answer briefly.", max_output_tokens=8, reasoning=NO_THINK)
    assert r.instructions == "You answer briefly."
    chat = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Define ephemeral."}]
    assert r.usage.input_tokens == prompt_tokens(server, chat)


def test_max_output_tokens_incomplete(client):
    r = create(client, input="Tell me a story.", max_output_tokens=3, reasoning=NO_THINK,
               extra_body={"ignore_eos": True})
    assert r.status == "incomplete"
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 3
    assert r.output[-1].status == "incomplete"


def test_reasoning_item_when_thinking(server, client):
    r = create(client, input="What does \"ephemeral\" mean?", max_output_tokens=64)
    assert r.output[0].type == "reasoning" and r.output[0].id.startswith("rs_")
    assert r.output[0].content[0].type == "reasoning_text" and r.output[0].content[0].text
    assert r.output[0].summary == []
    assert r.usage.output_tokens_details.reasoning_tokens > 0
    assert r.usage.input_tokens == prompt_tokens(server, [{"role": "user", "content": "What does \"ephemeral\" mean?"}],
                                                 thinking=True)
    check_usage(r)
    # encrypted_content, when asked for, carries the reasoning text (not encrypted here).
    r = create(client, input="Hi", max_output_tokens=8, include=["reasoning.encrypted_content"])
    assert r.output[0].encrypted_content == r.output[0].content[0].text


def check_event_order(events):
    """The Responses stream grammar: created, in_progress, items (added, parts, deltas, done), end."""
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    i, index = 2, 0
    while i < len(events) - 1:
        added = events[i]
        assert added.type == "response.output_item.added" and added.output_index == index
        kind = added.item.type
        i += 1
        if kind in ("message", "reasoning"):
            delta, done = (("response.output_text.delta", "response.output_text.done") if kind == "message"
                           else ("response.reasoning_text.delta", "response.reasoning_text.done"))
            assert events[i].type == "response.content_part.added"
            i += 1
            text = ""
            while events[i].type == delta:
                assert events[i].item_id == added.item.id and events[i].output_index == index
                text += events[i].delta
                i += 1
            assert events[i].type == done and events[i].text == text
            assert events[i + 1].type == "response.content_part.done" and events[i + 1].part.text == text
            i += 2
        else:
            assert kind == "function_call"
            while events[i].type == "response.function_call_arguments.delta":
                i += 1
            assert events[i].type == "response.function_call_arguments.done"
            i += 1
        assert events[i].type == "response.output_item.done" and events[i].item.id == added.item.id
        i += 1
        index += 1
    final = events[-1].response
    assert len(final.output) == index
    return final


@pytest.mark.parametrize("reasoning", [NO_THINK, None], ids=["no-think", "think"])
def test_stream_events_and_equality(client, reasoning):
    kw = dict(input="What does \"ephemeral\" mean?", max_output_tokens=96)
    if reasoning:
        kw["reasoning"] = reasoning
    plain = create(client, **kw)
    events = list(create(client, stream=True, **kw))
    final = check_event_order(events)
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == plain.output_text
    reasoning_deltas = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    plain_reasoning = [o.content[0].text for o in plain.output if o.type == "reasoning"]
    assert reasoning_deltas == "".join(plain_reasoning)
    assert bool(plain_reasoning) == (reasoning is None)
    assert [o.type for o in final.output] == [o.type for o in plain.output]
    assert final.status == plain.status == "completed"
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.output_tokens_details.reasoning_tokens == plain.usage.output_tokens_details.reasoning_tokens


def test_sdk_stream_helper(client):
    """client.responses.stream accumulates our events into the final response."""
    with client.responses.stream(model="demo", input="What does \"ephemeral\" mean?", temperature=0,
                                 reasoning=NO_THINK, max_output_tokens=200) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == text and text


def test_previous_response_id(server, client):
    first = create(client, input="What does \"ephemeral\" mean?", max_output_tokens=24, reasoning=NO_THINK)
    second = create(client, previous_response_id=first.id, input="And \"transient\"?", max_output_tokens=8,
                    reasoning=NO_THINK)
    assert second.previous_response_id == first.id
    # The second prompt is the whole conversation: the same as sending the items by hand ...
    by_hand = create(client, input=[{"role": "user", "content": "What does \"ephemeral\" mean?"},
                                    *[o.model_dump(exclude_none=True) for o in first.output],
                                    {"role": "user", "content": "And \"transient\"?"}],
                     max_output_tokens=8, reasoning=NO_THINK, store=False)
    assert second.usage.input_tokens == by_hand.usage.input_tokens
    assert second.output_text == by_hand.output_text
    # ... and as the chat request of that conversation.
    chat = [{"role": "user", "content": "What does \"ephemeral\" mean?"},
            {"role": "assistant", "content": first.output_text}, {"role": "user", "content": "And \"transient\"?"}]
    assert second.usage.input_tokens == prompt_tokens(server, chat)
    assert second.usage.input_tokens > first.usage.input_tokens + 2
    # The first turn came from the prefix cache (on by default on the CPU backend).
    assert second.usage.input_tokens_details.cached_tokens > 0
    # A chain: the third turn continues the second (which holds the first).
    third = create(client, previous_response_id=second.id, input="Thanks.", max_output_tokens=4, reasoning=NO_THINK)
    chat += [{"role": "assistant", "content": second.output_text}, {"role": "user", "content": "Thanks."}]
    assert third.usage.input_tokens == prompt_tokens(server, chat)
    # Instructions are not carried over (OpenAI semantics): the request's own apply.
    fourth = create(client, previous_response_id=first.id, instructions="Be brief.", input="And \"transient\"?",
                    max_output_tokens=4, reasoning=NO_THINK)
    assert fourth.usage.input_tokens == prompt_tokens(server, [{"role": "system", "content": "Be brief."}] + chat[:3])


def test_function_call_items_round_trip(server, client):
    items = [{"role": "user", "content": "What is the weather in Paris?"},
             {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"},
             {"type": "function_call_output", "call_id": "call_1", "output": "18 C, sunny"}]
    r = create(client, input=items, tools=TOOLS, max_output_tokens=8, reasoning=NO_THINK)
    assert r.tools[0].name == "get_weather" and r.tools[0].type == "function"
    chat = [{"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                  "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"}]
    assert r.usage.input_tokens == prompt_tokens(server, chat, tools=CHAT_TOOLS)
    # The tool result is in the prompt: another output gives another prompt length.
    other = create(client, input=items[:2] + [dict(items[2], output="rain, rain and more rain")], tools=TOOLS,
                   max_output_tokens=2, reasoning=NO_THINK)
    assert other.usage.input_tokens != r.usage.input_tokens
    # Reasoning items render as the reasoning of the call that follows them (tool loop: kept).
    with_reasoning = create(client, input=items[:1] + [
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Use the tool."}]}
    ] + items[1:], tools=TOOLS, max_output_tokens=2, reasoning=NO_THINK)
    chat[1]["reasoning_content"] = "Use the tool."
    assert with_reasoning.usage.input_tokens == prompt_tokens(server, chat, tools=CHAT_TOOLS)
    # tool_choice forms are accepted and echoed.
    named = create(client, input="Weather?", tools=TOOLS, tool_choice={"type": "function", "name": "get_weather"},
                   max_output_tokens=2, reasoning=NO_THINK)
    assert named.tool_choice.name == "get_weather"
    assert create(client, input="Weather?", tools=TOOLS, tool_choice="required", max_output_tokens=2,
                  reasoning=NO_THINK).tool_choice == "required"


def test_retrieve_and_delete(client):
    r = create(client, input="Hi", max_output_tokens=6, reasoning=NO_THINK, metadata={"k": "v"})
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text and got.status == r.status
    assert got.metadata == {"k": "v"} and got.usage.output_tokens == r.usage.output_tokens
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)
    unstored = create(client, input="Hi", max_output_tokens=2, reasoning=NO_THINK, store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    with pytest.raises(openai.BadRequestError) as e:
        create(client, input="Hi", previous_response_id=unstored.id)
    assert e.value.body["param"] == "previous_response_id"
    # A streamed response is stored too, before its last event.
    events = list(create(client, input="Hi", max_output_tokens=4, reasoning=NO_THINK, stream=True))
    assert client.responses.retrieve(events[-1].response.id).output_text == events[-1].response.output_text


def test_store_bound_evicts_least_recently_used():
    s = Server("--responses-store-max", "2")
    try:
        def post(**body):
            r = requests.post(s.url + "/v1/responses", json=dict(body, max_output_tokens=2,
                                                                  reasoning=NO_THINK), timeout=60)
            assert r.status_code == 200, r.text
            return r.json()["id"]
        a, b = post(input="one"), post(input="two")
        assert requests.get(s.url + "/v1/responses/" + a).status_code == 200  # a is now the most recent
        c = post(input="three")
        assert requests.get(s.url + "/v1/responses/" + b).status_code == 404
        assert requests.get(s.url + "/v1/responses/" + a).status_code == 200
        assert requests.get(s.url + "/v1/responses/" + c).status_code == 200
    finally:
        s.stop()
    s = Server("--responses-store-max", "0")
    try:
        r = requests.post(s.url + "/v1/responses", json={"input": "x", "max_output_tokens": 2}, timeout=60).json()
        assert r["store"] is False
        assert requests.get(s.url + "/v1/responses/" + r["id"]).status_code == 404
    finally:
        s.stop()


def running(server):
    text = requests.get(server.url + "/metrics", timeout=30).text
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            if sample.name == "nemotron:num_requests_running":
                return sample.value
    raise AssertionError("no nemotron:num_requests_running")


def test_stream_disconnect_cancels(server):
    body = {"input": "go", "max_output_tokens": 20000, "stream": True, "reasoning": NO_THINK, "ignore_eos": True}
    with requests.post(server.url + "/v1/responses", json=body, stream=True, timeout=60) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        seen = 0
        for line in r.iter_lines():
            if line.startswith(b"data: ") and b"output_text.delta" in line:
                seen += 1
                if seen == 3:
                    break
    deadline = time.monotonic() + 5
    while running(server) != 0:
        assert time.monotonic() < deadline, "the generation was not cancelled"
        time.sleep(0.05)


BAD = [
    ({}, 400, "input"),
    ({"input": ""}, 400, "input"),
    ({"input": 5}, 400, "input"),
    ({"input": [{"type": "message", "role": "user",
                 "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]}, 400, "input"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, 400, "input"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{bad"}]}, 400, "input"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, 400, "tools"),
    ({"input": "x", "tools": [{"type": "function"}]}, 400, "tools"),
    ({"input": "x", "tools": TOOLS, "tool_choice": {"type": "function", "name": "nope"}}, 400, "tool_choice"),
    ({"input": "x", "tool_choice": "required"}, 400, "tool_choice"),
    ({"input": "x", "tool_choice": {"type": "web_search_preview"}}, 400, "tool_choice"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "s"}}}, 400, "text.format"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "s", "schema": {"if": {}}}}}, 400, "text.format"),
    ({"input": "x", "text": {"format": {"type": "yaml"}}}, 400, "text.format"),
    ({"input": "x", "reasoning": {"effort": "extreme"}}, 400, "reasoning.effort"),
    ({"input": "x", "temperature": 3}, 400, "temperature"),
    ({"input": "x", "top_p": 0}, 400, "top_p"),
    ({"input": "x", "max_output_tokens": 0}, 400, "max_output_tokens"),
    ({"input": "x", "max_output_tokens": 10 ** 9}, 400, "max_output_tokens"),
    ({"input": "x", "background": True}, 400, "background"),
    ({"input": "x", "include": ["message.output_text.logprobs"]}, 400, "include"),
    ({"input": "x", "store": "yes"}, 400, "store"),
    ({"input": "x", "metadata": {"k": 1}}, 400, "metadata"),
    ({"input": "x", "previous_response_id": "resp_unknown"}, 400, "previous_response_id"),
    ({"input": "x", "model": "gpt-5"}, 404, "model"),
]


@pytest.mark.parametrize("body,status,param", BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_requests(server, body, status, param):
    r = requests.post(server.url + "/v1/responses", json=body, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"]


def test_error_details(server, client):
    with pytest.raises(openai.BadRequestError) as e:
        create(client, input="x", tools=[{"type": "web_search"}])
    assert "web_search" in e.value.body["message"] and e.value.body["code"] == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as e:
        create(client, input="x", text={"format": {"type": "json_schema", "name": "s", "schema": {"if": {}}}})
    assert "'if'" in e.value.body["message"] and "'text.format'" in e.value.body["message"]
    r = requests.post(server.url + "/v1/responses", json={"input": "x", "max_output_tokens": 10 ** 9}, timeout=30)
    assert r.json()["error"]["code"] == "context_length_exceeded"
    assert r.json()["error"]["message"].startswith("This model's maximum context length is")
    for method, path in [("GET", "/v1/responses"), ("PUT", "/v1/responses"), ("POST", "/v1/responses/resp_x"),
                         ("PATCH", "/v1/responses/resp_x")]:
        r = requests.request(method, server.url + path, timeout=30)
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = requests.get(server.url + "/v1/responses/resp_x", timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = requests.post(server.url + "/v1/responses", data="{not json", timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    # Unknown fields are ignored, as on /v1/chat/completions; so are settings with no effect here.
    r = create(client, input="Hi", max_output_tokens=2, reasoning={"effort": "none", "summary": "auto"},
               text={"format": {"type": "text"}, "verbosity": "low"}, truncation="auto", user="u1",
               extra_body={"service_tier": "auto", "prompt_cache_key": "k", "safety_identifier": "s"})
    assert r.user == "u1" and r.reasoning.summary == "auto" and r.truncation == "auto"
    json.dumps(r.model_dump())
