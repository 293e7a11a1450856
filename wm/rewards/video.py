"""The video world model's verifiable reward: weighted per-frame metrics aggregated over time
(RLVR-World §4.3 and App. "Video world model"; the metrics are in ``wm.rewards.frame_metrics``).

Reward (``VideoReward``): per frame ``r_t = sum_k sign_k * w_k * metric_k,t - p * repeated_t``,
``sign = -1`` for lower-is-better metrics, then aggregated over the T predicted frames by
"mean" (reference multi-step), "last", or "discounted" (``sum_t g^t r_t / sum_t g^t``).
The reference single-step reward is ``-(mae + lpips)``: ``weights={"mae": 1, "lpips": 1}``.

Departure: the repetition penalty is an option of ours (off by default), not in the paper.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from wm.rewards.frame_metrics import METRIC_SIGN, Perceptual, frame_metrics

__all__ = ["TIME_AGGREGATIONS", "aggregate_time", "discount_weights", "VideoReward"]


def discount_weights(num_frames: int, gamma: float, device=None) -> torch.Tensor:
    """(T,) weights g^t / sum_t g^t, t = 0 for the first predicted frame."""
    w = gamma ** torch.arange(num_frames, dtype=torch.float32, device=device)
    return w / w.sum()


def _time_mean(values: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B, T) -> (B,) mean over frames (reference multi-step reward)."""
    return values.mean(dim=1)


def _time_last(values: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B, T) -> (B,) last frame only."""
    return values[:, -1]


def _time_discounted(values: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B, T) -> (B,) discounted by gamma^t and normalised by sum_t gamma^t."""
    return values @ discount_weights(values.shape[1], gamma, values.device).to(values.dtype)


TIME_AGGREGATIONS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "mean": _time_mean, "last": _time_last, "discounted": _time_discounted,
}


def aggregate_time(values: torch.Tensor, mode: str = "mean", gamma: float = 0.9) -> torch.Tensor:
    """Aggregate per-frame values (B, T) over the T predicted frames -> (B,)."""
    if mode not in TIME_AGGREGATIONS:
        raise ValueError(f"unknown frame aggregation {mode!r}; valid: {sorted(TIME_AGGREGATIONS)}")
    if values.dim() != 2 or values.shape[1] == 0:
        raise ValueError(f"expected per-frame values (B, T) with T >= 1, got {tuple(values.shape)}")
    return TIME_AGGREGATIONS[mode](values, gamma)


class VideoReward:
    """Weighted verifiable reward over predicted frames (a config holder; the maths above).

    weights: {metric: w >= 0}, metrics from ``METRIC_SIGN``; reference single-step
    ``{"mae": 1, "lpips": 1}``. aggregation: "mean" | "last" | "discounted" (gamma).
    repetition_penalty: subtracted per repeated frame (option of ours, off by default).
    chunk_frames: frames per metric call (memory bound, see ``frame_metrics``).
    """

    def __init__(self, weights: Mapping[str, float] | None = None, aggregation: str = "mean",
                 gamma: float = 0.9, repetition_penalty: float = 0.0, chunk_frames: int = 256):
        weights = dict({"mae": 1.0, "lpips": 1.0} if weights is None else weights)
        if not weights:
            raise ValueError("VideoReward needs at least one metric weight, e.g. {'mae': 1.0}")
        unknown = [k for k in weights if k not in METRIC_SIGN]
        if unknown:
            raise ValueError(f"unknown reward metric(s) {unknown}; valid: {sorted(METRIC_SIGN)}")
        negative = {k: w for k, w in weights.items() if w < 0}
        if negative:
            raise ValueError(f"weights must be >= 0 (the sign comes from the metric's direction),"
                             f" got {negative}")
        if aggregation not in TIME_AGGREGATIONS:
            raise ValueError(f"unknown frame aggregation {aggregation!r}; "
                             f"valid: {sorted(TIME_AGGREGATIONS)}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        if repetition_penalty < 0:
            raise ValueError(f"repetition_penalty must be >= 0, got {repetition_penalty}")
        self.weights = weights
        self.aggregation = aggregation
        self.gamma = gamma
        self.repetition_penalty = repetition_penalty
        self.chunk_frames = chunk_frames

    @property
    def needs_perceptual(self) -> bool:
        return self.weights.get("lpips", 0.0) != 0.0

    def __call__(self, pred: torch.Tensor, target: torch.Tensor,
                 perceptual: Perceptual | None = None,
                 repeated: torch.Tensor | None = None,
                 per_frame: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """pred, target (B, T, 3, H, W) or (B, 3, H, W) in [0, 1]; repeated (B, T) bool.
        ``per_frame``: metrics {name: (B, T)} the caller already computed with
        ``frame_metrics`` on these frames (each is computed once per sample); missing ones are
        computed here.

        Returns {metric: (B,) frame-aggregated raw metric, ["repetition": (B,)], "reward": (B,)}.
        """
        if pred.dim() == 4:
            pred, target = pred.unsqueeze(1), target.unsqueeze(1)  # (B, 1, 3, H, W)
            repeated = None if repeated is None else repeated.reshape(-1, 1)
        if self.needs_perceptual and perceptual is None:
            raise ValueError("the reward weights include 'lpips' but no perceptual module was "
                             "passed; give perceptual=... or drop 'lpips' from weights")
        have = dict(per_frame or {})
        missing = tuple(k for k in self.weights if k not in have)
        if missing:
            have.update(frame_metrics(pred, target, perceptual, names=missing,
                                      chunk_frames=self.chunk_frames))
        per_frame = {k: have[k].reshape(pred.shape[:2]) for k in self.weights}  # {k: (B, T)}
        reward_t = sum(METRIC_SIGN[k] * w * per_frame[k] for k, w in self.weights.items())
        out = {k: aggregate_time(v, self.aggregation, self.gamma) for k, v in per_frame.items()}
        if self.repetition_penalty > 0:
            if repeated is None:
                raise ValueError("repetition_penalty > 0 needs the (B, T) bool `repeated` mask "
                                 "(wm.rewards.repetition.repetition_mask)")
            if repeated.shape != reward_t.shape:
                raise ValueError(f"repeated {tuple(repeated.shape)} must be (B, T) = "
                                 f"{tuple(reward_t.shape)}")
            rep = repeated.to(reward_t.device, reward_t.dtype)
            reward_t = reward_t - self.repetition_penalty * rep
            out["repetition"] = aggregate_time(rep, self.aggregation, self.gamma)
        out["reward"] = aggregate_time(reward_t, self.aggregation, self.gamma)
        return out
