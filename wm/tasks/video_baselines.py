"""Predictions without a model for :class:`wm.tasks.video.VideoTask`: the bar a world model must
clear, scored by the task's own metrics and reward (issue #16).

``copy_last_frame``: every predicted frame is the last frame the model was shown, repeated
(pixels of the true frame, no tokenizer round trip). On data where little moves between frames
it is a strong prediction under MAE/MSE/PSNR/SSIM; a world model that does not beat it is not
yet worth simulating with. Its ``repeat`` is 1 by construction (its tokens are the previous
frame's); ``repeat_truth`` is the data's own rate, as for any model.

Not in the paper (which reports no such row); ours, to read the tables against.
"""
from __future__ import annotations

import torch


class VideoBaselinesMixin:
    """``copy_last_frame`` for :class:`wm.tasks.video.VideoTask` (uses its tokenizer, ``Tc``,
    ``Tf`` and ``n_prompt_future``)."""

    @torch.no_grad()
    def copy_last_frame(self, batch, group_size: int = 1, horizon: int = 1) -> dict:
        """The ``decode`` dict of the prediction "the last frame before the first predicted one,
        repeated": frames/target (N, Tf, 3, H, W), tokens (N, Tf, Nf), prev_tokens (N, Nf) |
        None, true_tokens (N, Tf, Nf), N = B * group_size. ``horizon > 1``: the open-loop
        evaluation's frames (``Tc + horizon`` per clip, ``Tf = horizon``)."""
        self._require_connected()
        Tc, frames = self.Tc, batch["frames"]
        first = Tc if horizon > 1 else Tc + self.n_prompt_future     # first predicted frame
        end = Tc + horizon if horizon > 1 else Tc + self.Tf
        if frames.shape[1] < end:
            raise ValueError(f"clips have {frames.shape[1]} frames, copy_last_frame needs {end}")
        target = frames[:, first:end].float()                               # (B, Tf, 3, H, W)
        pred = frames[:, first - 1 : first].float().expand_as(target)       # the last frame seen
        tok = self.tokenizer
        ctx, fut = tok.encode_clip(torch.cat([frames[:, :first].float(), pred], dim=1), Tc)
        _, true = tok.encode_clip(frames[:, :end].float(), Tc)              # (B, Tf', N)
        skip = first - Tc                                                   # prompt future frames
        prev = ctx[:, -1] if tok.shared_codebook else None

        def rows(x):
            return None if x is None else x.repeat_interleave(group_size, dim=0)

        return {"frames": rows(pred.contiguous()), "target": rows(target),
                "tokens": rows(fut[:, skip:]), "prev_tokens": rows(prev),
                "true_tokens": rows(true[:, skip:])}
