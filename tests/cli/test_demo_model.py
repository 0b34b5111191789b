"""The bundled demo model (models/demo) is the trained one (tools/train_demo): its chat
template and stop token are meaningful, and our engine reproduces the transformers reference
perplexity recorded when it was trained (tests/data/demo/transformers_reference.json, fp32,
first 2048 tokens of each test split in windows of 256; the head files hold the start of the
test splits, which tokenizes to the same first 2048 tokens)."""
import json
import os
import subprocess

import pytest
from tokenizers import Tokenizer

SRC = os.environ.get("NEMOTRON_SOURCE_DIR", ".")
DEMO = os.path.join(SRC, "models", "demo")
DATA = os.path.join(os.environ.get("NEMOTRON_TEST_DATA", os.path.join(SRC, "tests", "data")), "demo")
BIN = os.environ.get("NEMOTRON_BIN", "nemotron")
EOS = 11  # <|im_end|>


def generate(prompt, max_tokens=96):
    out = subprocess.run([BIN, "generate", "--model", DEMO, "--prompt", prompt, "--chat", "--max-tokens",
                          str(max_tokens), "--device", "cpu", "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["ids"]


@pytest.mark.parametrize("question", ['What does "ephemeral" mean?', "Define lantern."])
def test_definition_answer_follows_the_chat_format(question):
    ids = generate(question)
    tok = Tokenizer.from_file(os.path.join(DEMO, "tokenizer.json"))
    text = tok.decode(ids, skip_special_tokens=False)
    # thinking is on by default: reasoning, </think>, then the answer in the trained format,
    # ended by the chat end token well before the limit
    assert ids[-1] == EOS and len(ids) < 96, text
    reasoning, answer = text.split("</think>\n", 1)
    assert "means" in reasoning
    assert answer.startswith("**") and "):" in answer, text


@pytest.mark.parametrize("split", ["prose", "code"])
def test_perplexity_matches_transformers(tmp_path, split):
    ref = json.load(open(os.path.join(DATA, "transformers_reference.json")))["splits"][f"test.{split}.txt"]["ci"]
    out = tmp_path / "eval.json"
    subprocess.run([BIN, "eval", "--model", DEMO, "--text-file", os.path.join(DATA, f"test.{split}.head.txt"),
                    "--max-tokens", str(ref["max_tokens"]), "--context", str(ref["context"]), "--mtp-prompts", "0",
                    "--device", "cpu", "--json", str(out)], check=True, capture_output=True, text=True)
    ours = json.load(open(out))["files"][0]["perplexity"]
    ppl = ours["ppl"]
    assert ours["tokens"] == ref["scored"]
    assert ours["window_nll"] == pytest.approx(ref["window_nll"], abs=2e-3)  # NLL sums of 255 tokens
    # the bound is 0.5 %; fp32 against fp32, the observed difference is ~1e-9
    assert abs(ppl / ref["ppl"] - 1) < 1e-4, (ppl, ref["ppl"])
