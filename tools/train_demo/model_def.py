"""The demo model's definition for training: transformers' NemotronH modules, an MTP head
composed from them (as ../shared/tools/make_fixtures.py and vLLM's nemotron_h_mtp do), the
export to the exact Hub layout, and a faster Mamba-2 scan used only while training.

Conventions shared with the engine (docs/nemotron3-architecture.md):
  * dt = softplus(dt_raw + dt_bias) with NO clamp (time_step_limit = (0, inf)). transformers'
    pure-torch path clamps dt at time_step_min; `unclamp()` sets that attribute to 0 on every
    mixer so training and the reference evaluation compute what the released kernels compute.
  * MTP position i gets x = eh_proj([enorm(embed(t_{i+1})), hnorm(h_i)]) with h_i the trunk's
    final hidden state AFTER norm_f; blocks; final_layernorm; the shared lm_head.
"""
import copy
import json
import math

import torch
from torch import nn
import torch.nn.functional as F
from transformers import NemotronHConfig, NemotronHForCausalLM
from transformers.models.nemotron_h import modeling_nemotron_h as mnh

TYPE = {"M": "mamba", "E": "moe", "*": "attention", "-": "mlp"}

# The shipped model: Super-style layout (LatentMoE, shared expert, sigmoid routing with a
# correction bias, MTP head *E) at toy widths. ~10M parameters, ~20 MB in BF16.
HUB_CONFIG = {
    "architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h",
    "vocab_size": 8192, "hidden_size": 256,
    "hybrid_override_pattern": "MEM*EMEM*E", "num_hidden_layers": 10,
    "mtp_hybrid_override_pattern": "*E", "num_nextn_predict_layers": 1,
    "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 32,
    "attention_bias": False, "mlp_bias": False, "use_bias": False,
    "mamba_num_heads": 8, "mamba_head_dim": 64, "ssm_state_size": 64, "n_groups": 2,
    "conv_kernel": 4, "chunk_size": 64, "expand": 2, "use_conv_bias": True,
    "mamba_hidden_act": "silu", "mlp_hidden_act": "relu2", "mamba_proj_bias": False,
    "time_step_min": 0.001, "time_step_max": 0.1, "time_step_floor": 0.0001,
    "time_step_limit": [0.0, float("inf")],
    "n_routed_experts": 16, "num_experts_per_tok": 4, "n_shared_experts": 1,
    "moe_intermediate_size": 128, "moe_shared_expert_intermediate_size": 256,
    "moe_latent_size": 128, "routed_scaling_factor": 2.5, "n_group": 1, "topk_group": 1,
    "norm_topk_prob": True, "moe_shared_expert_overlap": False,
    "intermediate_size": 512, "layer_norm_epsilon": 1e-5, "residual_in_fp32": False,
    "rescale_prenorm_residual": True, "tie_word_embeddings": False,
    "max_position_embeddings": 262144, "rope_theta": 10000, "partial_rotary_factor": 1.0,
    "bos_token_id": 1, "eos_token_id": 11, "pad_token_id": 0,
    "torch_dtype": "bfloat16", "mamba_ssm_cache_dtype": "float32", "use_cache": True,
}
FP32_KEYS = ("A_log", ".D", "e_score_correction_bias")


def make_config(hub=HUB_CONFIG, attn="eager"):
    keys = {k: v for k, v in hub.items() if k not in (
        "architectures", "model_type", "hybrid_override_pattern", "mtp_hybrid_override_pattern",
        "num_hidden_layers", "torch_dtype", "time_step_limit")}
    cfg = NemotronHConfig(**keys, layers_block_type=[TYPE[c] for c in hub["hybrid_override_pattern"]],
                          use_mamba_kernels=False)
    cfg.time_step_limit = (0.0, float("inf"))
    cfg._attn_implementation = attn
    return cfg


def unclamp(module):
    for m in module.modules():
        if isinstance(m, mnh.NemotronHMamba2Mixer):
            m.time_step_min = 0.0
            m.time_step_limit = (0.0, float("inf"))


class MTP(nn.Module):
    """mtp.layers.0 = attention block (+ enorm, hnorm, eh_proj), mtp.layers.1 = MoE block
    (+ final_layernorm), sharing the trunk's embedding and lm_head."""

    def __init__(self, cfg, pattern):
        super().__init__()
        mc = copy.deepcopy(cfg)
        # the block-type names as this transformers version normalised them for the trunk
        names = dict(zip(HUB_CONFIG["hybrid_override_pattern"], cfg.layers_block_type))
        mc.layers_block_type = [names[c] for c in pattern]
        mc._attn_implementation = "eager"
        H = cfg.hidden_size
        self.enorm = mnh.NemotronHRMSNorm(H, eps=cfg.layer_norm_epsilon)
        self.hnorm = mnh.NemotronHRMSNorm(H, eps=cfg.layer_norm_epsilon)
        self.eh_proj = nn.Linear(2 * H, H, bias=False)
        self.layers = nn.ModuleList([mnh.NemotronHBlock(mc, i) for i in range(len(pattern))])
        self.final_layernorm = mnh.NemotronHRMSNorm(H, eps=cfg.layer_norm_epsilon)

    def forward(self, emb, hid):
        x = self.eh_proj(torch.cat([self.enorm(emb), self.hnorm(hid)], -1))
        T = x.shape[1]
        mask = torch.full((T, T), float("-inf"), device=x.device).triu(1)[None, None].to(x.dtype)
        for blk in self.layers:
            x = blk(x, attention_mask=mask)
        return self.final_layernorm(x)

    def hub_state(self):
        out, last = {}, len(self.layers) - 1
        for k, v in self.state_dict().items():
            if k.startswith(("enorm", "hnorm", "eh_proj")):
                out["mtp.layers.0." + k] = v
            elif k.startswith("final_layernorm"):
                out[f"mtp.layers.{last}." + k] = v
            else:
                out["mtp." + k] = v
        return out


def init_mtp(mtp, model):
    """Initialises the head like the trunk (transformers' _init_weights per module)."""
    for m in mtp.modules():
        model._init_weights(m)


def hub_tensors(model, mtp):
    """name -> tensor in the Hub layout: backbone.*, experts split per expert, mtp.*;
    BF16 except A_log, D and the router correction bias (fp32)."""
    state = {("backbone." + k[6:] if k.startswith("model.") else k): v for k, v in model.state_dict().items()}
    state.update(mtp.hub_state())
    out = {}
    for k, v in state.items():
        if k.endswith("mixer.experts.up_proj") or k.endswith("mixer.experts.down_proj"):
            base, which = k.rsplit(".", 1)
            for e in range(v.shape[0]):
                out[f"{base}.{e}.{which}.weight"] = v[e]
        else:
            out[k] = v
    return {k: v.detach().to(torch.float32 if any(s in k for s in FP32_KEYS) else torch.bfloat16)
            .contiguous().cpu() for k, v in out.items()}


def load_hub_tensors(model, mtp, tensors):
    """Inverse of hub_tensors (values widened to the modules' dtype)."""
    msd, tsd = model.state_dict(), mtp.state_dict()
    last = len(mtp.layers) - 1
    with torch.no_grad():
        for k, p in msd.items():
            hk = "backbone." + k[6:] if k.startswith("model.") else k
            if hk.endswith("mixer.experts.up_proj") or hk.endswith("mixer.experts.down_proj"):
                base, which = hk.rsplit(".", 1)
                p.copy_(torch.stack([tensors[f"{base}.{e}.{which}.weight"] for e in range(p.shape[0])]))
            else:
                p.copy_(tensors[hk])
        for k, p in tsd.items():
            if k.startswith(("enorm", "hnorm", "eh_proj")):
                hk = "mtp.layers.0." + k
            elif k.startswith("final_layernorm"):
                hk = f"mtp.layers.{last}." + k
            else:
                hk = "mtp." + k
            if hk.endswith("mixer.experts.up_proj") or hk.endswith("mixer.experts.down_proj"):
                base, which = hk.rsplit(".", 1)
                p.copy_(torch.stack([tensors[f"{base}.{e}.{which}.weight"] for e in range(p.shape[0])]))
            else:
                p.copy_(tensors[hk])


def hub_config_json(hub=HUB_CONFIG):
    return json.dumps(hub, indent=2) + "\n"  # float("inf") -> Infinity, as real configs


# ------------------------------------------------------------------ fast training scan
def _segsum(x):
    """x [..., T] -> [..., T, T]: out[i, j] = sum_{k=j+1..i} x[k] for j <= i, -inf above."""
    T = x.size(-1)
    cs = torch.cumsum(x, dim=-1)
    out = cs[..., :, None] - cs[..., None, :]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device))
    return out.masked_fill(~mask, float("-inf"))


def ssd_scan(x, dt, A, B, C, chunk):
    """Chunked SSD (the same math as transformers' torch_forward, with matmuls instead of
    broadcast-sum). x [b, L, h, p], dt [b, L, h] (after softplus), A [h], B/C [b, L, h, n].
    Returns y [b, L, h, p] without the D term."""
    b, L, h, p = x.shape
    pad = (chunk - L % chunk) % chunk
    if pad:
        x, dt, B, C = [F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, B, C)]
    c = x.shape[1] // chunk
    xd = (x * dt[..., None]).view(b, c, chunk, h, p)
    Adt = (A[None, None, :] * dt).view(b, c, chunk, h).permute(0, 3, 1, 2)  # b h c l
    B = B.view(b, c, chunk, h, -1)
    C = C.view(b, c, chunk, h, -1)
    A_cs = torch.cumsum(Adt, dim=-1)
    Lmat = torch.exp(_segsum(Adt))                                    # b h c l s
    G = torch.einsum("bclhn,bcshn->bhcls", C, B)
    y_diag = torch.einsum("bhcls,bcshp->bclhp", G * Lmat, xd)
    decay_states = torch.exp(A_cs[..., -1:] - A_cs)                  # b h c l
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_states, xd)
    states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)
    decay_chunk = torch.exp(_segsum(F.pad(A_cs[..., -1], (1, 0))))  # b h c+1 c+1
    states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)[:, :-1]
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", C, states, torch.exp(A_cs))
    y = (y_diag + y_off).reshape(b, c * chunk, h, p)
    return y[:, :L]


def fast_chunk_scan(hidden_states, dt, A, B, C, chunk_size, D=None, dt_bias=None, initial_states=None,
                    dt_softplus=False, dt_limit=(0.0, float("inf")), return_final_states=False, **kwargs):
    """Training-only stand-in for transformers' mamba2_chunk_scan (same signature and math,
    matmuls instead of broadcast-sums, fp32); other calls go to the original."""
    if initial_states is not None or return_final_states:
        return _REFERENCE_SCAN(hidden_states, dt, A, B, C, chunk_size, D=D, dt_bias=dt_bias,
                               initial_states=initial_states, dt_softplus=dt_softplus, dt_limit=dt_limit,
                               return_final_states=return_final_states, **kwargs)
    with torch.autocast("cuda", enabled=False):
        heads = hidden_states.shape[2]
        dt = dt.float()
        if dt_bias is not None:
            dt = dt + dt_bias.float()
        if dt_softplus:
            dt = F.softplus(dt)
        dt = torch.clamp(dt, min=dt_limit[0], max=dt_limit[1])
        x = hidden_states.float()
        B = B.float().repeat_interleave(heads // B.shape[2], dim=2)
        C = C.float().repeat_interleave(heads // C.shape[2], dim=2)
        y = ssd_scan(x, dt, A.float(), B, C, chunk_size)
        if D is not None:
            y = y + x * D.float()[None, None, :, None]
        return y


_REFERENCE_SCAN = mnh.mamba2_chunk_scan


def use_fast_scan(enable):
    mnh.mamba2_chunk_scan = fast_chunk_scan if enable else _REFERENCE_SCAN


def build(seed, attn="sdpa"):
    torch.manual_seed(seed)
    cfg = make_config(attn=attn)
    model = NemotronHForCausalLM(cfg)
    unclamp(model)
    mtp = MTP(cfg, HUB_CONFIG["mtp_hybrid_override_pattern"])
    init_mtp(mtp, model)
    unclamp(mtp)
    return cfg, model, mtp


def param_count(*mods):
    return sum(p.numel() for m in mods for p in m.parameters())


def lr_at(step, total, peak, warmup, floor):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, t)))
