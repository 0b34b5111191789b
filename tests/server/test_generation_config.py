"""generation_config.json defaults (as vLLM applies them): sampling fields a request omits take
the model directory's values; fields it gives win; a malformed file stops start-up with an
error naming the file and the key."""
import json
import os
import subprocess

import pytest

from conftest import BIN, DEMO, Server


def model_dir(tmp_path, config):
    d = tmp_path / "model"
    d.mkdir()
    for name in os.listdir(DEMO):
        os.symlink(os.path.abspath(os.path.join(DEMO, name)), d / name)
    (d / "generation_config.json").write_text(json.dumps(config))
    return str(d)


def complete(server, **body):
    import requests
    body = {"prompt": "The cat", "max_tokens": 12, "ignore_eos": True, **body}
    r = requests.post(server.url + "/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def test_omitted_fields_take_the_models_defaults(tmp_path):
    s = Server(model=model_dir(tmp_path, {"temperature": 0.0, "top_p": 0.5, "top_k": 3}))
    try:
        greedy = complete(s, temperature=0)
        # No sampling fields: the model's temperature 0 -> greedy, whatever the seed.
        assert complete(s) == greedy
        assert complete(s, seed=5) == greedy
        # A field the request gives wins: temperature 1.5 with different seeds differs.
        texts = {complete(s, temperature=1.5, top_k=-1, top_p=1.0, seed=i) for i in range(4)}
        assert len(texts) > 1
    finally:
        s.stop()


@pytest.mark.parametrize("config,key", [({"temperature": 7}, "temperature"), ({"top_k": "x"}, "top_k"),
                                        ({"top_p": 0}, "top_p")])
def test_bad_generation_config_is_a_start_up_error(tmp_path, config, key):
    d = model_dir(tmp_path, config)
    r = subprocess.run([BIN, "serve", "--model", d, "--port", "0", "--memory", "2"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0
    assert "generation_config.json" in r.stderr and key in r.stderr, r.stderr


# Issue 18: NaN / Infinity (bare tokens, as Python's json.dumps writes them) in a float key are
# refused with an error naming the file and the key, like any other bad value.
@pytest.mark.parametrize("key,value", [("temperature", float("nan")), ("top_p", float("nan")),
                                       ("min_p", float("nan")), ("repetition_penalty", float("nan")),
                                       ("temperature", float("inf")), ("min_p", float("-inf")),
                                       ("top_k", float("nan"))])
def test_non_finite_generation_config_is_a_start_up_error(tmp_path, key, value):
    d = model_dir(tmp_path, {key: value})
    assert "NaN" in open(os.path.join(d, "generation_config.json")).read() or "Infinity" in \
        open(os.path.join(d, "generation_config.json")).read()
    r = subprocess.run([BIN, "serve", "--model", d, "--port", "0", "--memory", "2"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0
    assert "generation_config.json" in r.stderr and "'" + key + "'" in r.stderr, r.stderr


def test_malformed_json_is_a_start_up_error(tmp_path):
    d = model_dir(tmp_path, {})
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        f.write("{not json")
    r = subprocess.run([BIN, "serve", "--model", d, "--port", "0", "--memory", "2"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and "generation_config.json" in r.stderr, r.stderr
