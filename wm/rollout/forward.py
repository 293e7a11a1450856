"""Teacher-forced forward passes over ``prompt + response``, shared by MLE and GRPO.

Prompts may be left-padded (text) and responses are right-aligned after them, so positions are
computed from the attention mask (``cumsum - 1``), matching what the sampler used while decoding.

``response_logits`` runs every row's prompt (the plain computation). ``grouped_response_logits``
is GRPO's shared-prefix pass: G responses share one prompt, so the prompt runs once per prompt
(with gradients when enabled) and its keys/values are broadcast to the G rows
(``wm.rollout.prefix_cache``); the logits equal ``response_logits``' to float tolerance and so do
the gradients (tests/test_rollout_forward.py). At the paper's video shape (P=1,333, L=321,
G=16) that is 6,469 instead of 26,464 token positions per prompt.

Its two halves are public so that a group can be processed in row chunks (GRPO's
``micro_batch_size`` < G, issue #27): ``prompt_prefix`` runs the prompts once and
``logits_from_prefix`` serves any number of response chunks from that cache (the cache keeps no
response state). Without gradients that is exact and costs the prompt once per group; with
gradients GRPO recomputes the prompt per chunk instead (exact, P extra positions per chunk), so
that each chunk's backward frees its own graph.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


def response_logits(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                    response_ids: torch.Tensor) -> torch.Tensor:
    """Logits that predict each response token.

    prompt_ids, prompt_mask: (N, P); response_ids: (N, L).
    Returns logits (N, L, V): ``logits[:, j]`` is the distribution of ``response_ids[:, j]``.
    """
    n, p = prompt_ids.shape
    ids = torch.cat([prompt_ids, response_ids], dim=1)                       # (N, P+L)
    attn = torch.cat([prompt_mask.to(torch.long),
                      torch.ones_like(response_ids, dtype=torch.long)], dim=1)  # (N, P+L)
    pos = (attn.cumsum(dim=1) - 1).clamp(min=0)                              # (N, P+L)
    # only the positions that predict response tokens go through the LM head (the head and the
    # softmax over the vocabulary dominate a small model's cost)
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False,
                logits_to_keep=response_ids.shape[1] + 1)
    return out.logits[:, :-1]                                                # (N, L, V)


@contextmanager
def _cache_checkpointing(model, prompt: bool):
    """Activation checkpointing around a pass that carries a ``PrefixBroadcastCache``.

    Hugging Face drops ``past_key_values`` inside a checkpointed layer unless the layer declares
    that it only reads the cache (``_can_checkpoint_with_cache``). The response pass only reads
    it (the prompts' keys/values; nothing is stored), so the replay in the backward pass reads
    the same states: allowed there, exact. The prompt pass writes the cache, so it runs without
    checkpointing (its activations are one row per group). A no-op when checkpointing is off."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules()
              if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    for m in layers:
        if prompt:
            m.gradient_checkpointing = False
        else:
            m._can_checkpoint_with_cache = True
    try:
        yield
    finally:
        for m in layers:
            m.gradient_checkpointing = True
            m.__dict__.pop("_can_checkpoint_with_cache", None)


def prompt_prefix(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor):
    """Run B prompts once (with gradients when enabled).

    prompt_ids, prompt_mask: (B, P) (left padding allowed). Returns ``(cache, first)``: a
    ``PrefixBroadcastCache`` holding the prompts' keys/values, and the logits (B, 1, V) of each
    prompt's last position (they predict the first response token).
    """
    from wm.rollout.prefix_cache import PrefixBroadcastCache
    from wm.rollout.sampler import _attention, _prompt_positions

    P = prompt_ids.shape[1]
    prompt_mask = prompt_mask.bool()
    padded = not bool(prompt_mask.all())
    cache = PrefixBroadcastCache(1)
    with _cache_checkpointing(model, prompt=True):
        out = model(input_ids=prompt_ids, position_ids=_prompt_positions(prompt_mask),
                    attention_mask=_attention(prompt_mask if padded else None, P, P,
                                              prompt_ids.device),
                    past_key_values=cache, use_cache=True, logits_to_keep=1)
    return cache, out.logits[:, -1:]


def logits_from_prefix(model, cache, first: torch.Tensor, prompt_mask: torch.Tensor,
                       response_ids: torch.Tensor, rows_per_prompt: int) -> torch.Tensor:
    """Logits (B*g, L, V) of g = ``rows_per_prompt`` responses per prompt of ``cache``.

    cache, first: ``prompt_prefix`` of the B prompts; prompt_mask: (B, P); response_ids:
    (B*g, L), rows ``b*g .. b*g+g-1`` answering prompt b. The cache may serve further calls.
    """
    from wm.rollout.sampler import _attention

    B, P = prompt_mask.shape
    g, L = int(rows_per_prompt), response_ids.shape[1]
    if response_ids.shape[0] != B * g:
        raise ValueError(f"response_ids has {response_ids.shape[0]} rows for {B} prompts x "
                         f"group_size {g}")
    prompt_mask = prompt_mask.bool()
    dev = response_ids.device
    first = first.repeat_interleave(g, 0)                                    # (B*g, 1, V)
    if L == 1:
        return first
    cache.serve(g)
    # responses, attending to their prompt's broadcast keys/values and causally to themselves
    n_real = prompt_mask.long().sum(1).repeat_interleave(g)                 # (B*g,)
    pos = n_real[:, None] + torch.arange(L, device=dev)[None]               # (B*g, L)
    key_valid = None
    if not bool(prompt_mask.all()):
        key_valid = torch.cat([prompt_mask.repeat_interleave(g, 0),
                               torch.ones(B * g, L, dtype=torch.bool, device=dev)], dim=1)
    mask4d = _attention(key_valid, L, P + L, dev)                            # (B*g, 1, L, P+L)
    if mask4d is None:       # no padding: causal over the response, full view of the prompt
        mask4d = _attention(torch.ones(1, P + L, dtype=torch.bool, device=dev), L, P + L, dev)
    with _cache_checkpointing(model, prompt=False):
        # use_cache=False: the cache is read through past_key_values (a checkpointed layer
        # would otherwise warn that it turns use_cache off); nothing is stored either way
        out = model(input_ids=response_ids, position_ids=pos, attention_mask=mask4d,
                    past_key_values=cache, use_cache=False, logits_to_keep=L)
    return torch.cat([first, out.logits[:, :-1]], dim=1)                    # (B*g, L, V)


def grouped_response_logits(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                            response_ids: torch.Tensor, group_size: int) -> torch.Tensor:
    """``response_logits`` of G responses per prompt with the prompt computed once.

    prompt_ids, prompt_mask: (B, P) (left padding allowed); response_ids: (B*G, L), rows
    ``g*G .. g*G+G-1`` answering prompt g. Returns (B*G, L, V).
    """
    B, G = prompt_ids.shape[0], int(group_size)
    if response_ids.shape[0] != B * G:       # checked before the prompts run
        raise ValueError(f"response_ids has {response_ids.shape[0]} rows for {B} prompts x "
                         f"group_size {G}")
    cache, first = prompt_prefix(model, prompt_ids, prompt_mask)
    return logits_from_prefix(model, cache, first, prompt_mask, response_ids, G)
