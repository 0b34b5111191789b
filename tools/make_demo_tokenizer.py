#!/usr/bin/env python3
"""Builds small tokenizers with Nemotron 3's structure with the Hugging Face `tokenizers` library
(the test tokenizers, and the trained demo model's through tools/train_demo/make_tokenizer.py).

Structure (Nemotron 3's, see docs §2): byte-level BPE, ids 0-999 reserved special tokens
(<unk> 0, <s> 1, </s> 2, <|im_start|> 10, <|im_end|> 11, <think> 12, </think> 13; we also put
<tool_call> 14, </tool_call> 15, <tool_response> 16, </tool_response> 17, whose real ids are
unverified; every other slot is <SPECIAL_N>), byte b at id 1000 + b, merged tokens from 1256 up,
pre-tokenizer = Split(Tekken regex, Isolated) then ByteLevel(add_prefix_space=False,
use_regex=False), ByteLevel decoder, ByteLevel post-processor (adds nothing: no BOS).

Training data (deterministic, present on every Debian 12 machine with Python 3.11):
  * English prose: every file in /usr/share/common-licenses/ (package base-files), sorted by name;
  * Python code: the CPython standard library modules listed in STDLIB_MODULES, read from
    os.path.dirname(os.__file__).
The BPE trainer runs single-threaded (RAYON_NUM_THREADS=1); its merges are then truncated so
that the vocabulary has exactly --vocab-size entries (default 4096).

Usage:  python3 tools/make_demo_tokenizer.py --out DIR [--vocab-size 4096]
Writes OUT/tokenizer.json and OUT/tokenizer_config.json (chat_template = the content of
data/chat_templates/nemotron3-nano-30b-a3b.chat_template.jinja).

`build_nemotron_tokenizer` is also used by tests/text_tokenizer to build test tokenizers.
"""
import argparse
import glob
import json
import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

TEKKEN_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
    r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

KNOWN_SPECIALS = {
    0: "<unk>", 1: "<s>", 2: "</s>", 10: "<|im_start|>", 11: "<|im_end|>", 12: "<think>",
    13: "</think>", 14: "<tool_call>", 15: "</tool_call>", 16: "<tool_response>",
    17: "</tool_response>",
}
NUM_RESERVED = 1000
BYTE_BASE = 1000

STDLIB_MODULES = [
    "argparse.py", "ast.py", "base64.py", "bisect.py", "calendar.py", "collections/__init__.py",
    "configparser.py", "contextlib.py", "copy.py", "csv.py", "dataclasses.py", "datetime.py",
    "difflib.py", "enum.py", "fractions.py", "functools.py", "gettext.py", "glob.py", "heapq.py",
    "inspect.py", "json/decoder.py", "json/encoder.py", "logging/__init__.py", "pathlib.py",
    "pprint.py", "queue.py", "random.py", "shutil.py", "statistics.py", "string.py",
    "subprocess.py", "tempfile.py", "textwrap.py", "threading.py", "typing.py", "uuid.py",
]


def special_names():
    return [KNOWN_SPECIALS.get(i, f"<SPECIAL_{i}>") for i in range(NUM_RESERVED)]


def training_texts():
    """The demo corpus: license prose then stdlib code, in a fixed order."""
    texts = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        with open(path, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    stdlib = os.path.dirname(os.__file__)
    for name in STDLIB_MODULES:
        path = os.path.join(stdlib, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
    return texts


def _chunks(texts, size=4096):
    for t in texts:
        for i in range(0, len(t), size):
            yield t[i:i + size]


def nemotron_pre_tokenizer():
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(TEKKEN_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def build_nemotron_tokenizer(texts, vocab_size):
    """A tokenizer with Nemotron 3's layout and `vocab_size` entries, trained on `texts`."""
    n_merges = vocab_size - NUM_RESERVED - 256
    if n_merges < 0:
        raise ValueError("vocab_size must be at least 1256")
    # 1. Train merges on byte-level pieces (ids are re-assigned below).
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = nemotron_pre_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=256 + n_merges + 64, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    trainer_tok.train_from_iterator(_chunks(texts), trainer=trainer)
    merges = json.loads(trainer_tok.to_str())["model"]["merges"]
    # 2. Layout: specials, then the 256 byte characters in byte order, then merge results.
    byte_chars = [None] * 256
    for ch in pre_tokenizers.ByteLevel.alphabet():  # unordered; place each at its byte value
        byte_chars[_byte_of_char(ch)] = ch
    vocab = {}
    for i, name in enumerate(special_names()):
        vocab[name] = i
    for b, ch in enumerate(byte_chars):
        vocab[ch] = BYTE_BASE + b
    kept = []
    for a, b in (m if isinstance(m, list) else m.split(" ", 1) for m in merges):
        if len(vocab) >= vocab_size:
            break
        if a in vocab and b in vocab and a + b not in vocab:
            vocab[a + b] = len(vocab)
            kept.append((a, b))
    if len(vocab) != vocab_size:
        raise RuntimeError(f"training produced only {len(vocab)} tokens; need more text")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=kept, ignore_merges=False))
    tok.pre_tokenizer = nemotron_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in special_names()])
    return tok


def _byte_of_char(ch):
    """Inverse of GPT-2's bytes_to_unicode for one character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip((chr(c) for c in cs), bs))[ch]


def tokenizer_config(tok, chat_template):
    added = {}
    for i, name in enumerate(special_names()):
        added[str(i)] = {"content": name, "lstrip": False, "normalized": False, "rstrip": False,
                         "single_word": False, "special": True}
    return {
        "add_bos_token": False,
        "add_eos_token": False,
        "added_tokens_decoder": added,
        "bos_token": "<s>",
        "chat_template": chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": "<SPECIAL_999>",
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "<unk>",
    }


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab-size", type=int, default=4096)
    args = ap.parse_args()
    tok = build_nemotron_tokenizer(training_texts(), args.vocab_size)
    with open(os.path.join(root, "data", "chat_templates", "nemotron3-nano-30b-a3b.chat_template.jinja"),
              encoding="utf-8") as f:
        chat_template = f.read()
    os.makedirs(args.out, exist_ok=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(tok, chat_template), f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {args.out}/tokenizer.json ({tok.get_vocab_size()} tokens) and tokenizer_config.json")


if __name__ == "__main__":
    main()
