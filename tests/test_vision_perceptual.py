"""Perceptual (LPIPS) wrapper: never silently random, zero on identical inputs, loadable weights."""
import logging

import pytest
import torch

import wm.vision.perceptual as perceptual_mod
from wm.vision.perceptual import NativeLPIPS, Perceptual, build_perceptual, vgg16_features


@pytest.fixture(autouse=True)
def _no_cached_backbone(monkeypatch, tmp_path):
    # never pick up a real torch-hub VGG16 from the user's cache: tests must be deterministic
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


def test_native_without_weights_raises_clear_error():
    with pytest.raises(RuntimeError, match="allow_random_backbone"):
        Perceptual(backend="native")


def test_auto_falls_back_to_native_and_still_refuses_random(monkeypatch):
    monkeypatch.setattr(perceptual_mod, "_lpips_importable", lambda: False)
    with pytest.raises(RuntimeError, match="backbone_weights"):
        Perceptual(backend="auto")


def test_lpips_backend_without_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "lpips", None)  # import lpips -> ImportError
    with pytest.raises(ImportError, match="torchvision"):
        Perceptual(backend="lpips")


def test_random_backbone_when_allowed_warns_once(caplog, monkeypatch):
    monkeypatch.setattr(perceptual_mod, "_warned_random", False)
    with caplog.at_level(logging.WARNING, logger="wm.vision.perceptual"):
        p = Perceptual(backend="native", allow_random_backbone=True)
        Perceptual(backend="native", allow_random_backbone=True)
    assert sum("RANDOM" in r.message for r in caplog.records) == 1
    assert "RANDOM backbone" in p.description
    assert not p.training and not any(q.requires_grad for q in p.parameters())
    p.train()
    assert not p.training  # stays in eval mode


def test_distance_zero_for_identical_positive_for_different():
    torch.manual_seed(0)
    p = Perceptual(backend="native", allow_random_backbone=True)
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    d_same, d_diff = p(a, a), p(a, b)
    assert d_same.shape == (2,) and torch.allclose(d_same, torch.zeros(2), atol=1e-6)
    assert (d_diff > 0).all()
    # gradients reach the inputs although the network is frozen
    x = a.clone().requires_grad_(True)
    p(x, b).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_backbone_and_head_weights_are_loaded(tmp_path):
    torch.manual_seed(1)
    feats = vgg16_features()
    # torchvision's file holds the whole model: features.* plus classifier.*
    state = {f"features.{k}": v for k, v in feats.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "vgg16.pth")
    widths = (64, 128, 256, 512, 512)
    heads = {f"lin{k}.model.1.weight": torch.full((1, c, 1, 1), 0.5) for k, c in enumerate(widths)}
    torch.save(heads, tmp_path / "heads.pth")
    p = Perceptual(backend="native", backbone_weights=str(tmp_path / "vgg16.pth"),
                   head_weights=str(tmp_path / "heads.pth"))
    assert "vgg16.pth" in p.description and "LPIPS v0.1 heads" in p.description
    torch.testing.assert_close(p.net.features[28].weight, feats[28].weight)
    assert float(p.net.heads[2].weight[0, 0]) == 0.5


def test_native_matches_hand_computed_lpips_formula():
    torch.manual_seed(2)
    net = NativeLPIPS().eval()
    a, b = torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    xa, xb = (a - shift) / scale, (b - shift) / scale
    expected = 0.0
    taps = {3: 0, 8: 1, 15: 2, 22: 3, 29: 4}
    for i, layer in enumerate(net.features[:30]):
        xa, xb = layer(xa), layer(xb)
        if i in taps:
            na = xa / (xa.norm(dim=1, keepdim=True) + 1e-10)
            nb = xb / (xb.norm(dim=1, keepdim=True) + 1e-10)
            w = net.heads[taps[i]].weight.view(1, -1, 1, 1)
            expected = expected + ((na - nb) ** 2 * w).sum(1).mean()
    torch.testing.assert_close(net(a, b), expected.reshape(1))


def test_build_perceptual_none_and_bad_options():
    assert build_perceptual(backend="none") is None
    with pytest.raises(ValueError, match="backend"):
        Perceptual(backend="alex")
    with pytest.raises(ValueError, match="only 'vgg'"):
        Perceptual(backend="native", net="alex", allow_random_backbone=True)


# ------------------------------------------------------- issue #27: bf16 / channels_last option
#: largest |bf16 - fp32| ST-LPIPS distance allowed on PushT 64x64 frames (docs/metrics.md,
#: "Perceptual precision": measured 7e-4 (AlexNet), 4e-3 (VGG) by bench/bench_perceptual.py)
BF16_TOLERANCE = {"alex": 2e-3, "vgg": 8e-3}


@pytest.fixture(scope="module")
def pusht_frames():
    """3 PushT prompts x 8 samples around the true next frame (bench_perceptual's frames)."""
    pytest.importorskip("gym_pusht")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.bench_perceptual import pusht_groups

    return pusht_groups(prompts=3, group=8, size=64)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_bf16_channels_last_stays_within_its_tolerance_on_pusht(pusht_frames, net):
    from wm.rewards.frame_metrics import lpips

    pred, target = pusht_frames
    fp32 = Perceptual(backend="stlpips", net=net)
    bf16 = build_perceptual(backend="stlpips", net=net, dtype="bf16")
    conv = bf16.net.net.slice1[0].weight
    assert conv.dtype == torch.bfloat16 and conv.is_contiguous(memory_format=torch.channels_last)
    assert bf16.net.lin0.model[1].weight.dtype == torch.float32       # heads stay float32
    assert "bf16 channels_last" in bf16.description
    with torch.no_grad():
        exact, fast = lpips(pred, target, fp32), lpips(pred, target, bf16)
    assert fast.dtype == torch.float32
    assert (fast - exact).abs().max() <= BF16_TOLERANCE[net]
    assert (fast - exact).abs().max() > 0                                # it is another path
    assert fp32.net.net.slice1[0].weight.dtype == torch.float32          # default: exact
    x = pred[:2].clone().requires_grad_(True)                           # still a loss
    bf16(x, target[:2]).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bf16_native_backend_and_refusals(monkeypatch):
    torch.manual_seed(0)
    fp32 = Perceptual(backend="native", allow_random_backbone=True)
    bf16 = Perceptual(backend="native", allow_random_backbone=True, dtype="bf16")
    bf16.load_state_dict(fp32.state_dict())                             # same weights, cast
    assert bf16.net.features[0].weight.dtype == torch.bfloat16
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(bf16(a, b), fp32(a, b), rtol=0.05, atol=2e-3)
    with pytest.raises(ValueError, match="data.task.perceptual.dtype"):
        Perceptual(backend="native", allow_random_backbone=True, dtype="fp16")
    monkeypatch.setattr(Perceptual, "_build_lpips", staticmethod(lambda net: torch.nn.Identity()))
    with pytest.raises(ValueError, match="backend 'stlpips' or 'native'"):
        Perceptual(backend="lpips", dtype="bf16")


def test_target_features_reuse_matches_pairs_for_every_backend(monkeypatch):
    """``distance_to_features`` equals the pair call (the lpips package's net gets the frames)."""
    torch.manual_seed(0)
    native = Perceptual(backend="native", allow_random_backbone=True)
    targets = torch.rand(2, 3, 32, 32)
    index = torch.tensor([1, 0, 1, 1])
    pred = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        got = native.distance_to_features(pred, native.target_features(targets), index)
        torch.testing.assert_close(got, native(pred, targets[index]), rtol=0, atol=1e-6)
    pairs = []
    fake = Perceptual.__new__(Perceptual)
    torch.nn.Module.__init__(fake)
    fake.backend = "lpips"
    fake.net = lambda a, b: pairs.append(len(a)) or (a - b).abs().flatten(1).mean(1)
    got = fake.distance_to_features(pred, fake.target_features(targets), index)
    torch.testing.assert_close(got, 2 * (pred - targets[index]).abs().flatten(1).mean(1))
    assert pairs == [4]
