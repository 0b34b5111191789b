"""`nemotron tokenize` command line: output formats and error reporting."""
import json
import os
import subprocess

from tokenizers import Tokenizer

from conftest import nemotron_bin

DEMO = os.path.join(os.environ.get("NEMOTRON_SOURCE_DIR", "."), "models", "demo")


def run(*args):
    return subprocess.run([nemotron_bin(), "tokenize", *args], capture_output=True, timeout=120)


def test_encode_prints_json_ids_and_decode_prints_exact_text():
    ref = Tokenizer.from_file(os.path.join(DEMO, "tokenizer.json"))
    text = "<|im_start|>user\nHello 世界 😀\n\n  trailing  "
    proc = run("--tokenizer", DEMO, "--text", text)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(b"]\n") and proc.stdout.count(b"\n") == 1
    ids = json.loads(proc.stdout)
    assert ids == ref.encode(text, add_special_tokens=False).ids
    proc = run("--tokenizer", DEMO, "--decode", "--ids", ",".join(map(str, ids)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == ref.decode(ids, skip_special_tokens=False) == text
    proc = run("--tokenizer", os.path.join(DEMO, "tokenizer.json"), "--decode", "--skip-special-tokens",
               "--ids", ",".join(map(str, ids)))
    assert proc.stdout.decode() == ref.decode(ids, skip_special_tokens=True)


def test_ids_file_and_no_parse_special(tmp_path):
    ref = Tokenizer.from_file(os.path.join(DEMO, "tokenizer.json"))
    f = tmp_path / "ids.json"
    f.write_text("[10, 1072, 11]")
    proc = run("--tokenizer", DEMO, "--decode", "--ids-file", str(f))
    assert proc.stdout.decode() == ref.decode([10, 1072, 11], skip_special_tokens=False)
    proc = run("--tokenizer", DEMO, "--text", "<|im_end|>", "--no-parse-special")
    ids = json.loads(proc.stdout)
    assert 11 not in ids and ref.decode(ids) == "<|im_end|>"


def test_errors_are_reported_with_file_and_json_path(tmp_path):
    proc = run("--tokenizer", str(tmp_path / "nope"), "--text", "x")
    assert proc.returncode == 1 and b"nope" in proc.stderr and b"error:" in proc.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.json").write_text("{ not json")
    proc = run("--tokenizer", str(bad), "--text", "x")
    assert proc.returncode == 1 and b"invalid JSON" in proc.stderr and b"tokenizer.json" in proc.stderr
    spec = json.load(open(os.path.join(DEMO, "tokenizer.json"), encoding="utf-8"))
    spec["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {"Regex": "[unclosed"}
    (bad / "tokenizer.json").write_text(json.dumps(spec))
    proc = run("--tokenizer", str(bad), "--text", "x")
    assert proc.returncode == 1 and b"pre_tokenizer.pretokenizers[0].pattern.Regex" in proc.stderr
    spec["pre_tokenizer"] = {"type": "Unheard"}
    (bad / "tokenizer.json").write_text(json.dumps(spec))
    proc = run("--tokenizer", str(bad), "--text", "x")
    assert proc.returncode == 1 and b"pre_tokenizer.type" in proc.stderr
    proc = run("--tokenizer", DEMO, "--decode", "--ids", "1,x")
    assert proc.returncode == 1 and b"not an integer" in proc.stderr
    proc = run("--tokenizer", DEMO, "--decode")
    assert proc.returncode == 1
