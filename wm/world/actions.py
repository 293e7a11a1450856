"""Uniform per-dimension action discretization (RLVR-World / iVideoGPT action tokens).

Reference (shared/REFERENCE.md, "Video world model", Actions): every action dimension is cut into
256 uniform bins between a per-dimension ``min`` and ``max`` taken from the data,

    bin = floor(clip((a - min) / (max - min + 1e-8), 0, 1) * bins), clipped to 0..bins-1.

``decode`` returns the bin *centers* (the reference never decodes actions). Departures: none in the
encoding; the number of bins is configurable. The bins are per-dimension values in ``0..bins-1``;
turning them into vocabulary ids is :class:`wm.world.vocab.VocabLayout`'s job.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

EPS = 1e-8


class ActionTokenizer:
    """Map continuous actions ``(..., A)`` to integer bins ``(..., A)`` in ``0..bins-1`` and back.

    Args:
        low: per-dimension minimum, shape ``(A,)``.
        high: per-dimension maximum, shape ``(A,)``; must be ``>= low``.
        bins: number of uniform bins per dimension (reference: 256).
    """

    def __init__(self, low: Sequence[float] | torch.Tensor, high: Sequence[float] | torch.Tensor,
                 bins: int = 256) -> None:
        low_t = torch.as_tensor(low, dtype=torch.float64).flatten()
        high_t = torch.as_tensor(high, dtype=torch.float64).flatten()
        if low_t.numel() == 0 or low_t.shape != high_t.shape:
            raise ValueError(f"ActionTokenizer needs low and high of the same non-empty shape (A,); "
                             f"got {tuple(low_t.shape)} and {tuple(high_t.shape)}")
        if not torch.isfinite(low_t).all() or not torch.isfinite(high_t).all():
            raise ValueError("ActionTokenizer: low/high must be finite numbers")
        if (high_t < low_t).any():
            bad = torch.nonzero(high_t < low_t).flatten().tolist()
            raise ValueError(f"ActionTokenizer: high < low in dimension(s) {bad}; check the action stats")
        if int(bins) < 1:
            raise ValueError(f"ActionTokenizer: bins must be >= 1, got {bins}")
        self.low, self.high, self.bins = low_t, high_t, int(bins)

    @property
    def action_dim(self) -> int:
        return int(self.low.numel())

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_stats(cls, stats: Mapping, bins: int = 256) -> "ActionTokenizer":
        """From a dataset ``stats.json`` dict: ``{"action": {"min": [A], "max": [A], ...}}``."""
        try:
            action = stats["action"]
            return cls(action["min"], action["max"], bins=bins)
        except (KeyError, TypeError) as err:
            raise ValueError('ActionTokenizer.from_stats expects {"action": {"min": [...], "max": [...]}} '
                             f"(the episode stats.json); missing {err}") from err

    @classmethod
    def from_file(cls, path: str | Path, bins: int = 256) -> "ActionTokenizer":
        """From a JSON file: either ``{"ranges": [[min, max], ...]}`` (shared/data/rt1/action_ranges.json)
        or a dataset ``stats.json`` (``{"action": {"min": [...], "max": [...]}}``)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read action ranges from {path}: {err}") from err
        try:
            if isinstance(data, Mapping) and "ranges" in data:
                ranges = torch.as_tensor(data["ranges"], dtype=torch.float64)
                if ranges.ndim != 2 or ranges.shape[1] != 2:
                    raise ValueError(f'"ranges" must be a list of [min, max] pairs, got shape {tuple(ranges.shape)}')
                return cls(ranges[:, 0], ranges[:, 1], bins=bins)
            if isinstance(data, Mapping) and "action" in data:
                return cls.from_stats(data, bins=bins)
            raise ValueError('expected a "ranges" list of [min, max] pairs or an "action" {min, max} entry')
        except (ValueError, TypeError, RuntimeError) as err:
            raise ValueError(f"malformed action ranges file {path}: {err}") from err

    # ---------------------------------------------------------------- encode / decode
    def _check(self, x: torch.Tensor) -> None:
        if x.ndim == 0 or x.shape[-1] != self.action_dim:
            raise ValueError(f"ActionTokenizer: expected (..., {self.action_dim}) actions/bins, "
                             f"got shape {tuple(x.shape)}")

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """``(..., A)`` float actions -> ``(..., A)`` int64 bins in ``0..bins-1``."""
        actions = torch.as_tensor(actions)
        self._check(actions)
        low, high = self.low.to(actions.device), self.high.to(actions.device)
        unit = ((actions.double() - low) / (high - low + EPS)).clamp(0.0, 1.0)
        return torch.floor(unit * self.bins).long().clamp(0, self.bins - 1)

    def decode(self, bins: torch.Tensor) -> torch.Tensor:
        """``(..., A)`` integer bins -> ``(..., A)`` float32 bin centers."""
        bins = torch.as_tensor(bins)
        self._check(bins)
        if bins.numel() and (bins.min() < 0 or bins.max() >= self.bins):
            raise ValueError(f"ActionTokenizer.decode: bins must lie in 0..{self.bins - 1}, "
                             f"got range {int(bins.min())}..{int(bins.max())}")
        low, high = self.low.to(bins.device), self.high.to(bins.device)
        width = (high - low + EPS) / self.bins
        return (low + (bins.double() + 0.5) * width).float()

    def __repr__(self) -> str:
        return f"ActionTokenizer(action_dim={self.action_dim}, bins={self.bins})"
