"""Showing a video task's predictions: truth-vs-prediction grids in TensorBoard, and PNG strips,
GIFs and TensorBoard images written by ``eval.py`` (frame drawing itself: ``wm.utils.frame_strips``).
"""
from __future__ import annotations

from pathlib import Path

import torch


class VideoSamplesMixin:
    """``log_samples`` / ``save_samples`` for :class:`wm.tasks.video.VideoTask` (uses its
    ``Tc``, the number of context frames)."""

    def log_samples(self, logger, tag: str, preds, batch, step: int, rows: int = 4) -> None:
        """Predicted vs true frames as an image grid in TensorBoard."""
        from wm.utils.frame_strips import frame_grid

        exp = getattr(logger, "experiment", None)
        if exp is None or not hasattr(exp, "add_image"):
            return
        n = min(rows, preds["frames"].shape[0])
        exp.add_image(tag, frame_grid(preds["target"][:n], preds["frames"][:n]), step)

    def save_samples(self, preds, batch, out_dir, rows: int = 4, group_size: int = 1) -> list:
        """PNG strip (context, truth vs prediction), one GIF per sample, TensorBoard images."""
        from torch.utils.tensorboard import SummaryWriter

        from wm.utils.frame_strips import frame_grid, save_gif, save_strip

        out_dir = Path(out_dir)
        idx = torch.arange(0, preds["frames"].shape[0], group_size)[:rows]   # first sample each
        target, pred = preds["target"][idx].cpu(), preds["frames"][idx].cpu()
        context = batch["frames"][: len(idx), : self.Tc].cpu()
        files = [save_strip(out_dir / "strip.png", target, pred, context=context)]
        files += [save_gif(out_dir / f"sample{i}.gif", target[i], pred[i]) for i in range(len(idx))]
        with SummaryWriter(str(out_dir / "tb")) as writer:
            writer.add_image("eval/truth_vs_prediction", frame_grid(target, pred), 0)
        return files
