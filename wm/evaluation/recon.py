"""Reconstruction quality of a visual tokenizer (tokenize, detokenize, compare).

Metrics as in shared/REFERENCE.md "Video world model" / evaluation, computed per frame by
``wm.rewards.frame_metrics.frame_metrics`` (the code that scores rewards and world models) and
averaged over frames.

What is measured: ``encode_clip`` then ``decode_clip`` on the *future* frames of each clip (the
frames the world model predicts; for the compressive tokenizer that is the coarse, context-
conditioned path). For the per-frame tokenizer pass ``n_context=0`` to score every frame.
Departure: the paper reports SSIM and LPIPS x100; these are raw values.
"""
from __future__ import annotations

import torch
from torch import nn

from wm.rewards.frame_metrics import frame_metrics


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
            per_frame = frame_metrics(pred, target, perceptual)        # {name: (B*Tf,)}
            for k, v in per_frame.items():
                sums[k] = sums.get(k, 0.0) + float(v.sum())
            n += pred.shape[0]
    finally:
        tokenizer.train(was_training)
    if n == 0:
        raise ValueError("reconstruction_metrics: the dataloader yielded no batches")
    return {**{k: v / n for k, v in sums.items()}, "frames": n}
