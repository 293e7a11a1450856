"""Repeated frames in multi-step prediction (RLVR-World §4.3, Fig. "repetition").

A multi-step prediction *repeats* when a predicted frame's tokens equal the previous frame's
tokens. The paper reports the repetition rate as the share of predictions (rows) that repeat at
least once, which is what ``repetition_rate`` returns. The mask also drives the optional
repetition penalty of ``wm.rewards.video.VideoReward``.
"""
from __future__ import annotations

import torch

__all__ = ["repetition_mask", "repetition_rate"]


def repetition_mask(tokens: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T) bool: frame t's tokens equal frame t-1's tokens.

    tokens: (B, T, N) predicted frame tokens. prev: optional (B, N) tokens of the frame before
    the first prediction (e.g. the last context frame); without it frame 0 never repeats.
    Context and future tokens must come from the same codebook for ``prev`` to be meaningful.
    """
    if tokens.dim() != 3 or tokens.shape[1] == 0:
        raise ValueError(f"tokens must be (B, T, N) with T >= 1, got {tuple(tokens.shape)}")
    same = (tokens[:, 1:] == tokens[:, :-1]).all(dim=-1)  # (B, T-1)
    if prev is None:
        first = torch.zeros(tokens.shape[0], 1, dtype=torch.bool, device=tokens.device)
    else:
        if prev.shape != (tokens.shape[0], tokens.shape[2]):
            raise ValueError(f"prev must be (B, N) = {(tokens.shape[0], tokens.shape[2])}, "
                             f"got {tuple(prev.shape)}")
        first = (tokens[:, 0] == prev).all(dim=-1, keepdim=True)  # (B, 1)
    return torch.cat([first, same], dim=1)  # (B, T)


def repetition_rate(mask: torch.Tensor) -> float:
    """Share of predictions (rows of a (B, T) mask) with at least one repeated frame."""
    if mask.dim() != 2 or mask.shape[0] == 0:
        raise ValueError(f"mask must be a non-empty (B, T) tensor, got {tuple(mask.shape)}")
    return mask.bool().any(dim=1).float().mean().item()
