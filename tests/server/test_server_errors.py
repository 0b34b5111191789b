"""Malformed and refused requests: each gets the right HTTP status and an OpenAI-shaped
error body {"error": {"message", "type", "param", "code"}}, and the server keeps serving."""
import socket

import pytest
import requests

from conftest import Server

M = [{"role": "user", "content": "hi"}]
CHAT, COMP = "/v1/chat/completions", "/v1/completions"

# (method, path, body (dict -> JSON, str -> raw), status, param or None)
CASES = [
    ("POST", CHAT, "{not json", 400, None),
    ("POST", CHAT, "", 400, None),
    ("POST", CHAT, "[1, 2]", 400, None),
    ("POST", CHAT, "[" * 100 + "]" * 100, 400, None),
    ("POST", CHAT, {}, 400, "messages"),
    ("POST", CHAT, {"messages": "hi"}, 400, "messages"),
    ("POST", CHAT, {"messages": []}, 400, "messages"),
    ("POST", CHAT, {"messages": [{"content": "x"}]}, 400, "messages"),
    ("POST", CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages"),
    ("POST", CHAT, {"messages": [{"role": "user", "content": 5}]}, 400, "messages"),
    ("POST", CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "messages"),
    ("POST", CHAT, {"messages": M, "model": "gpt-4"}, 404, "model"),
    ("POST", CHAT, {"messages": M, "model": 3}, 400, "model"),
    ("POST", CHAT, {"messages": M, "temperature": "hot"}, 400, "temperature"),
    ("POST", CHAT, {"messages": M, "temperature": -1}, 400, "temperature"),
    ("POST", CHAT, {"messages": M, "temperature": 3.5}, 400, "temperature"),
    ("POST", CHAT, {"messages": M, "top_p": 0}, 400, "top_p"),
    ("POST", CHAT, {"messages": M, "top_p": 1.5}, 400, "top_p"),
    ("POST", CHAT, {"messages": M, "top_k": -5}, 400, "top_k"),
    ("POST", CHAT, {"messages": M, "min_p": 2}, 400, "min_p"),
    ("POST", CHAT, {"messages": M, "presence_penalty": 5}, 400, "presence_penalty"),
    ("POST", CHAT, {"messages": M, "frequency_penalty": -3}, 400, "frequency_penalty"),
    ("POST", CHAT, {"messages": M, "repetition_penalty": 0}, 400, "repetition_penalty"),
    ("POST", CHAT, {"messages": M, "max_tokens": 0}, 400, "max_tokens"),
    ("POST", CHAT, {"messages": M, "max_tokens": 2.5}, 400, "max_tokens"),
    ("POST", CHAT, {"messages": M, "max_completion_tokens": -1}, 400, "max_completion_tokens"),
    ("POST", CHAT, {"messages": M, "max_tokens": 10**9}, 400, "max_tokens"),
    ("POST", CHAT, {"messages": M, "n": 0}, 400, "n"),
    ("POST", CHAT, {"messages": M, "n": 100}, 400, "n"),
    ("POST", CHAT, {"messages": M, "stop": 5}, 400, "stop"),
    ("POST", CHAT, {"messages": M, "stop": [""]}, 400, "stop"),
    ("POST", CHAT, {"messages": M, "stop": ["a"] * 17}, 400, "stop"),
    ("POST", CHAT, {"messages": M, "stop_token_ids": [1, "x"]}, 400, "stop_token_ids"),
    ("POST", CHAT, {"messages": M, "stop_token_ids": [10**8]}, 400, "stop_token_ids"),
    ("POST", CHAT, {"messages": M, "seed": "abc"}, 400, "seed"),
    ("POST", CHAT, {"messages": M, "stream": "yes"}, 400, "stream"),
    ("POST", CHAT, {"messages": M, "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ("POST", CHAT, {"messages": M, "logprobs": 1}, 400, "logprobs"),
    ("POST", CHAT, {"messages": M, "logprobs": True, "top_logprobs": 50}, 400, "top_logprobs"),
    ("POST", CHAT, {"messages": M, "top_logprobs": 3}, 400, "top_logprobs"),
    ("POST", CHAT, {"messages": M, "response_format": {"type": "xml"}}, 400, "response_format"),
    ("POST", CHAT, {"messages": M, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, 400, "response_format"),
    ("POST", CHAT, {"messages": M, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"if": {}}}}}, 400, "response_format"),
    ("POST", CHAT, {"messages": M, "response_format": {"type": "json_object"}, "guided_choice": ["a"]}, 400, "guided_choice"),
    ("POST", CHAT, {"messages": M, "guided_regex": "a("}, 400, "guided_regex"),
    ("POST", CHAT, {"messages": M, "guided_grammar": "root ::= undefined"}, 400, "guided_grammar"),
    ("POST", CHAT, {"messages": M, "guided_choice": "yes"}, 400, "guided_choice"),
    ("POST", CHAT, {"messages": M, "structured_outputs": {"yaml": "a"}}, 400, "structured_outputs.yaml"),
    ("POST", CHAT, {"messages": M, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required",
                    "response_format": {"type": "json_object"}}, 400, "response_format"),
    ("POST", CHAT, {"messages": M, "tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "object", "if": {}}}}}}], "tool_choice": "required"}, 400, "tool_choice"),
    ("POST", COMP, {"prompt": "x", "guided_regex": "[a-"}, 400, "guided_regex"),
    ("POST", CHAT, {"messages": M, "logit_bias": {"5": 10}}, 400, "logit_bias"),
    ("POST", CHAT, {"messages": M, "tools": {"a": 1}}, 400, "tools"),
    ("POST", CHAT, {"messages": M, "tools": [{"type": "function"}]}, 400, "tools"),
    ("POST", CHAT, {"messages": M, "tool_choice": "required"}, 400, "tool_choice"),
    ("POST", CHAT, {"messages": M, "tool_choice": "sometimes"}, 400, "tool_choice"),
    ("POST", CHAT, {"messages": M, "tools": [{"type": "function", "function": {"name": "f"}}],
                    "tool_choice": {"type": "function", "function": {"name": "g"}}}, 400, "tool_choice"),
    ("POST", CHAT, {"messages": M, "chat_template_kwargs": [1]}, 400, "chat_template_kwargs"),
    ("POST", CHAT, {"messages": M, "add_generation_prompt": "no"}, 400, "add_generation_prompt"),
    ("POST", CHAT, {"messages": M, "use_beam_search": True}, 400, "use_beam_search"),
    ("POST", COMP, {}, 400, "prompt"),
    ("POST", COMP, {"prompt": 42}, 400, "prompt"),
    ("POST", COMP, {"prompt": ""}, 400, "prompt"),
    ("POST", COMP, {"prompt": ["a", "b"]}, 400, "prompt"),
    ("POST", COMP, {"prompt": [1, -2]}, 400, "prompt"),
    ("POST", COMP, {"prompt": [999999]}, 400, "prompt"),
    ("POST", COMP, {"prompt": "x", "logprobs": 99}, 400, "logprobs"),
    ("POST", COMP, {"prompt": "x", "suffix": "y"}, 400, "suffix"),
    ("POST", COMP, {"prompt": "x", "best_of": 3}, 400, "best_of"),
    ("POST", "/tokenize", {}, 400, "prompt"),
    ("POST", "/detokenize", {"tokens": "abc"}, 400, "tokens"),
    ("POST", "/detokenize", {"tokens": [10**7]}, 400, "tokens"),
    ("GET", "/nope", None, 404, None),
    ("POST", "/v1/embeddings", {}, 404, None),
    ("GET", CHAT, None, 405, None),
    ("DELETE", COMP, None, 405, None),
    ("POST", "/v1/models", {}, 405, None),
    ("PUT", "/tokenize", {}, 405, None),
]


def send(url, method, path, body, headers=None):
    kw = {"headers": dict(headers or {}), "timeout": 60}
    if isinstance(body, str):
        kw["data"] = body.encode()
        kw["headers"]["Content-Type"] = "application/json"
    elif body is not None:
        kw["json"] = body
    return requests.request(method, url + path, **kw)


def check_error(r, status, param=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert err["param"] == param
    return err


@pytest.mark.parametrize("method,path,body,status,param", CASES)
def test_bad_request(server, method, path, body, status, param):
    err = check_error(send(server.url, method, path, body), status, param)
    if status in (400, 404, 405):
        assert err["type"] == "invalid_request_error"


def test_context_overflow_wording(server):
    limit = requests.get(server.url + "/v1/models").json()["data"][0]["max_model_len"]
    r = send(server.url, "POST", COMP, {"prompt": "hello", "max_tokens": limit})
    err = check_error(r, 400, "max_tokens")
    assert err["message"].startswith("This model's maximum context length is %d tokens" % limit)
    assert err["code"] == "context_length_exceeded"


def test_oversized_body_413(server):
    big = '{"prompt": "' + "a" * (33 << 20) + '"}'
    try:
        r = send(server.url, "POST", COMP, big)
        assert r.status_code == 413
    except requests.ConnectionError:
        pass  # the server may close the connection before reading the whole body
    assert requests.get(server.url + "/health").status_code == 200


def test_garbage_on_the_socket(server):
    for payload in [b"\x00\xff garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"POST /v1/completions HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(payload)
            try:
                s.recv(4096)
            except OSError:
                pass
    assert requests.get(server.url + "/health").status_code == 200


def test_server_survives_all_cases(server):
    r = send(server.url, "POST", CHAT, {"messages": M, "max_tokens": 2})
    assert r.status_code == 200


@pytest.fixture(scope="module")
def keyed():
    s = Server("--api-key", "sekrit", "--served-model-name", "my-model")
    yield s
    s.stop()


def test_api_key(keyed):
    body = {"messages": M, "max_tokens": 2, "model": "my-model"}
    err = check_error(send(keyed.url, "POST", CHAT, body), 401)
    assert err["type"] == "authentication_error"
    check_error(send(keyed.url, "POST", CHAT, body, {"Authorization": "Bearer wrong"}), 401)
    check_error(send(keyed.url, "GET", "/v1/models", None, {"Authorization": "sekrit"}), 401)
    check_error(send(keyed.url, "POST", "/tokenize", {"prompt": "x"}), 401)
    ok = send(keyed.url, "POST", CHAT, body, {"Authorization": "Bearer sekrit"})
    assert ok.status_code == 200 and ok.json()["model"] == "my-model"
    assert requests.get(keyed.url + "/health").status_code == 200
    assert requests.get(keyed.url + "/metrics").status_code == 200
    from openai import OpenAI, AuthenticationError
    assert OpenAI(base_url=keyed.url + "/v1", api_key="sekrit").models.list().data[0].id == "my-model"
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=keyed.url + "/v1", api_key="nope", max_retries=0).models.list()
