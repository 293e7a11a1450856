"""SSIM as the paper's evaluator computes it: the mean over *valid* 11x11 Gaussian windows
(piqa.SSIM without padding), checked against an independent window-by-window formula; the
reflect-padded torchmetrics mean is a named option that differs on real-looking frames."""
import math

import numpy as np
import pytest
import torch

from wm.rewards.frame_metrics import frame_metrics, ssim, ssim_padded


def _gaussian_window(size=11, sigma=1.5) -> np.ndarray:
    ax = np.arange(size) - (size - 1) / 2
    g = np.exp(-(ax ** 2) / (2 * sigma ** 2))
    g /= g.sum()
    return np.outer(g, g)                                               # (11, 11), sums to 1


def _ssim_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """x, y (3, H, W) float64 in [0, 1]: mean over channels and valid windows of the SSIM formula
    (Wang et al. 2004) with weighted local statistics; no padding anywhere."""
    w, c1, c2 = _gaussian_window(), 0.01 ** 2, 0.03 ** 2
    vals = []
    for ch in range(x.shape[0]):
        for i in range(x.shape[1] - 10):
            for j in range(x.shape[2] - 10):
                a, b = x[ch, i:i + 11, j:j + 11], y[ch, i:i + 11, j:j + 11]
                ma, mb = (w * a).sum(), (w * b).sum()
                va, vb = (w * a * a).sum() - ma ** 2, (w * b * b).sum() - mb ** 2
                cov = (w * a * b).sum() - ma * mb
                vals.append(((2 * ma * mb + c1) * (2 * cov + c2))
                            / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


@pytest.fixture
def frames():
    g = torch.Generator().manual_seed(0)
    # a flat background with a bright square near the border (as PushT frames are) plus noise
    x = torch.full((2, 3, 20, 18), 0.9)
    x[:, :, 2:8, 1:7] = 0.2
    y = (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    y[1, :, 12:18, 10:16] = 0.4
    return x.double(), y.double()


def test_default_ssim_matches_the_valid_window_formula(frames):
    x, y = frames
    got = ssim(y.float(), x.float())
    want = torch.tensor([_ssim_by_hand(y[i].numpy(), x[i].numpy()) for i in range(2)],
                        dtype=torch.float64)
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=0)
    # frame_metrics (rewards, eval, tokenizer stage) reports the same number
    torch.testing.assert_close(frame_metrics(y.float(), x.float())["ssim"], got)


def test_padded_ssim_is_a_different_named_option(frames):
    x, y = frames
    want = torch.tensor([_ssim_by_hand(y[i].numpy(), x[i].numpy()) for i in range(2)],
                        dtype=torch.float64)
    padded = ssim_padded(y.float(), x.float())
    assert (padded.double() - want).abs().min() > 1e-3, "padded mean must differ from valid mean"
    assert "ssim_padded" in frame_metrics(y.float(), x.float(), names=("ssim_padded",))
    with pytest.raises(ValueError, match="valid"):
        ssim(x.float(), y.float(), window="same")


def test_identical_frames_and_too_small_frames():
    x = torch.rand(1, 3, 12, 12)
    assert math.isclose(float(ssim(x, x)), 1.0, abs_tol=1e-6)
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
