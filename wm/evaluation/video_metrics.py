"""Evaluation helpers for video world models (RLVR-World §4.3, Tables 3–4 and Fig. "repetition").

* ``repetition_mask`` / ``repetition_rate``: a multi-step prediction *repeats* when a predicted
  frame's tokens equal the previous frame's tokens. The paper reports the repetition rate as the
  share of predictions (rows) that repeat at least once, which is what ``repetition_rate`` returns.
* ``best_of_n``: the paper's best-of-N rows take, per test clip, the best of N sampled
  predictions per metric (min for lower-is-better, max for higher-is-better).
* ``summarize`` (plain means) and ``paper_units`` (SSIM and LPIPS ×100, as the paper's tables
  print them) are separate so logged values keep their natural units.
* ``markdown_table``: model-comparison table, one row per model.

Metric formulas live in ``wm.rewards.video`` (the same code scores rewards and evaluation).
"""
from __future__ import annotations

from typing import Mapping

import torch

__all__ = ["PAPER_SCALE", "repetition_mask", "repetition_rate", "best_of_n", "summarize",
           "paper_units", "markdown_table"]

PAPER_SCALE: dict[str, float] = {"ssim": 100.0, "lpips": 100.0}
"""Factors the paper's tables apply (keyed by the metric name, the part after the last '/')."""


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


def best_of_n(metrics: torch.Tensor, n: int, higher_is_better: bool) -> torch.Tensor:
    """Best of N samples per clip. (B*N,) with rows r..r+N-1 one clip, or (B, N) -> (B,)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if metrics.dim() == 1:
        if metrics.numel() % n != 0:
            raise ValueError(f"{metrics.numel()} values are not a multiple of n={n}")
        metrics = metrics.reshape(-1, n)  # (B, N)
    elif metrics.dim() != 2 or metrics.shape[1] != n:
        raise ValueError(f"metrics must be (B*N,) or (B, N={n}), got {tuple(metrics.shape)}")
    return metrics.amax(dim=1) if higher_is_better else metrics.amin(dim=1)


def summarize(metrics: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """{name: (B, T) or (B,)} -> {name: mean over everything} as Python floats."""
    return {name: value.float().mean().item() for name, value in metrics.items()}


def paper_units(summary: Mapping[str, float]) -> dict[str, float]:
    """Scale a summary to the paper's units: SSIM and LPIPS ×100 (keys like "ssim", "val/ssim")."""
    return {k: v * PAPER_SCALE.get(k.rsplit("/", 1)[-1], 1.0) for k, v in summary.items()}


def markdown_table(rows: Mapping[str, Mapping[str, float]], columns: list[str] | None = None,
                   precision: int = 2) -> str:
    """Markdown table, one row per model. rows: {model: {metric: value}}; missing cells "–".

    Columns default to every metric in first-seen order.
    """
    if columns is None:
        columns = []
        for values in rows.values():
            columns += [c for c in values if c not in columns]
    lines = ["| model | " + " | ".join(columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for model, values in rows.items():
        cells = [f"{values[c]:.{precision}f}" if c in values else "–" for c in columns]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
