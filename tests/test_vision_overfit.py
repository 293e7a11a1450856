"""A tiny FSQ-VQGAN overfits a few real PushT frames: decode(encode(x)) gets close to x."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wm.rewards.frame_metrics import frame_metrics
from wm.vision.fsq_vqgan import FrameTokenizer


def _pusht_frames(shared_data, n=4, size=64) -> torch.Tensor:
    path = shared_data / "pusht" / "pusht_demos.npz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    img = np.load(path)["img"]                                           # (N, 96, 96, 3) uint8
    idx = np.linspace(0, len(img) - 1, n).astype(int)
    x = torch.from_numpy(img[idx]).permute(0, 3, 1, 2).float() / 255.0    # (n, 3, 96, 96)
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


@pytest.mark.real_data
@pytest.mark.slow
def test_overfit_pusht_frames_psnr(shared_data):
    torch.manual_seed(0)
    x = _pusht_frames(shared_data)
    tok = FrameTokenizer(channels=(16, 32, 32), latent_dim=8, resolution=(64, 64))  # 16x16 tokens
    untrained = frame_metrics(tok.decode(tok.encode(x)), x)["psnr"].mean()
    # PushT frames are mostly a flat background: a constant mean image already scores ~25 dB
    mean_image = frame_metrics(x.mean(0, keepdim=True).expand_as(x), x)["psnr"].mean()
    opt = torch.optim.Adam(tok.parameters(), lr=2e-3)
    for _ in range(200):
        recon, _ = tok(x)
        loss = (recon - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    psnr = frame_metrics(tok.decode(tok.encode(x)), x)["psnr"].mean()
    assert untrained < 15.0
    msg = f"PSNR {psnr:.2f} dB (untrained {untrained:.2f}, mean image {mean_image:.2f})"
    assert psnr > 27.0, msg
    assert psnr > mean_image + 1.0
