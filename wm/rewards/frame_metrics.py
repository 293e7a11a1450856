"""Per-frame video metrics: the one implementation that rewards, evaluation and the tokenizer
stage all call (RLVR-World §4.3 and App. "Video world model"; shared/REFERENCE.md).

Frames (B, 3, H, W) -> (B,) or clips (B, T, 3, H, W) -> (B, T), pixels in [0, 1], batched, on
the tensors' device. ``frame_metrics`` clamps the prediction to [0, 1] first (tokenizer decoders
are not clamped; the reference clamps before scoring).

| metric | direction | formula |
|---|---|---|
| mae   | lower  | mean |x - y| over C, H, W |
| mse   | lower  | mean (x - y)^2 over C, H, W |
| psnr  | higher | 10 log10(1 / mse), data range 1, capped at 100 dB (identical frames) |
| ssim  | higher | SSIM, gaussian window 11, sigma 1.5, data range 1, mean over *valid*
                   windows (the paper's evaluator, ``piqa.SSIM`` without padding) |
| ssim_padded | higher | the same, averaged over reflect-padded windows (torchmetrics' mean) |
| lpips | lower  | a perceptual callable ``fn(pred, target) -> (B,)`` on [0, 1] frames
                   (``wm.vision.perceptual.Perceptual``: VGG LPIPS, scales to [-1, 1] itself);
                   each distinct true frame's features are computed once (``lpips``) |

Departure: PSNR is capped at 100 dB so that an exact prediction gives a finite reward (the
group advantage would be NaN with +inf).
"""
from __future__ import annotations

from typing import Callable

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

__all__ = ["METRIC_SIGN", "FRAME_METRICS", "DEFAULT_METRICS", "mae", "mse", "psnr", "ssim",
           "ssim_padded", "lpips", "distinct_frames", "frame_metrics"]

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PSNR_MAX_DB = 100.0

METRIC_SIGN: dict[str, float] = {"mae": -1.0, "mse": -1.0, "lpips": -1.0, "psnr": 1.0, "ssim": 1.0,
                                 "ssim_padded": 1.0}
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


SSIM_KERNEL, SSIM_SIGMA = 11, 1.5


def ssim(pred: torch.Tensor, target: torch.Tensor, window: str = "valid") -> torch.Tensor:
    """SSIM per frame: gaussian window 11, sigma 1.5, data range 1, K1 0.01, K2 0.03.

    ``window="valid"`` (the default, the paper's evaluator: ``piqa.SSIM`` without padding)
    averages the SSIM map over the windows that lie inside the image, (H-10) x (W-10) of them
    per channel. ``window="padded"`` averages torchmetrics' map over reflect-padded windows at
    every pixel (torchmetrics' own ``structural_similarity_index_measure``), which reads higher
    on frames with flat borders. (B[, T], 3, H, W) -> (B[, T]). Higher is better; 1 for
    identical frames. H, W >= 11.
    """
    if window not in ("valid", "padded"):
        raise ValueError(f"ssim window must be 'valid' or 'padded', got {window!r}")
    x, y, lead = _flatten_frames(pred, target)
    if min(x.shape[-2:]) < SSIM_KERNEL:
        raise ValueError(f"SSIM needs frames of at least {SSIM_KERNEL}x{SSIM_KERNEL} pixels, got "
                         f"{tuple(x.shape[-2:])}")
    mean, full = structural_similarity_index_measure(
        x, y, gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL, data_range=1.0,
        reduction="none", return_full_image=True)                      # (M,), (M, 3, H, W)
    if window == "padded":
        return mean.reshape(lead)
    pad = (SSIM_KERNEL - 1) // 2
    valid = full[..., pad:-pad, pad:-pad]                               # (M, 3, H-10, W-10)
    return valid.reshape(valid.shape[0], -1).mean(1).reshape(lead)


def ssim_padded(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM averaged over reflect-padded windows (torchmetrics' definition); see ``ssim``."""
    return ssim(pred, target, window="padded")


def lpips(pred: torch.Tensor, target: torch.Tensor, perceptual: Perceptual,
          chunk_frames: int | None = None) -> torch.Tensor:
    """Perceptual distance per frame with ``perceptual(pred, target) -> (M,)`` on [0, 1] frames.

    (B[, T], 3, H, W) -> (B[, T]). Lower is better. The callable owns its input scaling (the
    reference scales to [-1, 1] for VGG LPIPS, as ``wm.vision.perceptual.Perceptual`` does).
    A module with ``target_features`` / ``distance_to_features`` (``Perceptual``) computes each
    distinct true frame's features once (GRPO scores G samples against one truth), predictions
    ``chunk_frames`` at a time (None: all at once); any other callable gets the frame pairs.
    """
    if perceptual is None:
        raise ValueError("lpips needs a perceptual module fn(pred, target) -> (B,), e.g. "
                         "wm.vision.perceptual.build_perceptual(); none was given")
    x, y, lead = _flatten_frames(pred, target)
    if len(x) == 0:
        return x.new_zeros(lead)
    chunk = chunk_frames or len(x)
    if not hasattr(perceptual, "distance_to_features"):
        out = torch.cat([perceptual(xc, yc).reshape(-1) for xc, yc in
                         zip(x.split(chunk), y.split(chunk))])
        return out.float().reshape(lead)
    targets, index = distinct_frames(y)                                  # (K, 3, H, W), (M,)
    out = x.new_zeros(len(x))
    for k0, k1, rows in _target_runs(index, chunk):
        feats = perceptual.target_features(targets[k0:k1])               # once per true frame
        for r in rows.split(chunk):
            out[r] = perceptual.distance_to_features(x[r], feats, index[r] - k0).float()
    return out.reshape(lead)


def distinct_frames(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, 3, H, W) -> (distinct frames (K, 3, H, W), index (M,) int64) with
    ``frames == distinct[index]`` exactly. Frames are grouped by a per-row weighted sum and the
    grouping is checked element by element (a collision falls back to ``torch.unique``)."""
    flat = frames.reshape(len(frames), -1)                               # (M, D)
    gen = torch.Generator().manual_seed(0)
    w = torch.rand(flat.shape[1], generator=gen).to(flat.device, flat.dtype) + 0.5   # (D,)
    keys = torch.cat([(rows * w).sum(1) for rows in flat.split(256)])   # (M,)
    _, index = torch.unique(keys, return_inverse=True)                   # (M,) in [0, K)
    first = torch.full((int(index.max()) + 1,), len(flat), device=flat.device)
    first = first.scatter_reduce(0, index, torch.arange(len(flat), device=flat.device), "amin")
    same = all(torch.equal(rows, flat[first[i]]) for rows, i in
               zip(flat.split(256), index.split(256)))
    if not same:                                                          # a key collision
        _, index = torch.unique(flat, dim=0, return_inverse=True)
        first = torch.full((int(index.max()) + 1,), len(flat), device=flat.device)
        first = first.scatter_reduce(0, index, torch.arange(len(flat), device=flat.device),
                                     "amin")
    return frames[first], index


def _target_runs(index: torch.Tensor, chunk: int):
    """Consecutive target ids [k0, k1) whose predictions number at most ``chunk`` (one target
    may have more; its rows are split by the caller) -> (k0, k1, rows (n,) int64) per run."""
    order = torch.argsort(index, stable=True)                            # rows grouped by target
    counts = torch.bincount(index).tolist()                              # (K,)
    k0, start, n = 0, 0, 0
    for k, c in enumerate(counts):
        if n and n + c > chunk:
            yield k0, k, order[start:start + n]
            k0, start, n = k, start + n, 0
        n += c
    yield k0, len(counts), order[start:start + n]


FRAME_METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mae": mae, "mse": mse, "psnr": psnr, "ssim": ssim, "ssim_padded": ssim_padded,
}
DEFAULT_METRICS = ("mae", "mse", "psnr", "ssim")
"""What ``frame_metrics`` computes unless told otherwise (plus lpips with a perceptual module)."""
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
        names = DEFAULT_METRICS + (("lpips",) if perceptual is not None else ())
    unknown = [n for n in names if n not in METRIC_SIGN]
    if unknown:
        raise ValueError(f"unknown video metric(s) {unknown}; valid metrics: {sorted(METRIC_SIGN)}")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    x, y, lead = _flatten_frames(pred, target)  # (M, 3, H, W), M = B*T
    x = x.clamp(0.0, 1.0)
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names if n != "lpips"}
    with torch.no_grad():
        for xc, yc in zip(x.split(chunk_frames), y.split(chunk_frames)):
            for n in out:
                out[n].append(FRAME_METRICS[n](xc, yc))  # (m,)
        done = {n: torch.cat(v).reshape(lead) for n, v in out.items()}
        if "lpips" in names:     # each distinct true frame's features once (see ``lpips``)
            done["lpips"] = lpips(x, y, perceptual, chunk_frames=chunk_frames).reshape(lead)
    return {n: done[n] for n in names}
