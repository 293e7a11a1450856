"""Cascade attention for group sampling: each prompt's keys/values are stored once and read once
per decode step for its G rows.

GRPO samples G responses per prompt, and at the paper's video shape the prompt (1,333 tokens) is
most of what every decode step attends to. A cache that copies the prompt's keys/values into
each of the G rows (``wm.rollout.cache.PreallocatedCache``) makes every decode step read them G
times; decode is memory-bound, so that is most of its time. Here the attention of a decode step
is split in two (as in "cascade"/"shared-prefix" inference kernels):

* prefix: the G rows' queries of a prompt, stacked, against that prompt's keys/values, read once
  (one batched matrix product per prompt and KV head);
* suffix: each row's queries against its own response keys/values (short, per row);

and the two partial softmaxes are merged exactly (running max and sum, as in FlashAttention).
Scores, softmax pieces and the merge are float32 also under bf16 autocast (SDPA's kernels
accumulate in float32 too; bf16 scores made the sampler's attention ~8x less accurate than
SDPA's, tests/test_bf16.py).
The result equals ordinary attention over ``prompt + response`` (tests/test_rollout_cascade.py).

Wiring: :class:`CascadeCache` is the ``past_key_values``; the attention implementation
``"wm_cascade"`` (registered with ``transformers.AttentionInterface``) is selected on the model
for the duration of sampling and receives the cache through the ``wm_cascade`` keyword that
``transformers`` passes from the model call down to every attention layer. The prompts' own
forward pass (the prefill) runs on the B distinct prompts with plain SDPA.

Shapes: B prompts, G rows each, R = B*G; H query heads, Hkv key/value heads (GQA), grp = H/Hkv;
P prompt length, n response tokens so far, q new tokens of this step, D head size.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.integrations.sdpa_attention import sdpa_attention_forward

IMPLEMENTATION = "wm_cascade"


class CascadeLayer(CacheLayerMixin):
    """One layer: the B prompts' keys/values (B, Hkv, P, D) and a pre-allocated response buffer
    (R, Hkv, max_new, D) written in place."""

    is_compileable = False
    is_sliding = False
    is_croppable = False

    def __init__(self, rows: int, max_new: int) -> None:
        super().__init__()
        self.rows, self.max_new = int(rows), int(max_new)
        self.prefix_len, self.n = 0, 0

    def lazy_initialization(self, key_states, value_states) -> None:
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:                      # prefill: the B distinct prompts
            self.lazy_initialization(key_states, value_states)
            self.prefix_k, self.prefix_v = key_states.contiguous(), value_states.contiguous()
            self.prefix_len = key_states.shape[-2]
            _, hkv, _, d = key_states.shape
            kw = {"dtype": key_states.dtype, "device": key_states.device}
            self.suffix_k = torch.empty(self.rows, hkv, self.max_new, d, **kw)
            self.suffix_v = torch.empty(self.rows, hkv, self.max_new, value_states.shape[-1], **kw)
            return key_states, value_states
        q = key_states.shape[-2]
        if key_states.shape[0] != self.rows or self.n + q > self.max_new:
            raise RuntimeError(f"CascadeLayer: {key_states.shape[0]} rows x {q} tokens do not fit "
                               f"{self.rows} rows x {self.max_new - self.n} free positions")
        self.suffix_k[:, :, self.n:self.n + q] = key_states
        self.suffix_v[:, :, self.n:self.n + q] = value_states
        self.n += q
        return self.suffix_k[:, :, :self.n], self.suffix_v[:, :, :self.n]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.prefix_len + self.n + query_length, 0

    def get_seq_length(self) -> int:
        return self.prefix_len + self.n

    def get_max_length(self) -> int:
        return self.prefix_len + self.max_new

    def reset(self) -> None:
        self.n = 0


class CascadeCache(Cache):
    """``transformers`` ``Cache`` of :class:`CascadeLayer`, for ``rows = B*G`` decode rows."""

    def __init__(self, rows: int, group_size: int, max_new: int) -> None:
        super().__init__(layer_class_to_replicate=partial(CascadeLayer, rows, max_new))
        self.group_size = int(group_size)


def _partial(scores: torch.Tensor, values: torch.Tensor):
    """Unnormalised softmax pieces: (max (..., 1), sum (..., 1), out (..., D))."""
    m = scores.amax(-1, keepdim=True).clamp(min=-1e30)     # a fully masked row stays finite
    e = torch.exp(scores - m)
    return m, e.sum(-1, keepdim=True), e @ values


def cascade_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                      wm_cascade: CascadeCache | None = None, **kwargs):
    """Attention of ``query`` (R, H, q, D) over prompt (shared per group) + own response.

    Falls back to SDPA outside cascade decoding (the prefill, or no cascade cache). The 4-D
    boolean ``attention_mask`` (R|1, 1, q, P+n), True = attend, carries prompt padding and the
    response's causality; None (no padding) means causal among the q new tokens only. Returns (R, q, H, D) like the other ``transformers`` attentions.
    """
    layer = None if wm_cascade is None else wm_cascade.layers[module.layer_idx]
    if layer is None or key.shape[0] != layer.rows or layer.prefix_len == 0 or layer.n == 0:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    # softmax pieces in float32, as SDPA's kernels accumulate (under bf16 autocast the scores
    # would otherwise be rounded by ~2**-8 of their size before the exponential)
    with torch.autocast(query.device.type, enabled=False):
        out = _cascade(query.float(), key.float(), value.float(), attention_mask,
                       layer.prefix_k.float(), layer.prefix_v.float(), wm_cascade.group_size,
                       scaling)
    return out.to(query.dtype), None


def _cascade(query, key, value, attention_mask, prefix_k, prefix_v, G: int, scaling):
    """``cascade_attention``'s computation: query (R, H, q, D), own response key/value
    (R, Hkv, n, D), prompts' prefix_k/prefix_v (B, Hkv, P, D) -> (R, q, H, D)."""
    R, H, q, D = query.shape
    P = prefix_k.shape[-2]
    B, hkv = R // G, key.shape[1]
    grp = H // hkv
    scale = D ** -0.5 if scaling is None else scaling
    mask = attention_mask
    if mask is not None and mask.dtype != torch.bool:
        mask = mask > -1e30 / 2            # additive float mask -> boolean
    neg = torch.finfo(query.dtype).min

    # prefix: the G rows' queries of each prompt stacked, against its keys/values read once
    qg = query.view(B, G, hkv, grp, q, D).permute(0, 2, 1, 3, 4, 5).reshape(B, hkv, G * grp * q, D)
    sp = (qg @ prefix_k.transpose(-1, -2)) * scale                   # (B, Hkv, G*grp*q, P)
    if mask is not None:
        pm = mask[::G, :, :1, :P] if mask.shape[0] == R else mask[:, :, :1, :P]  # (B|1,1,1,P)
        sp = sp.masked_fill(~pm, neg)
    mp, lp, op = _partial(sp, prefix_v)                              # (B, Hkv, G*grp*q, ·)

    # suffix: each row against its own response keys/values
    qs = query.view(R, hkv, grp * q, D)
    ss = (qs @ key.transpose(-1, -2)) * scale                        # (R, Hkv, grp*q, n)
    if mask is not None:
        sm = mask[..., P:]                                           # (R|1, 1, q, n)
        sm = sm.unsqueeze(2).expand(sm.shape[0], 1, grp, q, sm.shape[-1])
        ss = ss.masked_fill(~sm.reshape(sm.shape[0], 1, grp * q, -1), neg)
    elif q > 1:   # no padding: only the new tokens' causality among themselves
        n = key.shape[-2]
        causal = torch.arange(n, device=query.device)[None, :] <= \
            torch.arange(n - q, n, device=query.device)[:, None]      # (q, n)
        ss = ss.masked_fill(~causal.repeat(grp, 1), neg)
    ms, ls, os_ = _partial(ss, value)                                 # (R, Hkv, grp*q, ·)

    def rows(x):  # (B, Hkv, G*grp*q, c) -> (R, Hkv, grp*q, c)
        c = x.shape[-1]
        return x.view(B, hkv, G, grp * q, c).permute(0, 2, 1, 3, 4).reshape(R, hkv, grp * q, c)

    mp, lp, op = rows(mp), rows(lp), rows(op)
    m = torch.maximum(mp, ms)
    wp, ws = torch.exp(mp - m), torch.exp(ms - m)
    out = (op * wp + os_ * ws) / (lp * wp + ls * ws)                 # (R, Hkv, grp*q, D)
    return out.reshape(R, H, q, D).transpose(1, 2).contiguous()


AttentionInterface.register(IMPLEMENTATION, cascade_attention)


def _configs(model):
    seen = []
    for sub in model.modules():
        cfg = getattr(sub, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation") and \
                all(cfg is not c for c in seen):
            seen.append(cfg)
    return seen


@contextmanager
def cascade_attention_enabled(model):
    """Select the ``wm_cascade`` attention on ``model`` (and its sub-configs) inside the block."""
    configs = _configs(model)
    saved = [c._attn_implementation for c in configs]
    try:
        for c in configs:
            c._attn_implementation = IMPLEMENTATION
        yield
    finally:
        for c, impl in zip(configs, saved):
            c._attn_implementation = impl
