"""The JSON Schema grammar against the official JSON-Schema-Test-Suite (Debian package
json-schema-test-suite, newest draft it ships): for every schema of the suite, the grammar
tool either refuses it with an Error naming a keyword, or samples random texts FROM its
grammar, and every text must validate against the schema with the `jsonschema` package.

oneOf is documented to compile as anyOf (a text matching several branches is not excluded),
so texts are validated against the schema with oneOf read as anyOf; strict-oneOf misses are
counted and reported, not failed.
"""
import collections
import copy
import json
import os
import pathlib
import re
import subprocess

import jsonschema
import pytest

SUITE = pathlib.Path("/usr/share/json-schema-test-suite/tests")
SAMPLES = 30
MAX_BYTES = 160


def newest_draft():
    if not SUITE.is_dir():
        pytest.fail(f"{SUITE} not found: install the Debian package json-schema-test-suite (scripts/install-deps.sh)")
    def key(p):
        digits = re.sub(r"\D", "", p.name)
        return int(digits) if digits else 0
    drafts = sorted((p for p in SUITE.iterdir() if p.is_dir() and p.name.startswith("draft")), key=key)
    return drafts[-1]


def validator_class(draft):
    return {
        "draft3": jsonschema.Draft3Validator, "draft4": jsonschema.Draft4Validator,
        "draft6": jsonschema.Draft6Validator, "draft7": jsonschema.Draft7Validator,
        "draft2019-09": getattr(jsonschema, "Draft201909Validator", None),
        "draft2020-12": getattr(jsonschema, "Draft202012Validator", None),
    }[draft.name]


def one_of_as_any_of(schema):
    if isinstance(schema, dict):
        out = {}
        for k, v in schema.items():
            if k == "oneOf":
                out["anyOf"] = one_of_as_any_of(v)
            elif k in ("enum", "const", "default", "examples"):
                out[k] = copy.deepcopy(v)
            else:
                out[k] = one_of_as_any_of(v)
        return out
    if isinstance(schema, list):
        return [one_of_as_any_of(x) for x in schema]
    return schema


def tool_path():
    build = os.environ.get("NEMOTRON_BUILD_DIR", os.path.join(os.environ.get("NEMOTRON_SOURCE_DIR", "."), "build"))
    path = os.path.join(build, "tests", "nemotron_grammar_tool")
    if not os.path.exists(path):
        pytest.fail(f"{path} not built (cmake --build build --target nemotron_grammar_tool)")
    return path


def test_schema_suite():
    draft = newest_draft()
    cls = validator_class(draft)
    cases = []
    for f in sorted(draft.rglob("*.json")):
        for i, group in enumerate(json.loads(f.read_text(encoding="utf-8"))):
            cases.append((f"{f.relative_to(draft)}#{i} {group['description']}", group["schema"]))
    lines = [json.dumps({"schema": s, "samples": SAMPLES, "seed": n + 1, "max_bytes": MAX_BYTES}, ensure_ascii=False)
             for n, (_, s) in enumerate(cases)]
    proc = subprocess.run([tool_path()], input="\n".join(lines) + "\n", capture_output=True, text=True,
                          encoding="utf-8", timeout=600)
    assert proc.returncode == 0, f"grammar tool crashed (status {proc.returncode}): {proc.stderr[-2000:]}"
    results = [json.loads(l) for l in proc.stdout.split("\n") if l]  # not splitlines(): U+2028 etc.
    assert len(results) == len(cases), f"{len(results)} answers for {len(cases)} schemas"

    accepted = refused = empty = texts = oneof_strict_misses = 0
    refused_by = collections.Counter()
    failures = []
    for (name, schema), res in zip(cases, results):
        if not res["ok"]:
            err = res["error"]
            m = re.search(r"unsupported JSON Schema keyword '([^']+)' at (\S*)", err)
            if m:
                refused += 1
                refused_by[m.group(1)] += 1
            elif "matches no text" in err:
                empty += 1  # e.g. the schema `false`
            else:
                failures.append(f"{name}: refused without naming a keyword: {err}")
            continue
        accepted += 1
        relaxed = cls(one_of_as_any_of(schema), format_checker=cls.FORMAT_CHECKER)
        strict = cls(schema, format_checker=cls.FORMAT_CHECKER)
        for text in res["samples"]:
            texts += 1
            try:
                value = json.loads(text)
            except ValueError as e:
                failures.append(f"{name}: generated text is not JSON ({e}): {text!r}")
                continue
            errors = list(relaxed.iter_errors(value))
            if errors:
                failures.append(f"{name}: generated {text!r} does not validate: {errors[0].message}")
            elif not strict.is_valid(value):
                oneof_strict_misses += 1
    print(f"\nJSON-Schema-Test-Suite {draft.name}: {len(cases)} schemas, {accepted} accepted "
          f"({texts} texts sampled and validated), {refused} refused naming a keyword, "
          f"{empty} matching nothing; oneOf-as-anyOf texts failing strict oneOf: {oneof_strict_misses}")
    print("refused by keyword: " + ", ".join(f"{k} {n}" for k, n in refused_by.most_common()))
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:40])
