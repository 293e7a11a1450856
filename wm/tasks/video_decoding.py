"""How a video task turns predicted codes into frames (``data.task.decoding``).

- ``"tokens"`` (default, the paper): the frozen tokenizer's decoder, ``frame = D(z_pred)``.
  The tokenizer's reconstruction error is in every predicted pixel, even where nothing moved,
  so no world model beats its tokenizer's floor.
- ``"patch"`` (ours; README "Departures"): a token the model kept from the previous frame
  means that its patch did not change, so the patch shows the previous frame's pixels; the
  other patches show the decoder's output:
  ``frame = M * x_prev + (1 - M) * D(z_pred)``, ``M`` = 1 on the pixel cell of every token with
  ``z_pred == z_prev`` (per-frame tokenizers: one token per ``H/h x W/w`` cell). ``x_prev`` is
  the true last context frame for the first predicted frame, then each predicted frame for the
  next one (open loop and multi-frame responses chain frame by frame). The world model, its
  sequence and its MLE training are unchanged; frames, and so the rewards and metrics scored on
  them, differ. Measured on the quickstart's tokenizer with the true next-frame tokens
  (docs/benchmarks.md, "quickstart"): MAE 0.0061 ("patch") vs 0.0090 ("tokens") vs 0.0072 for
  copying the last frame; ST-LPIPS 0.0137 vs 0.0147 vs 0.0223.

Issue #16.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

DECODINGS = ("tokens", "patch")


class VideoDecodingMixin:
    """``frames_from_codes`` for :class:`wm.tasks.video.VideoTask` (uses ``tokenizer`` and
    ``decoding``)."""

    def _check_decoding(self, decoding: str, n_prompt_future: int) -> str:
        if decoding not in DECODINGS:
            raise ValueError(f"data.task.decoding={decoding!r}: choose one of {DECODINGS}")
        if decoding == "patch" and not self.tokenizer.shared_codebook:
            raise ValueError("data.task.decoding=patch compares a predicted token with the same "
                             "cell of the previous frame, which needs a per-frame tokenizer "
                             "(one codebook, one grid); this tokenizer codes future frames on "
                             "their own grid: use decoding=tokens")
        if decoding == "patch" and n_prompt_future:
            raise ValueError("data.task.decoding=patch with n_prompt_future=1 is not supported "
                             "(the prompt's future frame would be the previous frame): use "
                             "decoding=tokens")
        return decoding

    def frames_from_codes(self, ctx: torch.Tensor, fut: torch.Tensor,
                          ref: torch.Tensor) -> torch.Tensor:
        """ctx (N, Tc, Nc) context codes, fut (N, Tf, Nf) predicted codes, ref (N, 3, H, W) the
        true pixels of the last context frame -> predicted frames (N, Tf, 3, H, W) in [0, 1]."""
        frames = self.tokenizer.decode_clip(ctx, fut).clamp(0, 1)           # (N, Tf, 3, H, W)
        if self.decoding == "tokens":
            return frames
        h, w = self.tokenizer.grid_hw
        prev_codes, prev = ctx[:, -1], ref.to(frames.dtype)                  # (N, h*w), (N,3,H,W)
        out = []
        for t in range(fut.shape[1]):
            kept = (fut[:, t] == prev_codes).view(-1, 1, h, w).to(frames.dtype)   # (N,1,h,w)
            kept = F.interpolate(kept, size=frames.shape[-2:], mode="nearest")  # (N,1,H,W)
            frame = kept * prev + (1 - kept) * frames[:, t]
            out.append(frame)
            prev_codes, prev = fut[:, t], frame
        return torch.stack(out, dim=1)
