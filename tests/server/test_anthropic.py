"""The Anthropic Messages API (POST /v1/messages, /v1/messages/count_tokens) of `nemotron serve`
on the demo model (CPU), through the official `anthropic` SDK and raw HTTP.

The demo model answers like a dictionary and was not trained on tool calls: tool_use blocks
are checked for shape whenever the model makes one, the tool_use / tool_result history is
checked through the rendered prompt, and the formatting of a known tool-call reply (whole and
streamed) is checked deterministically in test_anthropic.cpp. Newer SDKs dropped the sampling
arguments from messages.create, so temperature goes in extra_body."""
import json
import socket
import threading
import time

import anthropic
import pytest
import requests
from nemotron_server import Server

GREEDY = {"temperature": 0}
NO_THINK = {"type": "disabled"}
THINK = {"type": "enabled", "budget_tokens": 1024}
USER = [{"role": "user", "content": "What does \"ephemeral\" mean?"}]
TOOLS = [{"name": "get_weather", "description": "Get the current weather for a city.",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}},
                           "required": ["city"]}}]
OPENAI_TOOLS = [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                                  "parameters": t["input_schema"]}} for t in TOOLS]


@pytest.fixture(scope="module")
def ant(server):
    # Closed at the end: an open keep-alive connection would hold up the server's shutdown.
    with anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=120) as client:
        yield client


def create(ant, **kw):
    kw.setdefault("model", "demo")
    kw.setdefault("max_tokens", 32)
    extra = dict(GREEDY, **kw.pop("extra_body", {}))
    return ant.messages.create(extra_body=extra, **kw)


def count(ant, **kw):
    kw.setdefault("model", "demo")
    return ant.messages.count_tokens(**kw).input_tokens


def tokenize(server, **body):
    r = requests.post(server.url + "/tokenize", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def detokenize(server, tokens):
    return requests.post(server.url + "/detokenize", json={"tokens": tokens}, timeout=30).json()["prompt"]


def prompt_tokens(m):
    return m.usage.input_tokens + m.usage.cache_read_input_tokens


def sse_events(response):
    """(event name, data) pairs of an SSE response."""
    events, name = [], None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: "):])))
    return events


def check_order(events):
    """Anthropic's sequence: message_start, then blocks one at a time (start, deltas, stop) with
    indices 0, 1, ..., then message_delta and message_stop; pings anywhere after message_start."""
    for name, data in events:
        assert data["type"] == name
    names = [n for n, _ in events if n != "ping"]
    assert events[0][0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    open_index, next_index = None, 0
    for name, data in events[1:]:
        if name in ("ping", "message_delta", "message_stop"):
            continue
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index, next_index = next_index, next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        else:
            pytest.fail("unexpected event " + name)
    assert open_index is None
    assert names.index("message_delta") == len(names) - 2


def test_create_text(ant):
    m = create(ant, messages=USER, max_tokens=48, thinking=NO_THINK)
    assert m.type == "message" and m.role == "assistant" and m.model == "demo"
    assert m.id.startswith("msg_")
    assert [b.type for b in m.content] == ["text"] and m.content[0].text
    assert m.stop_reason in ("end_turn", "max_tokens") and m.stop_sequence is None
    assert 1 <= m.usage.output_tokens <= 48
    assert m.usage.cache_creation_input_tokens == 0
    # input_tokens + cache_read_input_tokens is the prompt, as count_tokens renders it.
    assert prompt_tokens(m) == count(ant, messages=USER, thinking=NO_THINK)
    again = create(ant, messages=USER, max_tokens=48, thinking=NO_THINK)
    assert again.content == m.content
    assert again.usage.cache_read_input_tokens > 0  # the prefix cache (CPU backend) served the prompt
    assert prompt_tokens(again) == prompt_tokens(m)


def test_max_tokens_stop_reason(ant):
    m = create(ant, messages=USER, max_tokens=1, thinking=NO_THINK)
    assert m.stop_reason == "max_tokens"
    assert m.usage.output_tokens == 1


def test_system(server, ant):
    system = "You are a terse assistant."
    as_string = count(ant, system=system, messages=USER)
    as_blocks = count(ant, system=[{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
                      messages=USER)
    assert as_string == as_blocks > count(ant, messages=USER)
    # The prompt the chat endpoint renders for the same conversation.
    chat = tokenize(server, messages=[{"role": "system", "content": system}] + USER)
    assert as_string == chat["count"]
    assert detokenize(server, chat["tokens"]).startswith("<|im_start|>system\n" + system)
    m = create(ant, system=system, messages=USER, thinking=NO_THINK)
    assert prompt_tokens(m) == as_string


def test_stop_sequences(ant):
    base = create(ant, messages=USER, max_tokens=40, thinking=NO_THINK).content[0].text
    at = len(base) // 2
    stop = base[at:at + 4]
    first = base.find(stop)
    assert first > 0, base
    m = create(ant, messages=USER, max_tokens=40, thinking=NO_THINK, stop_sequences=["never appears", stop])
    assert m.stop_reason == "stop_sequence"
    assert m.stop_sequence == stop
    assert "".join(b.text for b in m.content if b.type == "text") == base[:first]


def test_stream_equals_create(server, ant):
    """Thinking and text deltas, in Anthropic's order; the streamed message is the whole one."""
    body = dict(model="demo", max_tokens=96, messages=USER, thinking=THINK)
    whole = create(ant, **body)
    assert whole.content[0].type == "thinking" and whole.content[0].thinking
    deltas = []
    with ant.messages.stream(extra_body=GREEDY, **body) as s:
        for ev in s:
            if ev.type == "content_block_delta":
                deltas.append(ev.delta.type)
        final = s.get_final_message()
    assert [b.to_dict() for b in final.content] == [b.to_dict() for b in whole.content]
    assert final.stop_reason == whole.stop_reason and final.stop_sequence == whole.stop_sequence
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert prompt_tokens(final) == prompt_tokens(whole)
    assert "thinking_delta" in deltas
    if any(b.type == "text" for b in whole.content):
        assert "text_delta" in deltas
    # The raw events (Claude Code posts to /v1/messages?beta=true).
    r = requests.post(server.url + "/v1/messages?beta=true", json=dict(body, stream=True, **GREEDY),
                      headers={"anthropic-version": "2023-06-01"}, stream=True, timeout=120)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    check_order(events)
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["content"] == [] and start["stop_reason"] is None
    assert start["role"] == "assistant" and start["model"] == "demo"
    blocks = [d["content_block"]["type"] for n, d in events if n == "content_block_start"]
    assert blocks == [b.type for b in whole.content]
    end = [d for n, d in events if n == "message_delta"][0]
    assert end["delta"]["stop_reason"] == whole.stop_reason
    assert end["usage"]["output_tokens"] == whole.usage.output_tokens


def test_stream_stop_sequence(ant):
    base = create(ant, messages=USER, max_tokens=40, thinking=NO_THINK).content[0].text
    stop = base[len(base) // 2:len(base) // 2 + 4]
    with ant.messages.stream(model="demo", max_tokens=40, messages=USER, thinking=NO_THINK,
                             stop_sequences=[stop], extra_body=GREEDY) as s:
        final = s.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == stop
    assert "".join(b.text for b in final.content) == base[:base.find(stop)]


def check_tool_use_blocks(m):
    uses = [b for b in m.content if b.type == "tool_use"]
    assert (m.stop_reason == "tool_use") == bool(uses)
    for b in uses:
        assert b.id.startswith("toolu_") and b.name == "get_weather" and isinstance(b.input, dict)
    return uses


def test_tools(ant):
    assert count(ant, tools=TOOLS, messages=USER) > count(ant, messages=USER)
    ask = [{"role": "user", "content": "What is the weather in Paris? Call get_weather."}]
    for choice in ({"type": "auto"}, {"type": "any"}, {"type": "tool", "name": "get_weather"},
                   {"type": "auto", "disable_parallel_tool_use": True}, {"type": "none"}):
        m = create(ant, tools=TOOLS, tool_choice=choice, messages=ask, max_tokens=48)
        assert m.stop_reason in ("end_turn", "max_tokens", "tool_use")
        uses = check_tool_use_blocks(m)
        if choice["type"] == "none":
            assert not uses
        # The reply goes back into the conversation as it came (thinking blocks, tool_use),
        # with a tool_result for every call.
        results = [{"type": "tool_result", "tool_use_id": b.id, "content": "Sunny, 21 C"} for b in uses]
        history = ask + [{"role": "assistant", "content": [b.to_dict() for b in m.content] or "..."},
                         {"role": "user", "content": results + [{"type": "text", "text": "Thanks. And Rome?"}]}]
        check_tool_use_blocks(create(ant, tools=TOOLS, messages=history, max_tokens=16))


def test_tool_round_trip_renders_like_chat(server, ant):
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I need the tool.", "signature": ""},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": [{"type": "text", "text": "Sunny, 21 C"}]},
            {"type": "text", "text": "Thanks!"}]},
    ]
    openai = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check.", "reasoning_content": "I need the tool.",
         "tool_calls": [{"id": "toolu_01", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "Sunny, 21 C"},
        {"role": "user", "content": "Thanks!"},
    ]
    chat = tokenize(server, messages=openai, tools=OPENAI_TOOLS)
    assert count(ant, tools=TOOLS, messages=history) == chat["count"]
    text = detokenize(server, chat["tokens"])
    assert "<function=get_weather>\n<parameter=city>\nParis\n</parameter>" in text
    assert "<tool_response>\nSunny, 21 C\n</tool_response>" in text
    m = create(ant, tools=TOOLS, messages=history, max_tokens=16)
    assert prompt_tokens(m) == chat["count"]
    # is_error renders the result as an error.
    history[2]["content"][0]["is_error"] = True
    assert count(ant, tools=TOOLS, messages=history) > chat["count"]


def test_count_tokens(server, ant):
    for thinking in (THINK, NO_THINK):
        n = count(ant, messages=USER, thinking=thinking)
        kwargs = {"enable_thinking": thinking["type"] == "enabled"}
        assert n == tokenize(server, messages=USER, chat_template_kwargs=kwargs)["count"]
        assert prompt_tokens(create(ant, messages=USER, thinking=thinking, max_tokens=4)) == n
    r = requests.post(server.url + "/v1/messages/count_tokens", json={"messages": USER}, timeout=30)
    assert r.status_code == 200 and r.json() == {"input_tokens": count(ant, messages=USER)}


def test_prefill_continues_the_assistant_text(server, ant):
    prefill = "**Ephemeral** (adjective):"
    msgs = USER + [{"role": "assistant", "content": prefill}]
    rendered = detokenize(server, tokenize(server, messages=msgs, add_generation_prompt=False)["tokens"])
    assert rendered.endswith(prefill + "<|im_end|>\n")
    cut = rendered[:-len("<|im_end|>\n")]
    assert count(ant, messages=msgs) == tokenize(server, prompt=cut, add_special_tokens=False)["count"]
    m = create(ant, messages=msgs, max_tokens=16)
    assert [b.type for b in m.content] == ["text"]
    assert prompt_tokens(m) == count(ant, messages=msgs)
    with pytest.raises(anthropic.BadRequestError) as e:
        create(ant, messages=USER + [{"role": "assistant", "content": "trailing "}])
    assert "trailing whitespace" in e.value.body["error"]["message"]


def post(server, body, path="/v1/messages", **kw):
    return requests.post(server.url + path, json=body, timeout=30, **kw)


def assert_error(r, status, error_type, *words):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"type", "error"} and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    for w in words:
        assert w in body["error"]["message"], body


BAD = [
    ({"messages": USER}, "max_tokens"),
    ({"max_tokens": 8}, "messages"),
    ({"max_tokens": 0, "messages": USER}, "max_tokens"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]},
     "messages[0].content[1].type", "image"),
    ({"max_tokens": 8, "messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"max_tokens": 8, "messages": USER, "temperature": 1.5}, "temperature"),
    ({"max_tokens": 8, "messages": USER, "stop_sequences": "END"}, "stop_sequences"),
    ({"max_tokens": 8, "messages": USER, "tools": [{"name": "f"}]}, "tools[0].input_schema"),
    ({"max_tokens": 8, "messages": USER, "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     "tools[0].type"),
    ({"max_tokens": 8, "messages": USER, "tools": TOOLS, "tool_choice": {"type": "tool", "name": "nope"}},
     "tool_choice.name"),
    ({"max_tokens": 8, "messages": USER, "thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
    ({"max_tokens": 8, "messages": USER, "output_config": {"format": {"type": "json_schema", "schema": {"if": {}}}}},
     "output_config.format", "'if'"),
    ({"max_tokens": 8, "messages": USER, "output_format": {"type": "json_schema"}}, "output_format.schema"),
    ({"max_tokens": 8, "messages": USER + [{"role": "assistant", "content": "{"}],
      "output_format": {"type": "json_schema", "schema": {"type": "object"}}}, "messages", "prefilled"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}]}, "messages[0].content[0].tool_use_id"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[1] for c in BAD])
def test_bad_requests_name_the_field(server, ant, case):
    body, *words = case
    assert_error(post(server, body), 400, "invalid_request_error", *words)
    if "max_tokens" in body and "messages" in body:  # what SDK users see (the SDK checks the required ones)
        rest = {k: v for k, v in body.items() if k not in ("max_tokens", "messages")}
        with pytest.raises(anthropic.BadRequestError) as e:
            ant.messages.create(model="demo", max_tokens=body["max_tokens"], messages=body["messages"], extra_body=rest)
        assert e.value.body["error"]["type"] == "invalid_request_error"


def test_other_errors(server):
    assert_error(post(server, {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": USER}), 404,
                 "not_found_error", "model", "claude-sonnet-4-5")
    r = requests.post(server.url + "/v1/messages", data="{not json", timeout=30,
                      headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_request_error", "JSON")
    assert_error(requests.get(server.url + "/v1/messages", timeout=30), 405, "invalid_request_error")
    assert_error(post(server, {}, path="/v1/messages/batches"), 404, "not_found_error")
    assert_error(post(server, {"max_tokens": 8}, path="/v1/messages/count_tokens"), 400, "invalid_request_error",
                 "messages")
    limit = requests.get(server.url + "/v1/models", timeout=30).json()["data"][0]["max_model_len"]
    assert_error(post(server, {"max_tokens": limit, "messages": USER}), 400, "invalid_request_error",
                 "input length and `max_tokens` exceed context limit")
    huge = [{"role": "user", "content": "hello " * limit}]
    assert_error(post(server, {"max_tokens": 8, "messages": huge}), 400, "invalid_request_error",
                 "prompt is too long: ", "tokens > %d maximum" % (limit - 1))
    # The OpenAI routes keep their shape.
    r = requests.post(server.url + "/v1/chat/completions", json={}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_api_key():
    s = Server("--api-key", "sekret")
    try:
        body = {"model": "demo", "max_tokens": 2, "messages": USER}
        with anthropic.Anthropic(base_url=s.url, api_key="sekret", max_retries=0, timeout=60) as ok:  # x-api-key
            assert ok.messages.create(**body).type == "message"
            assert ok.messages.count_tokens(model="demo", messages=USER).input_tokens > 0
        with anthropic.Anthropic(base_url=s.url, auth_token="sekret", max_retries=0, timeout=60) as bearer:
            assert bearer.messages.create(**body).type == "message"
        with anthropic.Anthropic(base_url=s.url, api_key="nope", max_retries=0, timeout=60) as wrong:
            with pytest.raises(anthropic.AuthenticationError) as e:
                wrong.messages.create(**body)
        assert e.value.status_code == 401 and e.value.body["error"]["type"] == "authentication_error"
        assert_error(requests.post(s.url + "/v1/messages", json=body, timeout=30), 401, "authentication_error",
                     "x-api-key")
        assert_error(requests.post(s.url + "/v1/messages/count_tokens", json=body, timeout=30,
                                   headers={"x-api-key": "nope"}), 401, "authentication_error", "Incorrect")
        # The other routes keep Authorization: Bearer only.
        chat = {"messages": USER, "max_tokens": 2}
        r = requests.post(s.url + "/v1/chat/completions", json=chat, headers={"x-api-key": "sekret"}, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = requests.post(s.url + "/v1/chat/completions", json=chat, headers={"Authorization": "Bearer sekret"},
                          timeout=60)
        assert r.status_code == 200
    finally:
        s.stop()


# --- a server with one sequence slot: requests wait behind a long generation -----------------

@pytest.fixture(scope="module")
def single():
    s = Server("--max-num-seqs", "1")
    yield s
    s.stop()


def metrics(server):
    out = {}
    for line in requests.get(server.url + "/metrics", timeout=30).text.splitlines():
        if line and not line.startswith("#") and "{" in line:
            name, value = line.rsplit(" ", 1)
            out[name.split("{")[0] + ("{abort}" if 'finished_reason="abort"' in name else "")] = float(value)
    return out


def wait_for(server, pred, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(server)
        if pred(m):
            return m
        assert time.monotonic() < deadline, m
        time.sleep(0.05)


def send_raw(server, path, body):
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(data) + data)
    return s


def occupy(server):
    """A generation holding the only slot until its connection is closed (then cancelled)."""
    wait_for(server, lambda m: m["nemotron:num_requests_running"] == 0 and m["nemotron:num_requests_waiting"] == 0)
    s = send_raw(server, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 100000, "ignore_eos": True})
    wait_for(server, lambda m: m["nemotron:num_requests_running"] == 1)
    return s


def test_stream_pings_while_waiting(single):
    blocker = occupy(single)
    try:
        body = {"model": "demo", "max_tokens": 4, "messages": USER, "stream": True, **GREEDY}
        r = requests.post(single.url + "/v1/messages", json=body, stream=True, timeout=60)
        assert r.status_code == 200
        events, name = [], None
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
                if name == "ping" and blocker is not None:
                    blocker.close()  # the slot frees: the generation starts
                    blocker = None
        check_order(events)
        names = [n for n, _ in events]
        assert "ping" in names and names.index("ping") > 0
        assert events[-1][0] == "message_stop"
    finally:
        if blocker is not None:
            blocker.close()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_disconnect_while_waiting_cancels(single, stream):
    blocker = occupy(single)
    try:
        before = metrics(single).get("nemotron:request_success_total{abort}", 0)
        s = send_raw(single, "/v1/messages", {"max_tokens": 8, "messages": USER, "stream": stream})
        wait_for(single, lambda m: m["nemotron:num_requests_waiting"] == 1)
        s.close()
        m = wait_for(single, lambda m: m["nemotron:num_requests_waiting"] == 0, timeout=5)
        assert m["nemotron:num_requests_running"] == 1  # the blocker goes on
    finally:
        blocker.close()
    wait_for(single, lambda m: m["nemotron:num_requests_running"] == 0 and m["nemotron:state_slots_used"] == 0)
    assert metrics(single).get("nemotron:request_success_total{abort}", 0) >= before + 2


def test_concurrent_streams(server, ant):
    """Several streams at once each get their own, complete event sequence."""
    results = [None] * 3

    def run(i):
        with ant.messages.stream(model="demo", max_tokens=12, messages=[{"role": "user", "content": "Word %d?" % i}],
                                 thinking=NO_THINK, extra_body=GREEDY) as s:
            results[i] = s.get_final_message()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i, m in enumerate(results):
        assert m is not None and m.stop_reason in ("end_turn", "max_tokens")
        whole = create(ant, max_tokens=12, messages=[{"role": "user", "content": "Word %d?" % i}], thinking=NO_THINK)
        assert [b.to_dict() for b in m.content] == [b.to_dict() for b in whole.content]
