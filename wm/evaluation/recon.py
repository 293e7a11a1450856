"""Reconstruction quality of a visual tokenizer (tokenize, detokenize, compare).

Metrics as in shared/REFERENCE.md "Video world model" / evaluation: MAE, MSE, PSNR, SSIM
(Gaussian window 11, sigma 1.5, data range 1, torchmetrics) and LPIPS, on pixels in [0, 1],
computed per frame and averaged over frames.

What is measured: ``encode_clip`` then ``decode_clip`` on the *future* frames of each clip (the
frames the world model predicts; for the compressive tokenizer that is the coarse, context-
conditioned path). For the per-frame tokenizer pass ``n_context=0`` to score every frame.
Departure: the paper reports SSIM and LPIPS x100; these are raw values.
"""
from __future__ import annotations

import torch
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure

_PSNR_MSE_FLOOR = 1e-10  # identical frames give PSNR 100 dB instead of inf


def frame_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-frame metrics of (N,3,H,W) frames in [0,1] -> {"mae","mse","psnr","ssim"} each (N,)."""
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError("frame_metrics expects two (N,3,H,W) tensors of one shape, got "
                         f"{tuple(pred.shape)}, {tuple(target.shape)}")
    pred, target = pred.float().clamp(0, 1), target.float()
    mae = (pred - target).abs().flatten(1).mean(1)                      # (N,)
    mse = (pred - target).pow(2).flatten(1).mean(1)                     # (N,)
    psnr = 10.0 * torch.log10(1.0 / mse.clamp_min(_PSNR_MSE_FLOOR))
    ssim = structural_similarity_index_measure(pred, target, gaussian_kernel=True, sigma=1.5,
                                               kernel_size=11, data_range=1.0, reduction="none")
    return {"mae": mae, "mse": mse, "psnr": psnr, "ssim": ssim.reshape(-1)}


@torch.no_grad()
def reconstruction_metrics(tokenizer: nn.Module, dataloader, perceptual: nn.Module | None = None,
                           n_context: int = 1, max_batches: int | None = None) -> dict[str, float]:
    """Mean per-frame MAE, MSE, PSNR, SSIM (and LPIPS if ``perceptual``) of tokenizer round trips.

    ``dataloader`` yields video batches (``batch["frames"]`` (B,T,3,H,W) in [0,1]). Returns the
    means and ``frames``, the number of frames scored.
    """
    was_training = tokenizer.training
    tokenizer.eval()
    sums: dict[str, float] = {}
    n = 0
    try:
        for i, batch in enumerate(dataloader):
            if max_batches is not None and i >= max_batches:
                break
            frames = batch["frames"].to(next(tokenizer.parameters()).device)
            if frames.shape[1] <= n_context:
                raise ValueError(
                    f"clips have T={frames.shape[1]} frames and n_context={n_context}: no future "
                    "frame to score; use longer clips or a smaller n_context (0 scores every frame "
                    "with a per-frame tokenizer)"
                )
            ctx, fut = tokenizer.encode_clip(frames, n_context)
            pred = tokenizer.decode_clip(ctx, fut).flatten(0, 1)         # (B*Tf, 3, H, W)
            target = frames[:, n_context:].flatten(0, 1)                 # (B*Tf, 3, H, W)
            per_frame = frame_metrics(pred, target)
            if perceptual is not None:
                per_frame["lpips"] = perceptual(pred, target)
            for k, v in per_frame.items():
                sums[k] = sums.get(k, 0.0) + float(v.sum())
            n += pred.shape[0]
    finally:
        tokenizer.train(was_training)
    if n == 0:
        raise ValueError("reconstruction_metrics: the dataloader yielded no batches")
    return {**{k: v / n for k, v in sums.items()}, "frames": n}
