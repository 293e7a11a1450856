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


# ---------------------------------------------------- issue #27: each true frame's features once
def _grouped(B=3, G=4, T=2, size=24, seed=0):
    """GRPO's layout: B truths (B, T, 3, h, w) repeated G times, G noisy samples of each."""
    gen = torch.Generator().manual_seed(seed)
    truth = torch.rand(B, T, 3, size, size, generator=gen)
    target = truth.repeat_interleave(G, dim=0)                          # (B*G, T, 3, h, w)
    pred = (target + 0.2 * torch.randn(target.shape, generator=gen)).clamp(0, 1)
    return pred, target


@pytest.fixture(scope="module")
def alex():
    from wm.vision.perceptual import Perceptual

    return Perceptual(backend="stlpips", net="alex")


def _count_feature_frames(monkeypatch, perceptual) -> list[int]:
    """Batch sizes of every pass through the network's feature stack."""
    seen, inner = [], perceptual.net.features

    def counting(x):
        seen.append(x.shape[0])
        return inner(x)

    monkeypatch.setattr(perceptual.net, "features", counting)
    return seen


@pytest.mark.parametrize("chunk", [256, 5, 3])
def test_perceptual_reward_computes_each_truth_once_and_is_exact(alex, monkeypatch, chunk):
    """GRPO scores G samples against one true frame: the truth's ST-LPIPS features are computed
    once per distinct target (B*T of them), not once per sample (B*G*T), and the distances equal
    the per-pair computation's (1e-6), whatever the chunking."""
    from wm.rewards.frame_metrics import lpips

    B, G, T = 3, 4, 2
    pred, target = _grouped(B, G, T)
    flat = (-1, 3, *pred.shape[-2:])
    with torch.no_grad():
        pairs = alex(pred.reshape(flat), target.reshape(flat)).reshape(B * G, T)
    seen = _count_feature_frames(monkeypatch, alex)
    got = frame_metrics(pred, target, perceptual=alex, names=("lpips",), chunk_frames=chunk)
    torch.testing.assert_close(got["lpips"], pairs, rtol=0, atol=1e-6)
    assert sum(seen) == B * G * T + B * T          # every sample once, every truth once
    assert max(seen) <= max(chunk, 1)
    reward = VideoReward({"mae": 1.0, "lpips": 1.0}, chunk_frames=chunk)
    torch.testing.assert_close(reward(pred, target, perceptual=alex)["reward"],
                               -(mae(pred, target) + pairs).mean(1), rtol=0, atol=1e-6)
    seen.clear()
    direct = lpips(pred, target, alex)                             # (B*G, T), one chunk
    torch.testing.assert_close(direct, pairs, rtol=0, atol=1e-6)
    assert sorted(seen) == [B * T, B * G * T]


def test_distinct_frames_groups_equal_frames_wherever_they_are():
    from wm.rewards.frame_metrics import distinct_frames

    gen = torch.Generator().manual_seed(1)
    base = torch.rand(4, 3, 8, 8, generator=gen)
    order = torch.tensor([2, 0, 2, 3, 1, 0, 2, 3, 3])                  # repeats apart
    frames = base[order]
    distinct, index = distinct_frames(frames)
    assert distinct.shape == (4, 3, 8, 8) and index.shape == (9,)
    assert torch.equal(distinct[index], frames)
    near = frames.clone()
    near[3, 0, 0, 0] += 1e-6                        # one copy of base[3] differs: its own
    distinct, index = distinct_frames(near)
    assert len(distinct) == 5 and torch.equal(distinct[index], near)


def test_distinct_frames_survives_a_key_collision(monkeypatch):
    """Frames whose grouping keys collide are told apart by the exact check."""
    from wm.rewards import frame_metrics as fm

    frames = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    frames[3] = frames[0]
    real_unique = torch.unique

    def colliding(x, *a, **k):                                        # every key the same
        if x.ndim == 1:
            return real_unique(torch.zeros_like(x), *a, **k)
        return real_unique(x, *a, **k)

    monkeypatch.setattr(fm.torch, "unique", colliding)
    distinct, index = fm.distinct_frames(frames)
    assert len(distinct) == 5 and torch.equal(distinct[index], frames)
