"""Builds the reference tokenizers for the conformance tests with the HF `tokenizers` library.

Everything is deterministic: the training text is the demo corpus of
tools/make_demo_tokenizer.py (/usr/share/common-licenses/* and fixed CPython stdlib modules)
and the BPE trainer runs single-threaded. Each builder returns a tokenizers.Tokenizer; the
fixture in conftest.py saves them to a temporary directory.
"""
import json
import os
import sys

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

_SRC = os.environ.get("NEMOTRON_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(_SRC, "tools"))
import make_demo_tokenizer as demo  # noqa: E402


def corpus_chunks():
    for t in demo.training_texts():
        for i in range(0, len(t), 4096):
            yield t[i:i + 4096]


def nemotron():
    """(a) Nemotron 3 structure: 1000 specials, bytes at 1000+b, Tekken Split + ByteLevel."""
    return demo.build_nemotron_tokenizer(demo.training_texts(), 6000)


def gpt2():
    """(b) GPT-2 style: ByteLevel(add_prefix_space, regex), ByteLevel decoder, BOS template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=3000, show_progress=False, special_tokens=["<|endoftext|>", "<|bos|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus_chunks(), trainer=trainer)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<|bos|> $A", special_tokens=[("<|bos|>", 1)])
    return tok


def _spm_base():
    """A byte_fallback BPE over Metaspace pieces with a small alphabet (rare chars -> <0xXX>)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=2500, limit_alphabet=100, show_progress=False,
                                  special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(corpus_chunks(), trainer=trainer)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):
        vocab.setdefault("<0x%02X>" % b, len(vocab))
    spec["model"]["byte_fallback"] = True
    return Tokenizer.from_str(json.dumps(spec))


def spm_metaspace():
    """(c1) SentencePiece style with a Metaspace pre-tokenizer, NFKC, ByteFallback + Metaspace decoders."""
    tok = _spm_base()
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="first")])
    return tok


def spm_llama():
    """(c2) Llama style: NFC + Prepend + Replace normalizers, no pre-tokenizer, BOS template,
    Replace/ByteFallback/Fuse/Strip decoders."""
    tok = _spm_base()
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def wordy():
    """(d) NFD/Lowercase/StripAccents/Strip, Whitespace + Digits, ## subwords, added tokens
    with lstrip / rstrip / single_word / normalized options; no decoder (tokens joined by spaces)."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents(),
                                           normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
    trainer = trainers.BpeTrainer(vocab_size=2500, limit_alphabet=80, show_progress=False, continuing_subword_prefix="##",
                                  special_tokens=["[UNK]", "[CLS]", "[SEP]"])
    tok.train_from_iterator(corpus_chunks(), trainer=trainer)
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, special=True)])
    tok.add_tokens([
        AddedToken("<sep>", rstrip=True, normalized=False),
        AddedToken("hello", single_word=True),
        AddedToken("Straße", normalized=False),
        AddedToken("ünïcode", normalized=True),
    ])
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    return tok


def misc_pre_tokenizers(base):
    """WhitespaceSplit, Punctuation and contiguous Digits on the GPT-2 model (byte-level)."""
    tok = Tokenizer.from_str(base.to_str())
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="contiguous"),
        pre_tokenizers.Digits(individual_digits=False), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return tok


SPLIT_PATTERN = r"\d+|[,.;:!?]+|\s"
BEHAVIORS = ["removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous"]


def split_variant(behavior, invert, base):
    """A Split(behavior, invert) in front of ByteLevel(use_regex=False) on the GPT-2 model."""
    tok = Tokenizer.from_str(base.to_str())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior=behavior, invert=invert),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return tok


def metaspace_variant(scheme, split, base):
    tok = Tokenizer.from_str(base.to_str())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=split)
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme=scheme)])
    return tok


# name -> tokenizer.json text to write verbatim (the library would re-serialize some fields,
# e.g. legacy "a b" merges as pairs).
RAW_JSON = {}


def json_variant(base, edit, name=None):
    """A copy of `base` with its tokenizer.json dict changed by edit(spec)."""
    spec = json.loads(base.to_str())
    edit(spec)
    text = json.dumps(spec, ensure_ascii=False)
    if name:
        RAW_JSON[name] = text
    return Tokenizer.from_str(text)


def _nemotron_real_like(spec):
    # What a converted Tekken tokenizer.json carries: ignore_merges and a BOS template.
    spec["model"]["ignore_merges"] = True
    spec["post_processor"] = {"type": "TemplateProcessing",
                              "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                              "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                              "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}


def _legacy_merges(spec):
    spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]


def all_tokenizers():
    """name -> tokenizers.Tokenizer"""
    out = {"nemotron": nemotron(), "gpt2": gpt2(), "spm_metaspace": spm_metaspace(), "spm_llama": spm_llama(),
           "wordy": wordy()}
    out["misc_pre"] = misc_pre_tokenizers(out["gpt2"])
    out["nemotron_ignore_merges_bos"] = json_variant(out["nemotron"], _nemotron_real_like)
    out["gpt2_legacy_merges"] = json_variant(out["gpt2"], _legacy_merges, "gpt2_legacy_merges")
    for b in BEHAVIORS:
        for inv in (False, True):
            out[f"split_{b}{'_inv' if inv else ''}"] = split_variant(b, inv, out["gpt2"])
    for scheme in ("always", "never", "first"):
        out[f"metaspace_{scheme}_nosplit"] = metaspace_variant(scheme, False, out["spm_metaspace"])
    out["metaspace_never_split"] = metaspace_variant("never", True, out["spm_metaspace"])
    return out
