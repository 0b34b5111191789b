"""Conformance of `nemotron tokenize` against the HF `tokenizers` library.

Every tokenizer built by tok_builders.py encodes a corpus of hard text (CJK, emoji and ZWJ
sequences, combining marks, digit runs, CRLF, tabs, space runs, code, special-token strings in
user text, compatibility characters, random mixtures) with our CLI and with the library; ids
must be identical, with and without add_special_tokens. Decoding (plain, skip_special_tokens,
and streaming through the incremental detokenizer) must give the library's text exactly.
Inputs with invalid UTF-8 must encode like the library encodes bytes.decode(errors="replace").
"""
import os
import random

import pytest

import tok_builders

SPECIALS_IN_TEXT = "<|im_start|>user\nhi<|im_end|>\n<think>x</think><tool_call>\n<s></s><|bos|>[MASK] <sep>  y"

HARD_TEXTS = [
    "",
    " ",
    "Hello, world!",
    "  leading and trailing spaces   ",
    "multiple     spaces\tand\ttabs\t\t and\r\nCRLF\r\n\r\nlines\n\n\n",
    "\n",
    "\r\n",
    "\t",
    "日本語のテキストと中文文本，还有한국어 텍스트。",
    "emoji 😀😃 and ZWJ 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 skin 👍🏽 keycap 1️⃣",
    "combining: e\u0301 a\u0308 n\u0303 q\u0307\u0323 precomposed: é ä ñ Å Å",
    "compat: ﬁ ﬀ ① ² ½ Ⅻ ｆｕｌｌｗｉｄｔｈ ㎞ ℌ",
    "digits 1234567890123456789012345678901234567890 and 3.14159 and 1,000,000 ٠١٢٣ ๑๒๓",
    "def f(x):\n    return {'a': [x**2 for x in range(10)]}  # comment\n",
    "for (int i = 0; i < n; ++i) { a[i] = b[i] << 2; }\n",
    "URL: https://example.com/path?q=1&r=2#frag email@example.org",
    SPECIALS_IN_TEXT,
    "<|im_start|><|im_start|>ab<|im_end|><|im_end|><|im_en",
    "Hello hello HELLO hellos ahello hello,hello",
    "Straße STRASSE straße ünïcode ÜNÏCODE",
    "x [MASK]   y [MASK]z <sep>    w<sep>",
    "İstanbul ΣΑΣ Σίσυφος ǅ ß ẞ",
    "Arabic: مرحبا بالعالم Hebrew: שלום עולם Hindi: नमस्ते दुनिया Thai: สวัสดีชาวโลก",
    "zero\u200bwidth\u200cjoin\u200d nbsp\u00a0here ideographic\u3000space line\u2028sep",
    "\u0085 NEL and \u000b VT \u000c FF",
    "a" * 300,
    " " * 50 + "x" + "\n" * 20,
    "ab" * 200 + " " + "1" * 100,
    "...!!!???,,,;;;::: --- ___ *** ///",
    "MixedCASEWords andCamelCase and snake_case_words",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math 𝟙𝟚𝟛 and astral 𠀀𠀁",
    "\ufffd replacement char and \ufeff BOM",
    "▁ metaspace char in text ▁▁",
    "<0x41> looks like a byte token",
    "<s>starts with a special token",
    "<|im_start|>assistant\n<think>\nreasoning\n</think>\n\n<tool_call>\n<function=f>\n</function>\n</tool_call><|im_end|>",
    "[MASK]hello[MASK] hello <sep>",
]


def random_texts(n, seed):
    rng = random.Random(seed)
    pool = ["a", "b", "Z", " ", "  ", "\n", "\r\n", "\t", "1", "23", "456", ".", ",", "!", "'s", "'ll",
            "é", "e\u0301", "日", "本", "語", "😀", "👨‍👩‍👧", "\u0301", "ß", "Σ", "ﬁ", "①", "<|im_end|>",
            "<think>", "hello", "[MASK]", "<sep>", "_", "-", "▁", "\u00a0", "\u3000", "İ", "ǅ", "/", "$", "\\"]
    out = []
    for _ in range(n):
        out.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 40))))
    return out


def file_texts():
    texts = tok_builders.demo.training_texts()
    return [texts[0][:20000], texts[-1][:20000]]


CORPUS = HARD_TEXTS + random_texts(150, 1234) + file_texts()

TOKENIZER_NAMES = ["nemotron", "nemotron_ignore_merges_bos", "gpt2", "gpt2_legacy_merges", "spm_metaspace",
                   "spm_llama", "wordy", "misc_pre"] + [
    f"split_{b}{s}" for b in tok_builders.BEHAVIORS for s in ("", "_inv")] + [
    "metaspace_always_nosplit", "metaspace_never_nosplit", "metaspace_first_nosplit", "metaspace_never_split"]


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def assert_same_ids(ours, ref, texts, tok):
    for text, o, r in zip(texts, ours, ref):
        if o != r:
            i = first_diff(o, r)
            pytest.fail(f"text {text[:80]!r}: ids differ at {i}: ours {o[max(0, i - 3):i + 5]} "
                        f"ref {r[max(0, i - 3):i + 5]} (ref tokens {[tok.id_to_token(x) for x in r[max(0, i - 3):i + 5]]})")


@pytest.mark.parametrize("name", TOKENIZER_NAMES)
@pytest.mark.parametrize("add_special", [False, True])
def test_encode_matches_library(tokenizers_dir, cli, name, add_special):
    tok_dir, tok = tokenizers_dir[name]
    ours = cli.encode_batch(tok_dir, CORPUS, add_special=add_special)
    ref = [e.ids for e in tok.encode_batch(CORPUS, add_special_tokens=add_special)]
    assert len(ours) == len(ref)
    assert_same_ids(ours, ref, CORPUS, tok)


@pytest.mark.parametrize("name", ["nemotron", "gpt2", "spm_llama", "wordy"])
def test_encode_without_parsing_special_tokens(tokenizers_dir, cli, name):
    """--no-parse-special = the library's encode_special_tokens=True."""
    from tokenizers import Tokenizer
    tok_dir, tok = tokenizers_dir[name]
    ref_tok = Tokenizer.from_str(tok.to_str())
    ref_tok.encode_special_tokens = True
    texts = HARD_TEXTS + random_texts(30, 5)
    ours = [cli_ids for cli_ids in cli.encode_batch_args(tok_dir, texts, "--no-parse-special")]
    assert_same_ids(ours, [e.ids for e in ref_tok.encode_batch(texts, add_special_tokens=False)], texts, ref_tok)


def id_lists_for(tok):
    lists = [e.ids for e in tok.encode_batch(HARD_TEXTS + random_texts(40, 99), add_special_tokens=True)]
    rng = random.Random(7)
    n = tok.get_vocab_size()
    for _ in range(40):  # random ids over the whole vocabulary: specials, bytes, partial characters
        lists.append([rng.randrange(n) for _ in range(rng.randint(1, 30))])
    lists.append([n + 5, 0, n + 100])  # unknown ids are dropped
    return lists


@pytest.mark.parametrize("name", TOKENIZER_NAMES)
@pytest.mark.parametrize("skip_special", [False, True])
def test_decode_matches_library(tokenizers_dir, cli, name, skip_special):
    tok_dir, tok = tokenizers_dir[name]
    lists = id_lists_for(tok)
    ours = cli.decode_batch(tok_dir, lists, skip_special=skip_special)
    for ids, o in zip(lists, ours):
        assert o == tok.decode(ids, skip_special_tokens=skip_special), ids


@pytest.mark.parametrize("name", ["nemotron", "gpt2", "spm_metaspace", "spm_llama", "wordy", "metaspace_never_nosplit"])
@pytest.mark.parametrize("skip_special", [False, True])
def test_streaming_decode_matches_library(tokenizers_dir, cli, name, skip_special):
    tok_dir, tok = tokenizers_dir[name]
    lists = id_lists_for(tok)
    ours = cli.decode_batch(tok_dir, lists, skip_special=skip_special, stream=True)
    for ids, pieces in zip(lists, ours):
        assert len(pieces) == len(ids) + 1
        for p in pieces:  # whole characters only (the JSON output would fail on invalid UTF-8)
            assert not any(0xD800 <= ord(c) <= 0xDFFF for c in p)
        assert "".join(pieces) == tok.decode(ids, skip_special_tokens=skip_special), ids


INVALID_UTF8 = [
    b"abc\xff\xfe def",
    b"\xe2\x82 truncated euro",
    b"end truncated \xe2\x82",
    b"\xed\xa0\x80 encoded surrogate",
    b"\xf0\x9f\x98 cut emoji \xf0\x9f\x98\x80 ok",
    b"\xc0\xaf overlong \xe0\x80\xaf",
    b"lone continuation \x80\x80\x80 bytes",
    b"\xf4\x90\x80\x80 above max \xf5\xff",
    b"<|im_end|>\xff<think>",
]


def random_bytes(seed):
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))


@pytest.mark.parametrize("name", ["nemotron", "gpt2", "spm_metaspace", "spm_llama", "wordy"])
def test_invalid_utf8_encodes_like_replace_decoded_text(tokenizers_dir, cli, name):
    tok_dir, tok = tokenizers_dir[name]
    for data in INVALID_UTF8 + [random_bytes(s) for s in range(6)]:
        ours = cli.encode_bytes(tok_dir, data)
        assert ours == tok.encode(data.decode("utf-8", errors="replace"), add_special_tokens=False).ids, data


def test_demo_tokenizer_matches_library(cli):
    from tokenizers import Tokenizer
    demo_dir = os.path.join(os.environ["NEMOTRON_SOURCE_DIR"], "models", "demo")
    tok = Tokenizer.from_file(os.path.join(demo_dir, "tokenizer.json"))
    assert tok.get_vocab_size() == 8192
    assert tok.token_to_id("<|im_end|>") == 11 and tok.token_to_id("\n") is None
    assert tok.token_to_id("Ċ") == 1010  # byte-level "\n" at 1000 + 10
    ours = cli.encode_batch(demo_dir, CORPUS)
    assert_same_ids(ours, [e.ids for e in tok.encode_batch(CORPUS, add_special_tokens=False)], CORPUS, tok)


# Oniguruma (the library's regex engine) and PCRE2 disagree on \s and \w for some characters;
# patterns from tokenizer.json are translated. Each pattern removes what it matches, so any
# difference in the matched set shows up in the ids.
REGEX_PATTERNS = [r"\s", r"\S", r"\w", r"\W", r"[^\s\w]", r"[\w-]+", r"\d+", r"\w+|[^\w\s]+", r"\s+(?!\S)",
                  r"(?i:'s|'t|'re)", r"a$", r"^a", r"[]\s]"]
REGEX_CHARS = (list(range(0x09, 0x0E)) + list(range(0x1C, 0x80)) + list(range(0x80, 0x100)) + list(range(0x2000, 0x2080))
               + [0x1680, 0x180E, 0x3000, 0xFEFF, 0x300, 0x301, 0x345, 0x34F, 0x903, 0x20E3, 0x660, 0x2160, 0x2460,
                  0x24B6, 0x1F130, 0x3042, 0x4E00, 0x1F600, 0x1D7CE, 0x10107])


@pytest.mark.parametrize("pattern", REGEX_PATTERNS)
def test_regex_character_classes_match_oniguruma(tokenizers_dir, cli, tmp_path, pattern):
    from tokenizers import Regex, pre_tokenizers
    _, base = tokenizers_dir["gpt2"]
    tok = tok_builders.Tokenizer.from_str(base.to_str())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="removed"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.save(str(tmp_path / "tokenizer.json"))
    texts = ["a" + chr(c) + "a's" for c in REGEX_CHARS] + ["".join(chr(c) for c in REGEX_CHARS)]
    ours = cli.encode_batch(str(tmp_path), texts)
    assert_same_ids(ours, [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)], texts, tok)


# Character predicates of the built-in pre-tokenizers (White_Space, Rust's \w, is_numeric,
# is_punctuation). The "##" continuing-subword prefix of the `wordy` model makes every word
# boundary visible in the ids.
CHAR_PRE_TOKENIZERS = {
    "whitespace": lambda p: p.Whitespace(),
    "whitespace_split": lambda p: p.WhitespaceSplit(),
    "digits": lambda p: p.Digits(individual_digits=False),
    "digits_individual": lambda p: p.Digits(individual_digits=True),
    "punctuation": lambda p: p.Punctuation(behavior="isolated"),
    "punctuation_removed": lambda p: p.Punctuation(behavior="removed"),
}


@pytest.mark.parametrize("kind", sorted(CHAR_PRE_TOKENIZERS))
def test_pre_tokenizer_character_predicates(tokenizers_dir, cli, tmp_path, kind):
    from tokenizers import pre_tokenizers
    _, base = tokenizers_dir["wordy"]
    tok = tok_builders.Tokenizer.from_str(base.to_str())
    tok.normalizer = None
    tok.pre_tokenizer = CHAR_PRE_TOKENIZERS[kind](pre_tokenizers)
    tok.save(str(tmp_path / "tokenizer.json"))
    texts = ["ab" + chr(c) + "cd" + chr(c) + chr(c) + "e" for c in REGEX_CHARS]
    ours = cli.encode_batch(str(tmp_path), texts)
    assert_same_ids(ours, [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)], texts, tok)


def _assigned_code_points():
    import unicodedata as ud
    return [c for c in range(0xA0, 0x30000)
            if not 0xD800 <= c <= 0xDFFF and ud.category(chr(c)) not in ("Cn", "Co", "Cs")]


def _mark_soup(n, seed):
    """Bases followed by runs of combining marks of mixed classes (reordering + composition)."""
    import unicodedata as ud
    rng = random.Random(seed)
    marks = [c for c in range(0x300, 0x370)] + [0x1AB0, 0x1DC0, 0x20D0, 0x20E3, 0x302A, 0x3099, 0x309A, 0x05B0, 0x0E38,
                                                  0x0F71, 0x0F72, 0x0F74, 0x1D165, 0x1D16E, 0x0BCD, 0x094D]
    bases = "aeiouAEIOUnNcCsSzZ" + "αεηιουωΑΕ" + "\u1100\u1161\u11a8\uac00\u304b\u30cf\u0915\u0b95"
    out = []
    for _ in range(n):
        s = ""
        for _ in range(rng.randint(1, 12)):
            s += rng.choice(bases) + "".join(chr(rng.choice(marks)) for _ in range(rng.randint(0, 4)))
        out.append(s)
    assert any(ud.combining(ch) for t in out for ch in t)
    return out


@pytest.mark.parametrize("form", ["NFC", "NFD", "NFKC", "NFKD", "Lowercase"])
def test_normalizers_over_all_assigned_code_points(tokenizers_dir, cli, tmp_path, form):
    """Byte-level ids spell out the normalized text exactly, so any difference shows."""
    from tokenizers import normalizers, pre_tokenizers
    _, base = tokenizers_dir["gpt2"]
    tok = tok_builders.Tokenizer.from_str(base.to_str())
    tok.normalizer = getattr(normalizers, form)()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.save(str(tmp_path / "tokenizer.json"))
    cps = _assigned_code_points()
    texts = ["".join(chr(c) for c in cps[i:i + 300]) for i in range(0, len(cps), 300)] + _mark_soup(300, 11)
    ours = cli.encode_batch(str(tmp_path), texts)
    assert_same_ids(ours, [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)], texts, tok)
