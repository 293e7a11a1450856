"""Local normalisation in the FSQ-VQGAN (``norm="channel"``, issue #16): a change in one corner of
a frame leaves the latents of the far corner untouched, while VQGAN's GroupNorm moves them (its
statistics span the whole image), which flips codes of regions where nothing moved."""
from __future__ import annotations

import pytest
import torch

from wm.vision.blocks import ChannelNorm, norm
from wm.vision.fsq_vqgan import FrameTokenizer


def _far_latent_change(kind: str) -> float:
    torch.manual_seed(0)
    tok = FrameTokenizer(channels=[8, 8, 8, 8], levels=[5, 5, 5], latent_dim=4, resolution=(128, 128),
                         norm=kind).eval()
    x = torch.rand(1, 3, 128, 128)
    y = x.clone()
    y[..., :6, :6] = 1.0 - y[..., :6, :6]            # change the top-left corner only
    with torch.no_grad():
        zx, zy = tok.encoder(x * 2 - 1), tok.encoder(y * 2 - 1)   # (1, 4, 16, 16)
    # latents of the bottom-right 3x3 cells: 104+ px away, beyond the encoder's reach
    return float((zx[..., -3:, -3:] - zy[..., -3:, -3:]).abs().max())


def test_channel_norm_keeps_far_latents_group_norm_moves_them():
    assert _far_latent_change("channel") == pytest.approx(0.0, abs=1e-6)
    assert _far_latent_change("group") > 1e-4


def test_channel_norm_normalises_each_position_over_channels():
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    y = ChannelNorm(6)(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 5, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(2, 5, 7), atol=1e-3, rtol=0)


def test_norm_kind_is_saved_and_checked():
    assert FrameTokenizer(channels=[8, 8], levels=[5, 5], latent_dim=4, resolution=(16, 16),
                          norm="channel").config["norm"] == "channel"
    with pytest.raises(ValueError, match="norm='batch'.*group.*channel"):
        norm(8, "batch")
