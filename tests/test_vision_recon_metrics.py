"""wm.evaluation.recon: per-frame metrics on known tensors and the tokenizer round-trip loop."""
import math

import pytest
import torch
from torch import nn

from wm.evaluation.recon import reconstruction_metrics
from wm.rewards.frame_metrics import frame_metrics
from wm.vision.fsq_vqgan import FrameTokenizer
from wm.vision.perceptual import Perceptual


class ShiftTokenizer(nn.Module):
    """Stub: 'tokens' are the frames themselves; decoding adds a constant 0.1."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))

    def encode_clip(self, frames, n_context):
        return frames[:, :n_context], frames[:, n_context:]

    def decode_clip(self, ctx, fut):
        return fut + 0.1


def test_frame_metrics_known_values():
    t = torch.full((2, 3, 16, 16), 0.5)
    m = frame_metrics(t + 0.1, t)
    torch.testing.assert_close(m["mae"], torch.full((2,), 0.1))
    torch.testing.assert_close(m["mse"], torch.full((2,), 0.01))
    torch.testing.assert_close(m["psnr"], torch.full((2,), 20.0))
    same = frame_metrics(t, t)
    torch.testing.assert_close(same["ssim"], torch.ones(2))
    assert math.isclose(float(same["psnr"][0]), 100.0)


def test_reconstruction_metrics_averages_future_frames():
    batches = [{"frames": torch.full((2, 3, 3, 16, 16), 0.5)} for _ in range(3)]
    out = reconstruction_metrics(ShiftTokenizer(), batches, n_context=1, max_batches=2)
    assert out["frames"] == 2 * 2 * 2
    assert math.isclose(out["mae"], 0.1, rel_tol=1e-5)
    assert math.isclose(out["psnr"], 20.0, rel_tol=1e-5)
    with pytest.raises(ValueError, match="n_context"):
        reconstruction_metrics(ShiftTokenizer(), batches, n_context=3)


def test_reconstruction_metrics_with_real_tokenizer_and_lpips():
    torch.manual_seed(0)
    tok = FrameTokenizer(channels=(8, 16), latent_dim=8, resolution=(32, 32)).train()
    batches = [{"frames": torch.rand(1, 2, 3, 32, 32)}]
    lpips = Perceptual("native", allow_random_backbone=True)
    out = reconstruction_metrics(tok, batches, perceptual=lpips, n_context=0)
    assert set(out) == {"mae", "mse", "psnr", "ssim", "lpips", "frames"} and out["frames"] == 2
    assert out["lpips"] > 0 and tok.training  # restores the mode it found
