"""Video metrics and rewards on constant frames with hand-computed values (wm.rewards.video)."""
import math

import pytest
import torch

from wm.rewards.frame_metrics import frame_metrics, mae, mse, psnr, ssim
from wm.rewards.video import VideoReward, aggregate_time, discount_weights

H = W = 16


def const(*lead, value):
    return torch.full((*lead, 3, H, W), float(value))


def test_constant_frames_hand_computed():
    pred, target = const(2, value=0.5), const(2, value=0.25)
    torch.testing.assert_close(mae(pred, target), torch.full((2,), 0.25))
    torch.testing.assert_close(mse(pred, target), torch.full((2,), 0.0625))
    torch.testing.assert_close(psnr(pred, target), torch.full((2,), 10 * math.log10(16.0)))
    # constant images: sigma = 0, so SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1), C1 = 0.01^2
    c1 = 1e-4
    expected = (2 * 0.5 * 0.25 + c1) / (0.25 + 0.0625 + c1)  # 0.80006...
    torch.testing.assert_close(ssim(pred, target), torch.full((2,), expected), rtol=1e-5, atol=1e-5)


def test_identical_frames():
    x = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mae(x, x), torch.zeros(2))
    torch.testing.assert_close(psnr(x, x), torch.full((2,), 100.0))  # capped, finite
    torch.testing.assert_close(ssim(x, x), torch.ones(2))


def _clip():
    """B=2, T=3: row 0 errs by 0.1, 0.2, 0.3 per frame, row 1 by 0.4 every frame."""
    target = torch.zeros(2, 3, 3, H, W)
    pred = torch.stack([torch.stack([const(value=v) for v in vals])
                        for vals in ([0.1, 0.2, 0.3], [0.4, 0.4, 0.4])])
    return pred, target


def test_per_frame_shapes_and_chunking():
    pred, target = _clip()
    calls = []

    def fake_lpips(a, b):
        calls.append(a.shape[0])
        return 2 * (a - b).abs().flatten(1).mean(1)

    m = frame_metrics(pred, target, perceptual=fake_lpips, chunk_frames=4)
    assert set(m) == {"mae", "mse", "psnr", "ssim", "lpips"}
    assert all(v.shape == (2, 3) for v in m.values())
    torch.testing.assert_close(m["mae"], torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.4, 0.4]]))
    torch.testing.assert_close(m["lpips"], 2 * m["mae"])
    assert calls == [4, 2]  # 6 frames in chunks of 4


def test_time_aggregations_hand_computed():
    v = torch.tensor([[0.1, 0.2, 0.3]])
    assert aggregate_time(v, "mean").item() == pytest.approx(0.2)
    assert aggregate_time(v, "last").item() == pytest.approx(0.3)
    # gamma 0.5: weights 1, .5, .25 over 1.75
    assert aggregate_time(v, "discounted", 0.5).item() == pytest.approx(0.275 / 1.75)
    torch.testing.assert_close(discount_weights(3, 0.5), torch.tensor([4 / 7, 2 / 7, 1 / 7]))


def test_reward_reference_mae_plus_lpips():
    pred, target = _clip()
    lp = lambda a, b: torch.full((a.shape[0],), 0.05)  # noqa: E731
    out = VideoReward({"mae": 1.0, "lpips": 1.0})(pred, target, perceptual=lp)
    torch.testing.assert_close(out["reward"], torch.tensor([-(0.2 + 0.05), -(0.4 + 0.05)]))
    torch.testing.assert_close(out["mae"], torch.tensor([0.2, 0.4]))
    out = VideoReward({"mae": 1.0}, aggregation="last")(pred, target)
    torch.testing.assert_close(out["reward"], torch.tensor([-0.3, -0.4]))
    out = VideoReward({"mae": 2.0}, aggregation="discounted", gamma=0.5)(pred, target)
    torch.testing.assert_close(out["reward"], torch.tensor([-2 * 0.275 / 1.75, -0.8]))


def test_reward_signs_for_higher_is_better():
    pred, target = const(1, value=0.5), const(1, value=0.25)  # single frames (B, 3, H, W)
    out = VideoReward({"mae": 1.0, "psnr": 0.1})(pred, target)
    assert out["reward"].shape == (1,)
    assert out["reward"].item() == pytest.approx(-0.25 + 0.1 * 10 * math.log10(16.0), rel=1e-5)


def test_repetition_penalty_option():
    pred, target = _clip()
    repeated = torch.tensor([[False, True, True], [False, False, False]])
    out = VideoReward({"mae": 1.0}, repetition_penalty=0.5)(pred, target, repeated=repeated)
    torch.testing.assert_close(out["repetition"], torch.tensor([2 / 3, 0.0]))
    torch.testing.assert_close(out["reward"], torch.tensor([-0.2 - 0.5 * 2 / 3, -0.4]))
    assert "repetition" not in VideoReward({"mae": 1.0})(pred, target)


def test_bad_config_messages():
    with pytest.raises(ValueError, match="ssim"):
        VideoReward({"l1": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        VideoReward({"psnr": -1.0})
    with pytest.raises(ValueError, match="discounted"):
        VideoReward({"mae": 1.0}, aggregation="max")
    pred, target = _clip()
    with pytest.raises(ValueError, match="perceptual"):
        VideoReward({"lpips": 1.0})(pred, target)
    with pytest.raises(ValueError, match="repeated"):
        VideoReward({"mae": 1.0}, repetition_penalty=1.0)(pred, target)
    with pytest.raises(ValueError, match="same shape"):
        mae(pred, target[:, :2])
