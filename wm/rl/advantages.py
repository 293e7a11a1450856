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

NaN rewards (unscorable answers) are left out, not read as a value: a NaN row gets advantage
exactly 0, and mean, std and "all equal" are taken over the group's finite rows only (the batch's
finite rows for ``batch_std``'s scale). A group with fewer than two finite rows, or whose finite
rows are all equal, is a zero-variance group: 0 everywhere, counted by ``zero_std_groups`` /
``frac_zero_std`` (and skipped by dynamic sampling) the same way. Filling NaN with 0 instead
would rank an unscorable answer above every real one under a negative reward (video:
``-(MAE + LPIPS)``).
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


def _finite(grouped: torch.Tensor) -> torch.Tensor:
    """(num_groups, G) -> (num_groups, G) bool, True on scored (non-NaN) rewards."""
    return ~grouped.isnan()


def _constant_groups(grouped: torch.Tensor) -> torch.Tensor:
    """(num_groups, G) -> (num_groups, 1) bool, True where the group has no learning signal:
    fewer than two finite rewards, or all of them equal (NaN rows left out).

    Uses max == min (exact) instead of std == 0, which float round-off can miss.
    """
    if not grouped.is_floating_point():
        grouped = grouped.float()                                     # +-inf fill needs floats
    ok = _finite(grouped)
    hi = torch.where(ok, grouped, torch.full_like(grouped, -torch.inf)).amax(dim=1, keepdim=True)
    lo = torch.where(ok, grouped, torch.full_like(grouped, torch.inf)).amin(dim=1, keepdim=True)
    return (ok.sum(dim=1, keepdim=True) < 2) | (hi == lo)


def _centered(grouped: torch.Tensor) -> torch.Tensor:
    """(num_groups, G) -> r - mean of the group's finite rows; exactly 0 on NaN rows and in
    zero-variance groups."""
    ok = _finite(grouped)
    vals = torch.where(ok, grouped, torch.zeros_like(grouped))
    n = ok.sum(dim=1, keepdim=True).clamp(min=1)                     # (num_groups, 1)
    centered = grouped - vals.sum(dim=1, keepdim=True) / n
    return torch.where(ok & ~_constant_groups(grouped), centered, torch.zeros_like(centered))


def _finite_std(values: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Unbiased (N-1) std over the finite entries along ``dim`` (all entries if None; keepdim);
    0 where fewer than two are finite."""
    ok = ~values.isnan()
    dims = tuple(range(values.dim())) if dim is None else (dim,)
    n = ok.sum(dim=dims, keepdim=True)
    vals = torch.where(ok, values, torch.zeros_like(values))
    mean = vals.sum(dim=dims, keepdim=True) / n.clamp(min=1)
    sq = torch.where(ok, (values - mean) ** 2, torch.zeros_like(values))
    return (sq.sum(dim=dims, keepdim=True) / (n - 1).clamp(min=1)).sqrt()


def advantage_std(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """Reference GRPO advantage: (r - mean_g) / (std_g + eps), std unbiased.

    rewards: (N,) -> (N,). Source: DeepSeekMath GRPO; RLVR-World reference implementation.
    Bias: upweights groups with a small reward spread (Dr.GRPO's "question-level difficulty
    bias"). Constant groups and G == 1 give exactly 0; NaN rows give 0 and are left out of
    their group's mean and std.
    """
    grouped = _grouped(rewards, group_size).float()  # (num_groups, G)
    centered = _centered(grouped)
    std = _finite_std(grouped, dim=1)                # (num_groups, 1)
    # zero-variance groups: 0, also with eps = 0 (centered is 0 there, std may be 0)
    return torch.where(centered == 0, centered, centered / (std + eps)).reshape(-1)


def advantage_mean(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """Dr.GRPO advantage: r - mean_g (no std division; ``eps`` unused).

    rewards: (N,) -> (N,). Source: Liu et al. 2025 (Dr.GRPO). Bias: none from the std; the
    advantage scale is the reward scale, so rewards with large ranges need a smaller lr.
    NaN rows give 0 and are left out of their group's mean.
    """
    del eps
    return _centered(_grouped(rewards, group_size).float()).reshape(-1)


def advantage_batch_std(rewards: torch.Tensor, group_size: int,
                        eps: float = 1e-6) -> torch.Tensor:
    """Group baseline, batch scale: (r - mean_g) / (std_batch + eps), std unbiased over N.

    rewards: (N,) -> (N,). Source: REINFORCE++ (Hu et al. 2025) global batch normalisation,
    with GRPO's group baseline. Bias: the scale depends on which questions share the batch.
    A constant batch (or N == 1) gives exactly 0; NaN rows give 0 and are left out of the
    group means and of the batch std.
    """
    grouped = _grouped(rewards, group_size).float()
    centered = _centered(grouped).reshape(-1)  # (N,)
    flat = grouped.reshape(-1)
    finite = flat[~flat.isnan()]
    if finite.numel() < 2 or bool(finite.max() == finite.min()):
        return torch.zeros_like(centered)
    return centered / (_finite_std(flat) + eps)


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
    """(N,) rewards -> (N // G,) bool: True where the group carries no learning signal: its
    finite rewards are all equal or fewer than two (NaN rows left out, as in the advantages)."""
    return _constant_groups(_grouped(rewards, group_size)).squeeze(1)


def frac_zero_std(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Share of groups whose rewards are all equal (they carry no learning signal).

    rewards: (N,) -> 0-dim float tensor in [0, 1]. Logged as ``grpo/frac_reward_zero_std``
    (same meaning as TRL's metric of that name). G == 1 gives 1.0. NaN rows are left out (see
    ``zero_std_groups``).
    """
    grouped = _grouped(rewards, group_size)
    return _constant_groups(grouped).float().mean()
