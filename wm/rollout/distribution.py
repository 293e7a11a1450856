"""The distribution the sampler draws from, as one function for sampling and training.

GRPO's importance ratio, KL and entropy must be those of the policy that drew the samples
(RLVR-World Sec. 3.2; the "on-policy" bugs fixed in TRL and verl: temperature, restricted
vocabularies). The sampler draws a free response token from

    softmax( logits[lo:hi] / temperature )        (ids outside the plan's [lo, hi) impossible)

and every training-side pass (old, reference and current log-probs, the entropy) evaluates the
same distribution through :func:`sampling_logprobs` / :func:`sampling_entropy`. top-k / top-p
change the distribution in a data-dependent way; GRPO refuses them (``wm.stages.grpo_settings``),
evaluation may use them (no gradients).

Shapes: logits (N, L, V) at the L response positions (``wm.rollout.forward.response_logits``),
tokens (N, L), ranges (L, 2) = ``ResponsePlan.ranges`` (``hi = -1``: the vocabulary size).
Positions outside ``valid`` (forced tokens, padding) get log-prob 0 and entropy 0: a forced
token may lie outside the sampled range, where the log-prob would be -inf.
"""
from __future__ import annotations

import torch


def restrict(logits: torch.Tensor, lo: int, hi: int, temperature: float) -> torch.Tensor:
    """float32 logits of the allowed ids ``[lo, hi)`` (``hi < 0``: to the end), divided by the
    temperature: (..., V) -> (..., hi - lo). ``temperature`` must be > 0 (greedy has no
    distribution)."""
    hi = logits.shape[-1] if hi < 0 else min(int(hi), logits.shape[-1])
    x = logits[..., int(lo):hi].float()
    return x / temperature if temperature != 1.0 else x


def _single_range(ranges: torch.Tensor | None, vocab: int) -> tuple[int, int] | None:
    """(lo, hi) when every position shares one range, else None."""
    if ranges is None:
        return 0, vocab
    r = ranges.clone()
    r[:, 1] = torch.where(r[:, 1] < 0, torch.full_like(r[:, 1], vocab), r[:, 1].clamp(max=vocab))
    if (r == r[:1]).all():
        return int(r[0, 0]), int(r[0, 1])
    return None


def _scaled(logits: torch.Tensor, ranges: torch.Tensor | None, temperature: float
            ) -> tuple[torch.Tensor, int]:
    """(x (N, L, n) restricted + scaled float32 logits, offset of x's id 0 in the vocabulary)."""
    if temperature <= 0:
        raise ValueError(f"the sampling distribution needs temperature > 0, got {temperature}")
    vocab = logits.shape[-1]
    single = _single_range(ranges, vocab)
    if single is not None:
        return restrict(logits, single[0], single[1], temperature), single[0]
    ids = torch.arange(vocab, device=logits.device)
    r = ranges.to(logits.device)
    hi = torch.where(r[:, 1] < 0, torch.full_like(r[:, 1], vocab), r[:, 1])
    allowed = (ids[None, :] >= r[:, :1]) & (ids[None, :] < hi[:, None])      # (L, V)
    x = logits.float().masked_fill(~allowed, float("-inf"))
    return (x / temperature if temperature != 1.0 else x), 0


def sampling_logprobs(logits: torch.Tensor, tokens: torch.Tensor, ranges: torch.Tensor | None,
                      temperature: float = 1.0, valid: torch.Tensor | None = None) -> torch.Tensor:
    """log p(token) under the sampling distribution. (N, L, V), (N, L) -> (N, L) float32.

    Gather minus logsumexp (no full log-softmax tensor is kept for autograd). Differentiable.
    """
    if tokens.shape != logits.shape[:2]:
        raise ValueError(f"tokens {tuple(tokens.shape)} must match logits' (N, L) "
                         f"{tuple(logits.shape[:2])}")
    x, offset = _scaled(logits, ranges, temperature)                       # (N, L, n)
    idx = (tokens.long() - offset).clamp(0, x.shape[-1] - 1)
    picked = x.gather(-1, idx.unsqueeze(-1)).squeeze(-1)                    # (N, L)
    logp = picked - torch.logsumexp(x, dim=-1)
    inside = (tokens.long() >= offset) & (tokens.long() - offset < x.shape[-1])
    keep = inside if valid is None else (inside & valid.bool())
    return torch.where(keep, logp, torch.zeros_like(logp))


def sampling_entropy(logits: torch.Tensor, ranges: torch.Tensor | None,
                     temperature: float = 1.0, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Entropy (nats) of the sampling distribution per position. (N, L, V) -> (N, L) float32."""
    x, _ = _scaled(logits, ranges, temperature)                             # (N, L, n)
    logp = x.log_softmax(-1)
    ent = -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)
    return ent if valid is None else torch.where(valid.bool(), ent, torch.zeros_like(ent))
