"""Ground-truth vs predicted frame strips: TensorBoard grids, PNG strips and GIFs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def frame_grid(target: torch.Tensor, pred: torch.Tensor, pad: int = 1) -> torch.Tensor:
    """Interleave rows of true and predicted frames.

    target, pred: (n, T, 3, H, W) in [0, 1]. Returns (3, 2n*(H+pad), T*(W+pad)): row 2i is
    sample i's ground truth, row 2i+1 its prediction, time runs left to right.
    """
    if target.shape != pred.shape:
        raise ValueError(f"target {tuple(target.shape)} and pred {tuple(pred.shape)} differ")
    n, T, C, H, W = target.shape
    both = torch.stack([target, pred], dim=1).float().clamp(0, 1)          # (n, 2, T, 3, H, W)
    both = torch.nn.functional.pad(both, (0, pad, 0, pad), value=1.0)      # (n,2,T,3,H+p,W+p)
    both = both.permute(2, 0, 1, 3, 4, 5)                                  # (T, n, 2, 3, h, w)
    rows = both.reshape(T, 2 * n, C, H + pad, W + pad)                     # (T, 2n, 3, h, w)
    rows = rows.permute(2, 1, 3, 0, 4)                                      # (3, 2n, h, T, w)
    return rows.reshape(C, 2 * n * (H + pad), T * (W + pad)).cpu()


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) float [0,1] -> (H, W, 3) uint8."""
    return (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def save_strip(path: str | Path, target: torch.Tensor, pred: torch.Tensor,
               context: torch.Tensor | None = None, scale: int = 2) -> Path:
    """PNG strip of true (top) vs predicted (bottom) frames; optional context frames first.

    target, pred: (n, T, 3, H, W); context: (n, Tc, 3, H, W) shown in both rows.
    """
    from PIL import Image

    if context is not None:
        target = torch.cat([context.to(target), target], dim=1)
        pred = torch.cat([context.to(pred), pred], dim=1)
    img = Image.fromarray(_to_uint8(frame_grid(target, pred)))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def save_gif(path: str | Path, target: torch.Tensor, pred: torch.Tensor, scale: int = 3,
             ms_per_frame: int = 400) -> Path:
    """Animated GIF: each frame shows truth (left) and prediction (right). target/pred (T,3,H,W)."""
    from PIL import Image

    frames = []
    for t in range(target.shape[0]):
        pair = torch.cat([target[t], pred[t]], dim=2)                      # (3, H, 2W)
        im = Image.fromarray(_to_uint8(pair))
        frames.append(im.resize((im.width * scale, im.height * scale), Image.NEAREST))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    return path
