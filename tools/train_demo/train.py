#!/usr/bin/env python3
"""Trains the demo model (tools/train_demo/model_def.py) on one GPU, exports it in the Hub
layout and computes the transformers reference numbers our engine must match.

Runs on the GPU machine (torch, transformers, tokenizers), from the repo root:
  python3 tools/train_demo/train.py --data .train --tokenizer DIR --out OUT [--steps N] [--seed 0]
--data holds {train,valid,test}.{prose,code}.txt(.xz) from tools/corpus/build_corpus.py and
chat.{train,valid}.jsonl from tools/train_demo/make_chat_data.py (tools/train_demo/pack.sh).

Schedule (reproducible from --seed): AdamW (0.9, 0.95), wd 0.1 on matrices, peak lr 3e-3,
linear warm-up then cosine to 10%, grad clip 1; batches of --batch x --seq tokens sampled
uniformly from the train token streams (prose 60%, code 40%); the last --chat-frac of the
steps give half of each batch to packed chat conversations (loss on the completions only).
Loss = next-token CE + 0.3 x MTP CE (MTP position i predicts t_{i+2}). The routers'
correction biases are balanced without an auxiliary loss: after each step, bias_e +=
1e-3 * sign(mean load - load_e) (DeepSeek-V3's rule).

Writes OUT/model.safetensors (BF16 Hub layout, A_log / D / correction bias fp32),
OUT/config.json, OUT/reference.json (transformers fp32 perplexities on the test splits under
the protocol of `nemotron eval`, plus small slices for CI) and OUT/train.log.
"""
import argparse
import hashlib
import json
import lzma
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_def as md  # noqa: E402

MTP_WEIGHT = 0.3
BIAS_RATE = 1e-3


def log(msg, f=None):
    print(msg, flush=True)
    if f:
        f.write(msg + "\n")
        f.flush()


def read_text(data, name):
    for path in (os.path.join(data, name + ".xz"), os.path.join(data, name)):
        if os.path.exists(path):
            opener = lzma.open if path.endswith(".xz") else open
            # newline="": no newline translation, the text exactly as `nemotron eval` reads it
            with opener(path, "rt", encoding="utf-8", newline="") as f:
                return f.read()
    raise FileNotFoundError(os.path.join(data, name))


def encode_stream(tok, text, piece=1 << 20, cache="/tmp/demo_token_cache"):
    """Token ids of a large training text, encoded in ~1 MiB pieces cut at blank lines
    (cached by content hash, so a second run on a warm machine skips the work)."""
    key = hashlib.sha256(tok.to_str().encode() + text.encode()).hexdigest()[:24]
    path = os.path.join(cache, key + ".npy")
    if os.path.exists(path):
        return torch.from_numpy(np.load(path))
    parts, i = [], 0
    while i < len(text):
        j = text.find("\n\n", i + piece)
        j = len(text) if j < 0 else j + 2
        parts.append(text[i:j])
        i = j
    ids = [np.asarray(e.ids, dtype=np.int32) for e in tok.encode_batch(parts, add_special_tokens=False)]
    arr = np.concatenate(ids)
    os.makedirs(cache, exist_ok=True)
    np.save(path, arr)
    return torch.from_numpy(arr)


def chat_examples(tok, path):
    rows = [json.loads(line) for line in read_text(os.path.dirname(path), os.path.basename(path)).splitlines()]
    prompts = tok.encode_batch([r["prompt"] for r in rows], add_special_tokens=False)
    comps = tok.encode_batch([r["completion"] for r in rows], add_special_tokens=False)
    return [(p.ids, c.ids) for p, c in zip(prompts, comps)]


def pack_chat(examples, rng, seq):
    """One [seq + 1] token row of whole conversations and its loss mask (completion tokens)."""
    ids, mask = [], []
    while len(ids) < seq + 1:
        p, c = examples[rng.randrange(len(examples))]
        ids += p + c
        mask += [0] * len(p) + [1] * len(c)
    return ids[:seq + 1], mask[:seq + 1]


def sample_batch(streams, weights, chat, rng, gen, batch, seq, chat_rows, device):
    rows, masks = [], []
    for _ in range(chat_rows):
        ids, m = pack_chat(chat, rng, seq)
        rows.append(torch.tensor(ids))
        masks.append(torch.tensor(m, dtype=torch.bool))
    for _ in range(batch - chat_rows):
        s = streams[0] if rng.random() < weights[0] else streams[1]
        start = int(torch.randint(0, len(s) - seq - 1, (1,), generator=gen))
        rows.append(s[start:start + seq + 1].long())
        masks.append(torch.ones(seq + 1, dtype=torch.bool))
    x = torch.stack(rows).to(device, non_blocking=True)
    m = torch.stack(masks).to(device, non_blocking=True)
    return x, m


class RouterLoad:
    """Counts, per router, how many tokens each expert received in the current step."""

    def __init__(self, modules):
        self.counts = {}
        for m in modules:
            if isinstance(m, md.mnh.NemotronHTopkRouter):
                m.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        idx = output[2]
        c = torch.bincount(idx.flatten(), minlength=module.num_experts)
        self.counts[module] = self.counts.get(module, 0) + c

    def update_biases(self):
        imbalance = 0.0
        with torch.no_grad():
            for m, c in self.counts.items():
                c = c.float()
                m.e_score_correction_bias += BIAS_RATE * torch.sign(c.mean() - c)
                imbalance = max(imbalance, (c.max() / c.mean()).item())
        self.counts = {}
        return imbalance


def losses(model, mtp, x, mask):
    """x [b, T+1] ids, mask [b, T+1] which targets count. Returns (trunk CE, MTP CE)."""
    inp = x[:, :-1]
    h = model.model(input_ids=inp).last_hidden_state            # [b, T, H] post norm_f
    logits = model.lm_head(h).float()
    tgt = x[:, 1:].masked_fill(~mask[:, 1:], -100)
    ce = F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.reshape(-1), ignore_index=-100)
    # MTP: position i (0..T-2) gets (t_{i+1}, h_i) and predicts t_{i+2}
    emb = model.model.embeddings(x[:, 1:-1])
    out = mtp(emb, h[:, :-1])
    mlog = model.lm_head(out).float()
    mtgt = x[:, 2:].masked_fill(~mask[:, 2:], -100)
    mce = F.cross_entropy(mlog.view(-1, mlog.size(-1)), mtgt.reshape(-1), ignore_index=-100)
    return ce, mce


@torch.no_grad()
def window_nll(model, ids, context, device, batch=8):
    """Sum of NLL and count over consecutive windows of `context` tokens of `ids` (the
    protocol of `nemotron eval`: each window from a fresh state, a last window < 2 dropped)."""
    wins = [ids[i:i + context] for i in range(0, len(ids), context)]
    wins = [w for w in wins if len(w) >= 2]
    total, count, per = 0.0, 0, []
    for i in range(0, len(wins), batch):
        group = wins[i:i + batch]
        L = max(len(w) for w in group)
        same = [w for w in group if len(w) == L]
        rest = [w for w in group if len(w) != L]
        for g in ([same] if same else []) + [[w] for w in rest]:
            x = torch.tensor(np.stack(g), dtype=torch.long, device=device)
            logits = model(input_ids=x, use_cache=False).logits.double()
            lp = torch.log_softmax(logits[:, :-1], dim=-1)
            nll = -lp.gather(-1, x[:, 1:, None])[..., 0]
            for r in range(nll.shape[0]):
                per.append(nll[r].sum().item())
            total += nll.sum().item()
            count += nll.numel()
    return total, count, per


def reference(model_dir, tok, data, device, out, ref_tokens, context, flog):
    """fp32 perplexities of the exported checkpoint through transformers' own modules."""
    md.use_fast_scan(False)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cfg, model, mtp = md.build(0, attn="eager")
    md.load_hub_tensors(model, mtp, load_file(os.path.join(model_dir, "model.safetensors")))
    model = model.float().to(device).eval()
    res = {"protocol": "windows of `context` tokens from a fresh state; NLL summed in double",
           "dt_clamp": "none (time_step_limit = (0, inf) on the mixers)", "splits": {}}
    for split in ("test.prose.txt", "test.code.txt"):
        ids = np.asarray(tok.encode(read_text(data, split), add_special_tokens=False).ids, dtype=np.int64)
        entry = {"file_tokens": int(len(ids))}
        for label, n, ctx in (("ci", 2048, 256), ("full", ref_tokens, context)):
            t0 = time.time()
            total, count, per = window_nll(model, ids[:n], ctx, device)
            entry[label] = {"max_tokens": n, "context": ctx, "scored": count, "nll_sum": total,
                            "mean_nll": total / count, "ppl": math.exp(total / count),
                            "window_nll": per if label == "ci" else None}
            log(f"reference {split} {label}: {count} tokens ppl {math.exp(total / count):.4f} "
                f"({time.time() - t0:.1f} s)", flog)
        # the slow-path clamp transformers would apply, for the record
        for m in model.modules():
            if isinstance(m, md.mnh.NemotronHMamba2Mixer):
                m.time_step_min = cfg.time_step_min
                m.time_step_limit = (cfg.time_step_min, float("inf"))
        total, count, _ = window_nll(model, ids[:2048], 256, device)
        entry["ci_with_transformers_dt_clamp_ppl"] = math.exp(total / count)
        md.unclamp(model)
        res["splits"][split] = entry
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(res, f, indent=1)


@torch.no_grad()
def samples(model, tok, device, flog):
    prompts = ["The meaning of the word", "def fibonacci(n):\n",
               "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nWhat does \"ephemeral\" mean?<|im_end|>\n"
               "<|im_start|>assistant\n<think></think>"]
    for p in prompts:
        ids = torch.tensor([tok.encode(p, add_special_tokens=False).ids], device=device)
        for _ in range(48):
            nxt = model(input_ids=ids, use_cache=False).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], 1)
            if nxt.item() == 11:
                break
        log("sample: " + repr(tok.decode(ids[0].tolist(), skip_special_tokens=False)), flog)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--chat-frac", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-tokens", type=int, default=65536)
    ap.add_argument("--ref-context", type=int, default=512)
    ap.add_argument("--max-minutes", type=float, default=0,
                    help="safety stop: end training early (and say so) past this wall time")
    ap.add_argument("--probe", action="store_true", help="check the fast scan against transformers, time steps")
    ap.add_argument("--reference-only", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    flog = open(os.path.join(args.out, "train.log"), "a")
    device = "cuda"
    tok = Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
    if args.reference_only:
        reference(args.out, tok, args.data, device, args.out, args.ref_tokens, args.ref_context, flog)
        return
    random.seed(args.seed)
    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    prose = encode_stream(tok, read_text(args.data, "train.prose.txt"))
    code = encode_stream(tok, read_text(args.data, "train.code.txt"))
    vprose = encode_stream(tok, read_text(args.data, "valid.prose.txt"))
    vcode = encode_stream(tok, read_text(args.data, "valid.code.txt"))
    chat = chat_examples(tok, os.path.join(args.data, "chat.train.jsonl"))
    log(f"tokens: prose {len(prose)} code {len(code)} valid {len(vprose)}+{len(vcode)} "
        f"chat {len(chat)} conversations ({time.time() - t0:.1f} s)", flog)

    torch.backends.cuda.matmul.allow_tf32 = True
    cfg, model, mtp = md.build(args.seed, attn="sdpa")
    model.to(device).train()
    mtp.to(device).train()
    log(f"parameters: trunk {md.param_count(model)} mtp {md.param_count(mtp)}", flog)
    md.use_fast_scan(True)
    if args.probe:
        x, m = sample_batch([prose, code], (0.6, 0.4), chat, rng, gen, 4, args.seq, 1, device)
        with torch.no_grad():
            a = losses(model, mtp, x, m)
            md.use_fast_scan(False)
            b = losses(model, mtp, x, m)
            md.use_fast_scan(True)
        log(f"probe: fast scan CE {a[0].item():.6f}/{a[1].item():.6f} vs transformers "
            f"{b[0].item():.6f}/{b[1].item():.6f}", flog)

    load = RouterLoad(list(model.modules()) + list(mtp.modules()))
    decay, no_decay = [], []
    for mod in (model, mtp):
        for n, p in mod.named_parameters():
            (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    chat_start = int(args.steps * (1 - args.chat_frac))
    vx = []
    vgen = torch.Generator().manual_seed(1234)
    vrng = random.Random(1234)
    for s in ([vprose] * 4 + [vcode] * 4):
        vx.append(sample_batch([s, s], (1.0, 0.0), chat, vrng, vgen, 8, args.seq, 0, device))
    t_start = time.time()
    for step in range(args.steps):
        lr = md.lr_at(step, args.steps, args.lr, 100, args.lr * 0.1)
        for g in opt.param_groups:
            g["lr"] = lr
        chat_rows = args.batch // 2 if step >= chat_start else 0
        x, m = sample_batch([prose, code], (0.6, 0.4), chat, rng, gen, args.batch, args.seq, chat_rows, device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            ce, mce = losses(model, mtp, x, m)
            loss = ce + MTP_WEIGHT * mce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(mtp.parameters()), 1.0)
        opt.step()
        imb = load.update_biases()
        if args.max_minutes and time.time() - t_start > args.max_minutes * 60:
            log(f"STOPPED EARLY at step {step} of {args.steps} (--max-minutes {args.max_minutes})", flog)
            break
        if step % 50 == 0 or step == args.steps - 1:
            el = time.time() - t_start
            log(f"step {step} lr {lr:.2e} ce {ce.item():.4f} mtp {mce.item():.4f} gnorm {gn.item():.2f} "
                f"max-load/mean {imb:.2f} {el:.0f} s {(step + 1) * args.batch * args.seq / max(el, 1e-9):.0f} tok/s", flog)
        if step % 500 == 499 or step == args.steps - 1:
            model.eval(); mtp.eval()
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                vl = [losses(model, mtp, a, b) for a, b in vx]
            load.counts = {}
            model.train(); mtp.train()
            vp = sum(v[0].item() for v in vl[:4]) / 4
            vc = sum(v[0].item() for v in vl[4:]) / 4
            log(f"valid step {step}: prose ce {vp:.4f} (ppl {math.exp(vp):.2f}) code ce {vc:.4f} "
                f"(ppl {math.exp(vc):.2f}) mtp {sum(v[1].item() for v in vl) / 8:.4f}", flog)
    log(f"training: {time.time() - t_start:.0f} s", flog)

    # the trained fp32 weights on the CI slice, to compare with the exported BF16 checkpoint
    model.eval()
    md.use_fast_scan(False)
    ids = np.asarray(tok.encode(read_text(args.data, "test.prose.txt"), add_special_tokens=False).ids[:2048])
    total, count, _ = window_nll(model, ids, 256, device)
    log(f"in-memory fp32 master weights, test.prose ci slice: ppl {math.exp(total / count):.4f}", flog)
    tensors = md.hub_tensors(model, mtp)
    save_file(tensors, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(args.out, "config.json"), "w") as f:
        f.write(md.hub_config_json())
    log(f"exported {len(tensors)} tensors, {sum(t.numel() * t.element_size() for t in tensors.values())} bytes", flog)
    samples(model, tok, device, flog)
    reference(args.out, tok, args.data, device, args.out, args.ref_tokens, args.ref_context, flog)


if __name__ == "__main__":
    main()
