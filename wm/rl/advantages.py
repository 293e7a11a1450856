"""Group-relative advantages for GRPO (RLVR-World §3.2, "Group Relative Policy Optimization").

Rows ``r .. r+G-1`` of a rollout batch answer the same question (the sampler's contract:
row ``r`` belongs to prompt ``r // G``). Each response gets one scalar advantage, which the
loss broadcasts to all of its tokens.

Modes (registry ``ADVANTAGES``):

* ``"std"``       ``(r - mean_g) / (std_g + eps)``, std unbiased (N-1) — reference GRPO
  (Shao et al. 2024, DeepSeekMath; RLVR-World uses it). Known bias: questions with a small
  reward spread get their advantages *amplified*, so too-easy / too-hard groups weigh as much
  as informative ones (Liu et al. 2025, "Understanding R1-Zero-Like Training", Dr.GRPO).
* ``"mean"``      ``r - mean_g`` — Dr.GRPO: no std division, removes that difficulty bias;
  the advantage scale now follows the reward scale, so the learning rate must match it.
* ``"batch_std"`` ``(r - mean_g) / (std_batch + eps)`` — group baseline, one scale for the
  whole batch (REINFORCE++-style batch normalisation, Hu et al. 2025). Keeps relative
  difficulty information; the scale depends on batch composition.

Departure from the formulas: a group whose rewards are all equal (including ``G == 1``) gets an
advantage of exactly 0 — no NaN from the unbiased std of one sample, and no ``1e-17 / 1e-6``
round-off noise turned into a spurious signal. Likewise ``batch_std`` returns 0 everywhere when
the whole batch is constant.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["ADVANTAGES", "group_advantages", "frac_zero_std", "advantage_std",
           "advantage_mean", "advantage_batch_std"]


def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Reshape rewards (N,) -> (N // G, G); rows r..r+G-1 form one group."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (N,), got shape {tuple(rewards.shape)}")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if rewards.numel() % group_size != 0:
        raise ValueError(
            f"number of rewards ({rewards.numel()}) is not a multiple of group_size "
            f"({group_size}); every question must have exactly group_size responses")
    return rewards.reshape(-1, group_size)  # (num_groups, G)


def _constant_groups(grouped: torch.Tensor) -> torch.Tensor:
    """(num_groups, G) -> (num_groups, 1) bool, True where every reward of the group is equal.

    Uses max == min (exact) instead of std == 0, which float round-off can miss.
    """
    return (grouped.amax(dim=1, keepdim=True) == grouped.amin(dim=1, keepdim=True))


def _centered(grouped: torch.Tensor) -> torch.Tensor:
    """(num_groups, G) -> r - group mean, exactly 0 in constant groups."""
    centered = grouped - grouped.mean(dim=1, keepdim=True)
    return torch.where(_constant_groups(grouped), torch.zeros_like(centered), centered)


def advantage_std(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """Reference GRPO advantage: (r - mean_g) / (std_g + eps), std unbiased.

    rewards: (N,) -> (N,). Source: DeepSeekMath GRPO; RLVR-World reference implementation.
    Bias: upweights groups with a small reward spread (Dr.GRPO's "question-level difficulty
    bias"). Constant groups and G == 1 give exactly 0.
    """
    grouped = _grouped(rewards, group_size).float()  # (num_groups, G)
    centered = _centered(grouped)
    if group_size == 1:
        return centered.reshape(-1)  # all zeros: a single response has no baseline
    std = grouped.std(dim=1, unbiased=True, keepdim=True)  # (num_groups, 1)
    return (centered / (std + eps)).reshape(-1)


def advantage_mean(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """Dr.GRPO advantage: r - mean_g (no std division; ``eps`` unused).

    rewards: (N,) -> (N,). Source: Liu et al. 2025 (Dr.GRPO). Bias: none from the std; the
    advantage scale is the reward scale, so rewards with large ranges need a smaller lr.
    """
    del eps
    return _centered(_grouped(rewards, group_size).float()).reshape(-1)


def advantage_batch_std(rewards: torch.Tensor, group_size: int,
                        eps: float = 1e-6) -> torch.Tensor:
    """Group baseline, batch scale: (r - mean_g) / (std_batch + eps), std unbiased over N.

    rewards: (N,) -> (N,). Source: REINFORCE++ (Hu et al. 2025) global batch normalisation,
    with GRPO's group baseline. Bias: the scale depends on which questions share the batch.
    A constant batch (or N == 1) gives exactly 0.
    """
    grouped = _grouped(rewards, group_size).float()
    centered = _centered(grouped).reshape(-1)  # (N,)
    flat = grouped.reshape(-1)
    if flat.numel() < 2 or bool(flat.max() == flat.min()):
        return torch.zeros_like(centered)
    return centered / (flat.std(unbiased=True) + eps)


ADVANTAGES: dict[str, Callable[..., torch.Tensor]] = {
    "std": advantage_std,
    "mean": advantage_mean,
    "batch_std": advantage_batch_std,
}


def group_advantages(rewards: torch.Tensor, group_size: int, mode: str = "std",
                     eps: float = 1e-6) -> torch.Tensor:
    """Per-response advantages from per-response rewards.

    rewards: (N,) float, N = num_questions * group_size, rows r..r+G-1 one group.
    Returns (N,) float32. ``mode`` picks a function from ``ADVANTAGES`` (see module docstring).
    """
    if mode not in ADVANTAGES:
        raise ValueError(f"unknown advantage mode {mode!r}; valid modes: {sorted(ADVANTAGES)}")
    return ADVANTAGES[mode](rewards, group_size, eps=eps)


def zero_std_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N,) rewards -> (N // G,) bool: True where the group's G rewards are all equal."""
    return _constant_groups(_grouped(rewards, group_size)).squeeze(1)


def frac_zero_std(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Share of groups whose rewards are all equal (they carry no learning signal).

    rewards: (N,) -> 0-dim float tensor in [0, 1]. Logged as ``grpo/frac_reward_zero_std``
    (same meaning as TRL's metric of that name). G == 1 gives 1.0.
    """
    grouped = _grouped(rewards, group_size)
    return _constant_groups(grouped).float().mean()
