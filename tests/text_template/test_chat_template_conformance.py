"""Byte-for-byte conformance of `nemotron template` with Python jinja2 configured exactly
as transformers' chat_template_utils configures it (ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, loopcontrols, tojson = json.dumps(ensure_ascii=False, ...),
raise_exception, strftime_now), after the same OpenAI-request preprocessing the C++ glue
documents in src/text/jinja/chat_template.h (vLLM's behaviour). Every template in
data/chat_templates is rendered for every conversation of the corpus below; where the
reference raises, the binary must fail with a message on stderr.
"""
import copy
import datetime
import glob
import json
import os
import subprocess
import tempfile

import jinja2
import jinja2.nodes
import pytest
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

BIN = os.environ.get("NEMOTRON_BIN", "build/nemotron")
SOURCE_DIR = os.environ.get("NEMOTRON_SOURCE_DIR", os.getcwd())
TEMPLATES = sorted(glob.glob(os.path.join(SOURCE_DIR, "data", "chat_templates", "*.jinja")))


# ----------------------------------------------------------------------------- reference

def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def iterates_content(env, source):
    """vLLM's content-format detection: does the template loop over X.content / X['content']?"""
    for node in env.parse(source).find_all(jinja2.nodes.For):
        it = node.iter
        if isinstance(it, jinja2.nodes.Getattr) and it.attr == "content":
            return True
        if (isinstance(it, jinja2.nodes.Getitem) and isinstance(it.arg, jinja2.nodes.Const)
                and it.arg.value == "content"):
            return True
    return False


def normalize_messages(messages, keep_parts):
    messages = copy.deepcopy(messages)
    for m in messages:
        if isinstance(m.get("content"), list) and not keep_parts:
            m["content"] = "\n".join(p["text"] for p in m["content"])
        if m.get("role") != "assistant":
            continue
        if "reasoning" in m and "reasoning_content" not in m:
            m["reasoning_content"] = m["reasoning"]
        for call in m.get("tool_calls") or []:
            fn = call.get("function")
            if not isinstance(fn, dict):
                continue
            args = fn.get("arguments")
            if args is None or args == "":
                fn["arguments"] = {}
            elif isinstance(args, str):
                fn["arguments"] = json.loads(args)
    return messages


def render_reference(source, request):
    env = make_env()
    try:
        template = env.from_string(source)
        context = dict(
            messages=normalize_messages(request["messages"], iterates_content(env, source)),
            tools=request.get("tools"),
            documents=None,
            add_generation_prompt=request.get("add_generation_prompt", True),
            bos_token="<s>",
            eos_token="</s>",
        )
        context.update(request.get("chat_template_kwargs") or {})
        return True, template.render(**context)
    except Exception as e:  # noqa: BLE001 - any template failure must be a failure for us too
        return False, f"{type(e).__name__}: {e}"


def render_ours(template_path, request):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(request, f, ensure_ascii=False)
        path = f.name
    try:
        p = subprocess.run([BIN, "template", "--template", template_path, "--request", path],
                           capture_output=True, timeout=60)
    finally:
        os.unlink(path)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def check(template_path, request):
    with open(template_path, encoding="utf-8") as f:
        source = f.read()
    ok, expected = render_reference(source, request)
    rc, out, err = render_ours(template_path, request)
    if ok:
        assert rc == 0, f"reference rendered but we failed: {err}"
        assert out == expected.encode("utf-8")
    else:
        assert rc != 0, f"reference raised ({expected}) but we rendered: {out[:300]!r}"
        assert err.strip(), "error exit without a message"
    return ok


# ----------------------------------------------------------------------------- corpus

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "  Get the current weather.\n ",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": " City name "},
        "unit": {"type": ["string", "null"], "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        "days": {"type": "integer", "minimum": 1, "maximum": 14, "default": 3, "exclusiveMinimum": False},
        "ratio": {"type": "number", "default": 0.5, "multipleOf": 1e-05, "nullable": None},
    }, "required": ["city"]}}}

NESTED_TOOL = {"type": "function", "function": {
    "name": "create_event", "description": "Create a calendar event — 日本語 ✓",
    "strict": True,
    "parameters": {"type": "object", "properties": {
        "title": {"type": "string"},
        "attendees": {"type": "array", "items": {"type": "object", "properties": {
            "email": {"type": "string", "format": "email"}, "optional": {"type": "boolean"}},
            "required": ["email"]}},
        "when": {"anyOf": [{"type": "string", "format": "date-time"}, {"$ref": "#/$defs/Range"}]},
        "priority": {"enum": [1, 2, 3.5, None, True]},
        "meta": {"type": "object", "additionalProperties": {"type": "string"}},
    }, "required": ["title", "when"], "additionalProperties": False,
        "$defs": {"Range": {"type": "object", "properties": {
            "start": {"type": "string"}, "end": {"type": "string"}}}}}}}

BARE_TOOL = {"type": "function", "function": {"name": "ping"}}
NO_PROPS_TOOL = {"type": "function", "function": {"name": "now", "description": "Time",
                                                  "parameters": {"type": "object"}}}
FLAT_TOOL = {"name": "search", "description": "Search the web",
             "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}

SYS = {"role": "system", "content": "You are a helpful assistant."}


def u(text):
    return {"role": "user", "content": text}


def a(text, reasoning=None, **extra):
    m = {"role": "assistant", "content": text}
    if reasoning is not None:
        m["reasoning_content"] = reasoning
    m.update(extra)
    return m


def call(name, args, cid="call_1"):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def tool(content, cid="call_1"):
    return {"role": "tool", "tool_call_id": cid, "content": content}


CONVERSATIONS = {
    "single_user": [u("Hello")],
    "system_user": [SYS, u("Hello")],
    "empty_system": [{"role": "system", "content": ""}, u("Hi")],
    "multi_turn": [SYS, u("Hi"), a("Hello! How can I help?"), u("Tell me a joke."),
                   a("Why did the chicken cross the road?"), u("Why?")],
    "history_reasoning": [u("2+2?"), a("4", reasoning="Simple arithmetic: 2+2=4."), u("and 3+3?")],
    "history_reasoning_blank": [u("q"), a("answer", reasoning="   \n "), u("next")],
    "inline_think_history": [u("q"), a("<think>\nhidden\n</think>\nshown"), u("next")],
    "broken_think": [u("q"), a("text <think> never closed"), u("next")],
    "reasoning_alias": [u("q"), {"role": "assistant", "content": "A", "reasoning": "R via alias"}, u("next")],
    "last_assistant_reasoning": [u("q"), a("final", reasoning="kept because after last user")],
    "tools_no_calls": [SYS, u("Weather in Paris?")],
    "tool_call_object_args": [
        u("Weather in Paris?"),
        a(None, tool_calls=[call("get_weather", {"city": "Paris", "days": 2, "unit": None,
                                                 "ratio": 0.25, "flag": True,
                                                 "nested": {"a": [1, 2, {"b": "ü"}]},
                                                 "list": ["x", 1.0, False]})]),
        tool('{"temp": 21, "unit": "celsius"}')],
    "tool_call_string_args": [
        u("Weather in Paris?"),
        a("Let me check.", tool_calls=[call("get_weather", '{"city": "Paris", "days": 3, "extra": {"k": [1, 2]}}')]),
        tool("sunny")],
    "tool_call_empty_string_args": [u("ping"), a("", tool_calls=[call("ping", "")]), tool("pong")],
    "several_tool_results": [
        SYS, u("Compare weather in Paris and Tokyo"),
        a("", reasoning="Need two calls.",
          tool_calls=[call("get_weather", {"city": "Paris"}, "c1"), call("get_weather", {"city": "東京"}, "c2")]),
        tool("Paris: 20C", "c1"), tool("東京: 25C 🌤", "c2"),
        a("Paris is 20C and Tokyo 25C.")],
    "agentic_loop_after_user": [
        u("Plan a trip"),
        a("Step 1", reasoning="thinking about step 1", tool_calls=[call("get_weather", {"city": "Rome"})]),
        tool("hot"),
        a("Step 2", reasoning="thinking about step 2", tool_calls=[call("get_weather", {"city": "Oslo"})]),
        tool("cold")],
    "historical_tool_calls_truncated": [
        u("First"),
        a("<think>\nold reasoning\n</think>\nCalling", tool_calls=[call("get_weather", {"city": "A"})]),
        tool("res"), a("Done"), u("Second question")],
    "tool_first_message": [tool("orphan result"), u("what was that?")],
    "tool_last_message": [u("q"), a("", tool_calls=[call("ping", {})]), tool("pong")],
    "unicode": [SYS, u("日本語で答えて 🙂 — naïve café \u00a0nbsp"), a("はい、わかりました 👍"), u("ok ✓")],
    "jinja_like_content": [u("Render {{ user }} and {% if x %}y{% endif %} {# c #}"), a("{{ literal }}"), u("{%- raw %}")],
    "content_parts": [{"role": "user", "content": [{"type": "text", "text": "part one"},
                                                   {"type": "text", "text": "part two"}]}],
    "content_none_assistant": [u("q"), a(None), u("again")],
    "other_role": [u("q"), {"role": "developer", "content": "dev note"}, u("more")],
    "mid_system": [u("q"), {"role": "system", "content": "late system"}, a("ok"), u("z")],
    "whitespace_content": [u("  padded  \n"), a("  spaced answer \n\n"), u("\tTab")],
    "think_toggles": [SYS, u("/no_think please answer"), a("ok"), u("now /think harder")],
    "quotes_and_escapes": [u("He said \"hi\" and 'bye' \\ backslash \t tab \u0001 ctrl")],
    "empty_messages": [],
    "array_string_args": [u("q"), a("", tool_calls=[call("ping", "[1, 2]")])],
}

TOOLSETS = {
    "none": None,
    "weather": [WEATHER_TOOL],
    "all": [WEATHER_TOOL, NESTED_TOOL, BARE_TOOL, NO_PROPS_TOOL, FLAT_TOOL],
}

KWARGS = {
    "default": None,
    "no_thinking": {"enable_thinking": False},
    "no_truncate": {"truncate_history_thinking": False},
    "effort": {"low_effort": True, "medium_effort": True, "reasoning_budget": 512},
    "all_off": {"enable_thinking": False, "truncate_history_thinking": False, "medium_effort": False},
}


def build_cases():
    cases = []
    for conv in CONVERSATIONS:
        tools = "all" if "tool" in conv else "none"
        cases.append((conv, tools, "default", True))
    for conv in ["multi_turn", "history_reasoning", "agentic_loop_after_user",
                 "historical_tool_calls_truncated", "several_tool_results", "think_toggles"]:
        for kw in ["no_thinking", "no_truncate", "effort", "all_off"]:
            cases.append((conv, "weather", kw, True))
        cases.append((conv, "none", "default", False))
    cases.append(("system_user", "weather", "default", True))
    cases.append(("unicode", "all", "effort", False))
    return cases


CASES = build_cases()


@pytest.mark.parametrize("template_path", TEMPLATES, ids=[os.path.basename(t) for t in TEMPLATES])
@pytest.mark.parametrize("conv,tools,kwargs,gen", CASES,
                         ids=[f"{c}-{t}-{k}-{'gen' if g else 'nogen'}" for c, t, k, g in CASES])
def test_template_conformance(template_path, conv, tools, kwargs, gen):
    request = {"messages": CONVERSATIONS[conv], "add_generation_prompt": gen}
    if TOOLSETS[tools] is not None:
        request["tools"] = TOOLSETS[tools]
    if KWARGS[kwargs] is not None:
        request["chat_template_kwargs"] = KWARGS[kwargs]
    check(template_path, request)


def test_templates_present():
    assert len(TEMPLATES) >= 3
    assert len(CONVERSATIONS) >= 25


def test_reference_failures_are_exercised():
    """The corpus must contain cases where jinja2 raises (so the error path is compared)."""
    with open(TEMPLATES[0], encoding="utf-8") as f:
        source = f.read()
    ok, _ = render_reference(source, {"messages": []})
    assert not ok


def test_content_parts_kept_for_omni():
    omni = [t for t in TEMPLATES if "omni" in t]
    assert omni
    request = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:,"}},
        {"type": "image_url", "image_url": {"url": "data:,"}},
        {"type": "text", "text": "\nDescribe both. /no_think"}]}]}
    check(omni[0], request)


# ----------------------------------------------------------------------------- snippets

SNIPPETS = [
    ("{{ 1.0 }} {{ 0.1 }} {{ 1e-05 }} {{ 1e16 }} {{ 1.5e16 }} {{ 123456789.125 }} {{ 2.5e-7 }} {{ -0.0 }} {{ 1/3 }}", {}),
    ("{{ none }} {{ true }} {{ False }} {{ [1, 'a', none, true, 1.5] }} {{ {'k': 'v', 'n': [1, {'x': none}]} }}", {}),
    ("{{ x }}|{{ x.y is defined }}|{{ (1, 'a') }}|{{ (1,) }}|{{ ['it\\'s', \"q\\\"\", 'new\\nline'] }}", {}),
    ("{% for i in items %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/"
     "{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.previtem }}/{{ loop.nextitem }};{% endfor %}",
     {"items": ["a", "b", "c"]}),
    ("{% for i in items if i is odd %}{{ i }}{% else %}none{% endfor %}|{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}"
     "|{% for x in [] %}x{% else %}empty{% endfor %}",
     {"items": [1, 2, 3, 4, 5], "d": {"b": 1, "a": 2}}),
    ("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("{{ s|trim }}|{{ s|upper }}|{{ s|lower }}|{{ s|title }}|{{ s|capitalize }}|{{ s|length }}|{{ s|replace('o', '0') }}"
     "|{{ s|reverse }}|{{ s|wordcount }}|{{ s|first }}|{{ s|last }}",
     {"s": "  héllo wOrld-foo (bar) 日本  "}),
    ("{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ d|tojson(sort_keys=true) }}|{{ d|tojson(separators=(',', ':')) }}|{{ d|tojson(ensure_ascii=true) }}",
     {"d": {"z": [1, 2.5, None, True, "ü😀\"\\\n\u0001"], "a": {}, "e": []}}),
    ("{{ l|join(', ') }}|{{ l|sort|list }}|{{ l|sort(reverse=true) }}|{{ l|unique|list }}|{{ l|map('upper')|list }}"
     "|{{ l|select('equalto', 'b')|list }}|{{ l|reject('in', ['a'])|list }}|{{ l|length }}|{{ l|first }}|{{ l|last }}|{{ l|min }}|{{ l|max }}",
     {"l": ["b", "a", "C", "b"]}),
    ("{{ u|map(attribute='n')|join(',') }}|{{ u|selectattr('ok')|map(attribute='n')|list }}|{{ u|rejectattr('ok')|list }}"
     "|{{ u|sort(attribute='n')|map(attribute='n')|list }}|{{ u|sum(attribute='v') }}|{{ d|dictsort }}|{{ d|items|list }}",
     {"u": [{"n": "x", "ok": True, "v": 1}, {"n": "a", "ok": False, "v": 2.5}], "d": {"b": 2, "A": 1}}),
    ("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** 3 ** 2 }} {{ 7 / 2 }} {{ 1 + 2.0 }} {{ 'a' ~ 1 ~ none }}"
     " {{ 'ab' * 3 }} {{ [1] + [2] }} {{ -2 ** 2 }} {{ 10 - 3 - 2 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}", {}),
    ("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' in 'cat' }} {{ 2 not in [1, 3] }} {{ 'k' in {'k': 1} }} {{ 1 == 1.0 }} {{ none is none }}"
     " {{ 'x' if false }}|{{ 'y' if 0 else 'z' }} {{ 0 or 'd' }} {{ 1 and 'e' }} {{ not '' }}", {}),
    ("{{ 5 is odd }} {{ 6 is even }} {{ 9 is divisibleby 3 }} {{ 'a' is string }} {{ 1 is number }} {{ true is number }}"
     " {{ 1 is integer }} {{ 1.0 is float }} {{ {} is mapping }} {{ [] is sequence }} {{ 'x' is iterable }} {{ x is undefined }}"
     " {{ true is boolean }} {{ false is false }} {{ 3 is gt 2 }} {{ 3 is ne 3 }} {{ none is none }} {{ 'ab' is lower }}", {}),
    ("{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.strip(' x') }}|{{ s.split() }}|{{ s.split('x') }}|{{ s.split('x', 1) }}"
     "|{{ s.rsplit('x', 1) }}|{{ s.startswith(' x') }}|{{ s.endswith('z ') }}|{{ s.replace('x', 'Y') }}|{{ s.find('y') }}"
     "|{{ s.count('x') }}|{{ '-'.join(['a', 'b']) }}|{{ s.upper() }}|{{ s.title() }}|{{ 'a{}b{}'.format(1, 'c') }}",
     {"s": " xyx zx z "}),
    ("{{ l[1:] }}|{{ l[:-1] }}|{{ l[::-1] }}|{{ l[::2] }}|{{ s[1:4] }}|{{ s[-2:] }}|{{ l[-1] }}|{{ l[10] }}|{{ s[0] }}|{{ d.get('a') }}"
     "|{{ d.get('zz', 'dflt') }}|{{ d['a'] }}|{{ d.a }}|{{ d.keys()|list }}|{{ d.values()|list }}",
     {"l": [1, 2, 3, 4, 5], "s": "日本語テキスト", "d": {"a": 1, "b": [2]}}),
    ("{% set ns = namespace(n=0, items=[]) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% set ns.items = ns.items + [i] %}{% endfor %}"
     "{{ ns.n }} {{ ns.items }}{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %} {{ x }}"
     "{% set a, b = 1, 2 %} {{ a }}{{ b }}{% set blk %}inner {{ a }}{% endset %} [{{ blk }}]", {}),
    ("{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Al', punct='?') }}"
     "{% macro wrap() %}<{{ caller() }}>{% endmacro %} {% call wrap() %}body{% endcall %}"
     " {% filter upper %}shout {{ 'it' }}{% endfilter %}", {}),
    ("  {% if true %}\n    kept\n  {% endif %}\n{#- comment -#}\n  {{- ' tight ' -}}  \n{% raw %}{{ not rendered }}{% endraw %}\nend\n", {}),
    ("{{ 'x'|default('d') }} {{ missing|default('d') }} {{ ''|default('d', true) }} {{ none|default('d') }} {{ missing|d('e') }}"
     " {{ '42'|int }} {{ '4.7'|int }} {{ 'abc'|int(7) }} {{ 3.9|int }} {{ '2.5'|float }} {{ 'x'|float }} {{ -3|abs }} {{ 2.675|round(2) }}"
     " {{ 2.5|round }} {{ 3|round }} {{ 2.1|round(0, 'ceil') }} {{ 12345|string|length }} {{ [1,2]|string }}", {}),
    ("{{ text|indent(2) }}|{{ text|indent(2, true) }}|{{ text|indent('> ', blank=true) }}|{{ [1,2,3,4,5]|batch(2)|list }}"
     "|{{ [1,2,3,4,5]|slice(2)|list }}|{{ '<a href=\"x\">&\\'</a>'|e }}", {"text": "a\n\nb\nc"}),
    ("{{ raise_exception('custom failure') }}", {}),
    ("{{ missing.attr }}", {}),
    ("{% for k, v in [1, 2]|items %}{{ k }}{% endfor %}", {}),
    ("{{ x|nosuchfilter if false else 'fine' }}", {}),
    ("{% if true %}{% for i in [1] %}{{ i|nosuchfilter }}{% endfor %}{% endif %}", {}),
    ("{% if true %}{{ 1|nosuchfilter }}{% endif %}", {}),
    ("{{ {'a': 1}.pop('a') }}", {}),
    ("{{ 'a' + 1 }}", {}),
    ("{{ range(200000)|length }}", {}),
    ("{% for %}", {}),
    ("{{ x|nosuchfilter }}", {}),
    ("{% if false %}{{ x|nosuchfilter }}{% endif %}", {}),
    ("{{ 1 is nosuchtest }}", {}),
    ("{{ 1 / 0 }}", {}),
    ("{{ big * 3 }} {{ -big }} {{ big // 7 }} {{ big % 1000 }}", {"big": 2 ** 60}),
    ("{{ strftime_now('%Y') }}", {}),
    ("{{ x.y }}|{{ n.attr }}|{{ d.missing }}|{{ d.items is defined }}", {"n": None, "d": {"k": 1}}),
]


@pytest.mark.parametrize("idx", range(len(SNIPPETS)))
def test_snippet(idx, tmp_path):
    source, data = SNIPPETS[idx]
    path = tmp_path / "snippet.jinja"
    path.write_text(source, encoding="utf-8")
    request = {"messages": [], "chat_template_kwargs": data}
    assert check(str(path), request) in (True, False)
