"""Verifiable rewards for video world models (RLVR-World §4.3 and App. "Video world model").

A predicted frame is compared with the ground-truth frame. Metrics are per frame, batched,
on the tensors' device, for frames (B, 3, H, W) -> (B,) or clips (B, T, 3, H, W) -> (B, T),
pixels in [0, 1]:

| metric | direction | formula |
|---|---|---|
| mae   | lower  | mean |x - y| over C, H, W |
| mse   | lower  | mean (x - y)^2 over C, H, W |
| psnr  | higher | 10 log10(1 / mse), data range 1, capped at 100 dB (identical frames) |
| ssim  | higher | torchmetrics SSIM, gaussian window 11, sigma 1.5, data range 1, map mean |
| lpips | lower  | a perceptual callable ``fn(pred, target) -> (B,)`` on [0, 1] frames
                   (``wm.vision.perceptual.Perceptual``: VGG LPIPS, scales to [-1, 1] itself) |

Reward (``VideoReward``): per frame ``r_t = sum_k sign_k * w_k * metric_k,t - p * repeated_t``,
``sign = -1`` for lower-is-better metrics, then aggregated over the T predicted frames by
"mean" (reference multi-step), "last", or "discounted" (``sum_t g^t r_t / sum_t g^t``).
The reference single-step reward is ``-(mae + lpips)``: ``weights={"mae": 1, "lpips": 1}``.

Departures: PSNR is capped at 100 dB so that an exact prediction gives a finite reward (the
group advantage would be NaN with +inf); the repetition penalty is an option of ours (off by
default), not in the paper.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

__all__ = ["METRIC_SIGN", "FRAME_METRICS", "TIME_AGGREGATIONS", "mae", "mse", "psnr", "ssim",
           "lpips", "frame_metrics", "aggregate_time", "discount_weights", "VideoReward"]

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PSNR_MAX_DB = 100.0

METRIC_SIGN: dict[str, float] = {"mae": -1.0, "mse": -1.0, "lpips": -1.0, "psnr": 1.0, "ssim": 1.0}
"""+1 for higher-is-better metrics, -1 for lower-is-better; the reward uses sign * metric."""


def _flatten_frames(pred: torch.Tensor, target: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """(B, 3, H, W) or (B, T, 3, H, W) -> ((M, 3, H, W) x2, leading shape (B,) or (B, T))."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have "
                         "the same shape")
    if pred.dim() not in (4, 5) or pred.shape[-3] != 3:
        raise ValueError("frames must be (B, 3, H, W) or (B, T, 3, H, W) in [0, 1], got "
                         f"{tuple(pred.shape)}")
    lead = tuple(pred.shape[:-3])
    return (pred.reshape(-1, *pred.shape[-3:]).float(),   # (B*T, 3, H, W)
            target.reshape(-1, *target.shape[-3:]).float(), lead)


def mae(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per frame. (B[, T], 3, H, W) -> (B[, T]). Lower is better."""
    x, y, lead = _flatten_frames(pred, target)
    return (x - y).abs().flatten(1).mean(1).reshape(lead)


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per frame. (B[, T], 3, H, W) -> (B[, T]). Lower is better."""
    x, y, lead = _flatten_frames(pred, target)
    return (x - y).square().flatten(1).mean(1).reshape(lead)


def psnr(pred: torch.Tensor, target: torch.Tensor, max_db: float = PSNR_MAX_DB) -> torch.Tensor:
    """PSNR in dB per frame, data range 1: 10 log10(1 / mse), capped at ``max_db``.

    (B[, T], 3, H, W) -> (B[, T]). Higher is better. Per-frame PSNR averaged afterwards (not the
    PSNR of the averaged MSE), as per-sample video metrics usually are.
    """
    err = mse(pred, target)
    return (10.0 * torch.log10(1.0 / err.clamp(min=1e-30))).clamp(max=max_db)


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per frame (torchmetrics; gaussian window 11, sigma 1.5, data range 1).

    (B[, T], 3, H, W) -> (B[, T]). Higher is better; 1 for identical frames. H, W >= 11.
    """
    x, y, lead = _flatten_frames(pred, target)
    out = structural_similarity_index_measure(x, y, gaussian_kernel=True, sigma=1.5,
                                              kernel_size=11, data_range=1.0, reduction="none")
    return out.reshape(lead)


def lpips(pred: torch.Tensor, target: torch.Tensor, perceptual: Perceptual) -> torch.Tensor:
    """Perceptual distance per frame with ``perceptual(pred, target) -> (M,)`` on [0, 1] frames.

    (B[, T], 3, H, W) -> (B[, T]). Lower is better. The callable owns its input scaling (the
    reference scales to [-1, 1] for VGG LPIPS, as ``wm.vision.perceptual.Perceptual`` does).
    """
    if perceptual is None:
        raise ValueError("lpips needs a perceptual module fn(pred, target) -> (B,), e.g. "
                         "wm.vision.perceptual.build_perceptual(); none was given")
    x, y, lead = _flatten_frames(pred, target)
    out = perceptual(x, y)
    return out.reshape(-1).float().reshape(lead)


FRAME_METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mae": mae, "mse": mse, "psnr": psnr, "ssim": ssim,
}
"""Metrics that need no model; ``lpips`` is added by ``frame_metrics`` when a module is given."""


def frame_metrics(pred: torch.Tensor, target: torch.Tensor, perceptual: Perceptual | None = None,
                  names: tuple[str, ...] | None = None,
                  chunk_frames: int = 256) -> dict[str, torch.Tensor]:
    """Per-frame metrics, without gradients. pred, target (B, T, 3, H, W) -> {name: (B, T)}.

    ``names`` defaults to mae, mse, psnr, ssim, plus lpips when ``perceptual`` is given.
    Frames go through the metrics ``chunk_frames`` at a time (SSIM keeps five (M, 3, H, W)
    maps and VGG far more, so a whole GRPO batch, B*G*T frames, would not fit at once).
    Also accepts (B, 3, H, W) -> (B,).
    """
    if names is None:
        names = tuple(FRAME_METRICS) + (("lpips",) if perceptual is not None else ())
    unknown = [n for n in names if n not in METRIC_SIGN]
    if unknown:
        raise ValueError(f"unknown video metric(s) {unknown}; valid metrics: {sorted(METRIC_SIGN)}")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    x, y, lead = _flatten_frames(pred, target)  # (M, 3, H, W), M = B*T
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    with torch.no_grad():
        for xc, yc in zip(x.split(chunk_frames), y.split(chunk_frames)):
            for n in names:
                out[n].append(lpips(xc, yc, perceptual) if n == "lpips"
                              else FRAME_METRICS[n](xc, yc))  # (m,)
    return {n: torch.cat(v).reshape(lead) for n, v in out.items()}


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
                 repeated: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """pred, target (B, T, 3, H, W) or (B, 3, H, W) in [0, 1]; repeated (B, T) bool.

        Returns {metric: (B,) frame-aggregated raw metric, ["repetition": (B,)], "reward": (B,)}.
        """
        if pred.dim() == 4:
            pred, target = pred.unsqueeze(1), target.unsqueeze(1)  # (B, 1, 3, H, W)
            repeated = None if repeated is None else repeated.reshape(-1, 1)
        if self.needs_perceptual and perceptual is None:
            raise ValueError("the reward weights include 'lpips' but no perceptual module was "
                             "passed; give perceptual=... or drop 'lpips' from weights")
        per_frame = frame_metrics(pred, target, perceptual, names=tuple(self.weights),
                                  chunk_frames=self.chunk_frames)  # {k: (B, T)}
        reward_t = sum(METRIC_SIGN[k] * w * per_frame[k] for k, w in self.weights.items())
        out = {k: aggregate_time(v, self.aggregation, self.gamma) for k, v in per_frame.items()}
        if self.repetition_penalty > 0:
            if repeated is None:
                raise ValueError("repetition_penalty > 0 needs the (B, T) bool `repeated` mask "
                                 "(wm.evaluation.video_metrics.repetition_mask)")
            if repeated.shape != reward_t.shape:
                raise ValueError(f"repeated {tuple(repeated.shape)} must be (B, T) = "
                                 f"{tuple(reward_t.shape)}")
            rep = repeated.to(reward_t.device, reward_t.dtype)
            reward_t = reward_t - self.repetition_penalty * rep
            out["repetition"] = aggregate_time(rep, self.aggregation, self.gamma)
        out["reward"] = aggregate_time(reward_t, self.aggregation, self.gamma)
        return out
