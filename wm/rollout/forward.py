"""Teacher-forced forward pass over ``prompt + response``, shared by MLE and GRPO.

Prompts may be left-padded (text) and responses are right-aligned after them, so positions are
computed from the attention mask (``cumsum - 1``), matching what the sampler used while decoding.
"""
from __future__ import annotations

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
