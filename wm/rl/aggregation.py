"""Reduce a per-token loss (N, L) to a scalar, correctly across micro-batches and ranks.

RLVR-World's reference uses "token-mean" (a masked mean over every response token of the
mini-batch). Modes (registry ``AGGREGATIONS``), with ``m`` the mask, ``T`` the mini-batch's valid
tokens, ``S`` its sequences:

* ``"token-mean"``          sum(loss*m) / T. Every token weighs the same (DAPO, Yu et al. 2025);
  long responses weigh more in total. RLVR-World / verl default.
* ``"seq-mean-token-mean"`` sum_i [sum_t loss*m / len_i] / S. Original GRPO (Shao et al. 2024).
  Bias: a token of a short response weighs more than one of a long response (Dr.GRPO's
  "length bias").
* ``"seq-mean-token-sum"``  sum_i [sum_t loss*m] / S. Per-sequence sums; scale grows with length.
* ``"dr_grpo"``             sum(loss*m) / (S * max_len), a constant normaliser (Dr.GRPO,
  Liu et al. 2025). Unbiased in length; the loss scale shrinks as ``max_len`` grows.

Micro-batches and ranks: a mini-batch (one optimizer step) is split into micro-batches for
gradient accumulation and over data-parallel ranks. The caller passes ``global_tokens`` /
``global_seqs`` = the totals over the *whole* mini-batch (all micro-batches, all ranks); each
micro-batch returns its *share* ``sum(loss*m) / global_tokens``, so the sum of the micro-batch
losses (and of the gradients) is exactly the full mini-batch loss. Do **not** divide by the
number of accumulation steps on top. (With DDP, which *averages* gradients over ranks, scale
``global_*`` by 1 / world_size, i.e. pass the per-rank average count, or multiply the loss by the
world size.) This avoids the verl bug where each micro-batch took its own token-mean and divided
it by the accumulation steps: micro-batches with few valid tokens were then over-weighted,
so the result was neither a token-mean nor a sequence-mean (fixed upstream in verl by
normalising with the global token count). Without ``global_*`` the function uses the local
counts, i.e. it treats the given tensor as the whole mini-batch.

"Sequences" are rows with at least one valid token (see ``count_valid``); a fully masked row
(padding) contributes nothing, and an all-masked input gives 0, never NaN.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["AGGREGATIONS", "aggregate", "masked_sum", "masked_mean", "count_valid",
           "token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "dr_grpo"]

Number = float | int | torch.Tensor


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``x`` where ``mask`` is True. x, mask: (..., L); dim None -> scalar.

    Uses ``where`` rather than ``x * mask`` so NaN/inf in masked-out positions cannot leak.
    """
    masked = torch.where(mask.bool(), x, torch.zeros_like(x))
    return masked.sum() if dim is None else masked.sum(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is True; 0 (not NaN) where nothing is valid.

    x, mask: (..., L); dim None -> scalar, else the reduced shape.
    """
    count = mask.bool().sum() if dim is None else mask.bool().sum(dim=dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1).to(x.dtype)


def count_valid(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(valid tokens, valid sequences) of a mask (N, L); a sequence is valid if any token is.

    Sum these over micro-batches (and all-reduce over ranks) to get ``global_tokens`` and
    ``global_seqs`` for ``aggregate``.
    """
    mask = mask.bool()
    return mask.sum(), mask.any(dim=-1).sum()


def _denominator(local: torch.Tensor, given: Number | None, name: str,
                 like: torch.Tensor) -> torch.Tensor:
    """The normaliser: the caller's global count if given, else the local one; never 0."""
    if given is None:
        value = local
    else:
        if not isinstance(given, torch.Tensor) and given <= 0:
            raise ValueError(f"{name} must be > 0 (the total over the whole mini-batch), "
                             f"got {given}")
        value = torch.as_tensor(given, device=like.device)
    return value.to(like.dtype).clamp(min=1)


def _check(loss: torch.Tensor, mask: torch.Tensor) -> None:
    if loss.dim() != 2 or loss.shape != mask.shape:
        raise ValueError(f"loss and mask must both be (N, L); got {tuple(loss.shape)} and "
                         f"{tuple(mask.shape)}")


def token_mean(loss: torch.Tensor, mask: torch.Tensor, *, global_tokens: Number | None = None,
               global_seqs: Number | None = None, max_len: int | None = None) -> torch.Tensor:
    """sum(loss * mask) / global_tokens. (N, L) -> scalar. Reference / DAPO token-mean."""
    _check(loss, mask)
    tokens, _ = count_valid(mask)
    return masked_sum(loss, mask) / _denominator(tokens, global_tokens, "global_tokens", loss)


def seq_mean_token_mean(loss: torch.Tensor, mask: torch.Tensor, *,
                        global_tokens: Number | None = None, global_seqs: Number | None = None,
                        max_len: int | None = None) -> torch.Tensor:
    """sum_i masked_mean_t(loss_i) / global_seqs. (N, L) -> scalar. Original GRPO; length bias."""
    _check(loss, mask)
    _, seqs = count_valid(mask)
    per_seq = masked_mean(loss, mask, dim=-1)  # (N,), 0 for fully masked rows
    return per_seq.sum() / _denominator(seqs, global_seqs, "global_seqs", loss)


def seq_mean_token_sum(loss: torch.Tensor, mask: torch.Tensor, *,
                       global_tokens: Number | None = None, global_seqs: Number | None = None,
                       max_len: int | None = None) -> torch.Tensor:
    """sum_i masked_sum_t(loss_i) / global_seqs. (N, L) -> scalar. Scale grows with length."""
    _check(loss, mask)
    _, seqs = count_valid(mask)
    return masked_sum(loss, mask) / _denominator(seqs, global_seqs, "global_seqs", loss)


def dr_grpo(loss: torch.Tensor, mask: torch.Tensor, *, global_tokens: Number | None = None,
            global_seqs: Number | None = None, max_len: int | None = None) -> torch.Tensor:
    """sum(loss * mask) / (global_seqs * max_len). (N, L) -> scalar. Dr.GRPO constant normaliser.

    ``max_len`` defaults to L; pass the configured maximum response length so micro-batches
    padded to different lengths share one normaliser.
    """
    _check(loss, mask)
    _, seqs = count_valid(mask)
    length = loss.shape[-1] if max_len is None else max_len
    if length <= 0:
        raise ValueError(f"max_len must be > 0, got {length}")
    return masked_sum(loss, mask) / (_denominator(seqs, global_seqs, "global_seqs", loss) * length)


AGGREGATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "token-mean": token_mean,
    "seq-mean-token-mean": seq_mean_token_mean,
    "seq-mean-token-sum": seq_mean_token_sum,
    "dr_grpo": dr_grpo,
}


def aggregate(loss: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", *,
              global_tokens: Number | None = None, global_seqs: Number | None = None,
              max_len: int | None = None) -> torch.Tensor:
    """Reduce (N, L) to a scalar with the ``AGGREGATIONS[mode]`` function."""
    if mode not in AGGREGATIONS:
        raise ValueError(f"unknown loss aggregation {mode!r}; valid modes: {sorted(AGGREGATIONS)}")
    return AGGREGATIONS[mode](loss, mask, global_tokens=global_tokens, global_seqs=global_seqs,
                              max_len=max_len)
