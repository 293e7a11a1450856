"""What the sampler may write at each response position, and what it returns.

Contract: docs/architecture.md, "Sampler". A :class:`ResponsePlan` fixes the response length
``L``, the *forced* tokens (ground-truth action tokens of a multi-step video rollout, the EOS
closing a frame) and, for the free positions, the id range ``[lo, hi)`` they may sample from
(the future-frame visual ids for video; the whole vocabulary for text).

Extension of the contract: ``forced`` may be ``(L,)`` (same tokens for every prompt) or
``(B, L)`` (per-prompt tokens, e.g. each clip's own actions); in the latter case *which*
positions are forced must be the same in every row, so the sampler can feed forced runs in one
forward pass for the whole batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ResponsePlan:
    """Response length, forced tokens and the allowed id range of every free position.

    Args:
        length: response length ``L`` (the maximum when ``eos_id`` is set).
        forced: ``(L,)`` or ``(B, L)`` int64, ``-1`` = free (sampled). None: all free.
        allowed_lo, allowed_hi: free positions sample ids in ``[lo, hi)``; ints, or ``(L,)``
            tensors for per-position ranges. None: no lower bound (0) / no upper bound (vocab).
        eos_id: text mode: a row stops after sampling this id; later tokens are ``pad_id``.
            None: fixed-length (video) response.
        pad_id: the id written after EOS (defaults to ``eos_id``).
    """

    length: int
    forced: torch.Tensor | None = None
    allowed_lo: int | torch.Tensor | None = None
    allowed_hi: int | torch.Tensor | None = None
    eos_id: int | None = None
    pad_id: int | None = None
    ranges: torch.Tensor = field(init=False, repr=False)
    """``(L, 2)`` int64 ``[lo, hi)`` per position, ``hi = -1`` meaning "vocabulary size"."""

    def __post_init__(self) -> None:
        L = int(self.length)
        if L < 1:
            raise ValueError(f"ResponsePlan.length must be >= 1, got {self.length}")
        self.length = L
        if self.forced is None:
            self.forced = torch.full((L,), -1, dtype=torch.long)
        self.forced = torch.as_tensor(self.forced, dtype=torch.long)
        if self.forced.ndim not in (1, 2) or self.forced.shape[-1] != L:
            raise ValueError(f"ResponsePlan.forced must be (L,) or (B, L) with L={L}, "
                             f"got shape {tuple(self.forced.shape)}")
        if (self.forced < -1).any():
            raise ValueError("ResponsePlan.forced: use -1 for free positions, ids >= 0 for forced ones")
        if self.forced.ndim == 2 and self.forced.shape[0] > 1:
            free = self.forced < 0
            if not (free == free[:1]).all():
                raise ValueError("ResponsePlan.forced (B, L): the forced positions must be the same in "
                                 "every row (only the forced token values may differ)")
        lo = 0 if self.allowed_lo is None else self.allowed_lo
        hi = -1 if self.allowed_hi is None else self.allowed_hi
        lo_t = torch.as_tensor(lo, dtype=torch.long).expand(L)
        hi_t = torch.as_tensor(hi, dtype=torch.long).expand(L)
        self.ranges = torch.stack([lo_t, hi_t], dim=1).contiguous()  # (L, 2)
        bounded = self.ranges[:, 1] >= 0
        if (self.ranges[:, 0] < 0).any() or (bounded & (self.ranges[:, 1] <= self.ranges[:, 0])).any():
            raise ValueError("ResponsePlan: allowed ranges must satisfy 0 <= lo < hi")
        if self.pad_id is None:
            self.pad_id = self.eos_id

    @property
    def free_positions(self) -> torch.Tensor:
        """``(L,)`` bool, True where the token is sampled."""
        forced = self.forced if self.forced.ndim == 1 else self.forced[0]
        return forced < 0

    def forced_rows(self, batch: int, group_size: int) -> torch.Tensor:
        """The forced tokens for every rollout row: ``(B*G, L)``."""
        if self.forced.ndim == 1:
            return self.forced.unsqueeze(0).expand(batch * group_size, -1)
        if self.forced.shape[0] not in (1, batch):
            raise ValueError(f"ResponsePlan.forced has {self.forced.shape[0]} rows for {batch} prompts")
        rows = self.forced.expand(batch, -1)
        return rows.repeat_interleave(group_size, dim=0)  # (B*G, L), row r <- prompt r // G


@dataclass
class Rollout:
    """G sampled responses per prompt (docs/architecture.md, "Sampler").

    tokens: ``(B*G, L)`` int64; logprobs: ``(B*G, L)`` float32, the log-probability of each
    sampled token under the distribution it was drawn from (after temperature, range mask,
    top-k, top-p), 0 at forced/padded positions; mask: ``(B*G, L)`` bool, True = sampled (trained
    on); prompt_index: ``(B*G,)`` int64, row ``r`` belongs to prompt ``r // G``; logits: optional
    ``(B*G, L, V)`` raw next-token logits (before temperature), zeros where not computed.
    """

    tokens: torch.Tensor
    logprobs: torch.Tensor
    mask: torch.Tensor
    prompt_index: torch.Tensor
    logits: torch.Tensor | None = None

    @property
    def group_size(self) -> int:
        counts = torch.bincount(self.prompt_index)
        return int(counts[0]) if counts.numel() else 0
