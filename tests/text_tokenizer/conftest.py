import json
import os
import subprocess
import sys

import pytest

sys.dont_write_bytecode = True  # never write __pycache__ into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tok_builders  # noqa: E402


def nemotron_bin():
    path = os.environ.get("NEMOTRON_BIN")
    if not path or not os.path.exists(path):
        pytest.fail("NEMOTRON_BIN must point at the built nemotron binary")
    return path


@pytest.fixture(scope="session")
def tokenizers_dir(tmp_path_factory):
    """name -> (directory holding tokenizer.json, tokenizers.Tokenizer)"""
    root = tmp_path_factory.mktemp("tokenizers")
    out = {}
    for name, tok in tok_builders.all_tokenizers().items():
        d = root / name
        d.mkdir()
        if name in tok_builders.RAW_JSON:
            (d / "tokenizer.json").write_text(tok_builders.RAW_JSON[name], encoding="utf-8")
        else:
            tok.save(str(d / "tokenizer.json"))
        out[name] = (str(d), tok)
    return out


class Cli:
    def __init__(self, tmp):
        self.tmp = tmp
        self.n = 0

    def _file(self, data):
        self.n += 1
        path = os.path.join(self.tmp, f"in{self.n}")
        with open(path, "wb") as f:
            f.write(data if isinstance(data, bytes) else json.dumps(data).encode())
        return path

    def run(self, *args):
        proc = subprocess.run([nemotron_bin(), "tokenize", *args], capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return proc.stdout

    def encode_batch(self, tok_dir, texts, add_special=False):
        args = ["--tokenizer", tok_dir, "--batch-file", self._file(texts)]
        if add_special:
            args.append("--add-special-tokens")
        return json.loads(self.run(*args))

    def encode_batch_args(self, tok_dir, texts, *extra):
        return json.loads(self.run("--tokenizer", tok_dir, "--batch-file", self._file(texts), *extra))

    def decode_batch(self, tok_dir, id_lists, skip_special=False, stream=False):
        args = ["--tokenizer", tok_dir, "--decode", "--batch-file", self._file(id_lists)]
        if skip_special:
            args.append("--skip-special-tokens")
        if stream:
            args.append("--stream")
        return json.loads(self.run(*args))

    def encode_bytes(self, tok_dir, data):
        return json.loads(self.run("--tokenizer", tok_dir, "--text-file", self._file(data)))


@pytest.fixture
def cli(tmp_path):
    return Cli(str(tmp_path))
