"""Predictions without a model for :class:`wm.tasks.video.VideoTask`: the bar a world model must
clear, scored by the task's own metrics and reward (issue #16).

``copy_last_frame``: every predicted frame is the last frame the model was shown, repeated
(pixels of the true frame, no tokenizer round trip). On data where little moves between frames
it is a strong prediction under MAE/MSE/PSNR/SSIM; a world model that does not beat it is not
yet worth simulating with. Its ``repeat`` is 1 by construction (its tokens are the previous
frame's); ``repeat_truth`` is the data's own rate, as for any model.

``true_tokens``: the true future frames' own token ids, decoded as a prediction is
(``data.task.decoding``): the best any world model can score with this tokenizer and decoding,
i.e. the tokenizer's floor. A model row can only approach it.

Not in the paper (which reports no such rows); ours, to read the tables against.
"""
from __future__ import annotations

import torch


class VideoBaselinesMixin:
    """``copy_last_frame`` and ``true_tokens`` for :class:`wm.tasks.video.VideoTask` (use its
    tokenizer, ``Tc``, ``Tf``, ``n_prompt_future`` and ``frames_from_codes``)."""

    def _predicted_span(self, frames: torch.Tensor, horizon: int) -> tuple[int, int]:
        """(first predicted frame, end) of a clip; ``horizon > 1``: the open-loop evaluation's
        ``Tc + horizon`` frames."""
        self._require_connected()
        first = self.Tc if horizon > 1 else self.Tc + self.n_prompt_future
        end = self.Tc + horizon if horizon > 1 else self.Tc + self.Tf
        if frames.shape[1] < end:
            raise ValueError(f"clips have {frames.shape[1]} frames, the baseline needs {end}")
        return first, end

    @torch.no_grad()
    def copy_last_frame(self, batch, group_size: int = 1, horizon: int = 1) -> dict:
        """The ``decode`` dict of the prediction "the last frame before the first predicted one,
        repeated": frames/target (N, Tf, 3, H, W), tokens (N, Tf, Nf), prev_tokens (N, Nf) |
        None, true_tokens (N, Tf, Nf), N = B * group_size. ``horizon > 1``: the open-loop
        evaluation's frames (``Tc + horizon`` per clip, ``Tf = horizon``)."""
        Tc, frames = self.Tc, batch["frames"]
        first, end = self._predicted_span(frames, horizon)
        target = frames[:, first:end].float()                               # (B, Tf, 3, H, W)
        pred = frames[:, first - 1 : first].float().expand_as(target)       # the last frame seen
        tok = self.tokenizer
        ctx, fut = tok.encode_clip(torch.cat([frames[:, :first].float(), pred], dim=1), Tc)
        _, true = tok.encode_clip(frames[:, :end].float(), Tc)              # (B, Tf', N)
        skip = first - Tc                                                   # prompt future frames
        prev = ctx[:, -1] if tok.shared_codebook else None
        return _rows({"frames": pred.contiguous(), "target": target, "tokens": fut[:, skip:],
                      "prev_tokens": prev, "true_tokens": true[:, skip:]}, group_size)

    @torch.no_grad()
    def true_tokens(self, batch, group_size: int = 1, horizon: int = 1) -> dict:
        """The ``decode`` dict of the true future frames' own tokens decoded as a prediction
        (the tokenizer's floor under ``data.task.decoding``); shapes as ``copy_last_frame``."""
        Tc, frames = self.Tc, batch["frames"]
        first, end = self._predicted_span(frames, horizon)
        ctx, true = self.tokenizer.encode_clip(frames[:, :end].float(), Tc)  # (B,Tc,Nc),(B,Tf',Nf)
        fut = true[:, first - Tc:]
        pred = self.frames_from_codes(ctx, fut, frames[:, first - 1].float())
        prev = ctx[:, -1] if self.tokenizer.shared_codebook else None
        return _rows({"frames": pred, "target": frames[:, first:end].float(), "tokens": fut,
                      "prev_tokens": prev, "true_tokens": fut}, group_size)


def _rows(preds: dict, group_size: int) -> dict:
    """Each prompt's entries repeated ``group_size`` times (B -> B * group_size rows)."""
    return {k: None if v is None else v.repeat_interleave(group_size, dim=0)
            for k, v in preds.items()}
