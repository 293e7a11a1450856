"""ST-LPIPS (wm/vision/stlpips.py): the wheel's trained weights load strictly, the stored reference
distances are reproduced, identical frames give 0, and the Perceptual backend names it honestly."""
import sys

import numpy as np
import pytest
import torch

import wm.vision.stlpips as stlpips_mod
from wm.vision.perceptual import Perceptual, build_perceptual
from wm.vision.stlpips import MIN_SIZE, NETS, STLPIPS, stlpips_weights_file

REFERENCE = "perceptual/stlpips_reference.npz"


@pytest.fixture(scope="module")
def nets() -> dict:
    torch.set_num_threads(1)
    return {net: STLPIPS(net) for net in NETS}


@pytest.mark.parametrize("net", NETS)
def test_wheel_weights_load_strictly_and_completely(nets, net):
    model = nets[net]
    path = stlpips_weights_file(net)
    assert path.name == f"{net}_shift_tolerant.pth" and path.is_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    ours = model.state_dict()
    assert set(ours) == set(state)  # the same keys as the wheel's file, none left over
    for key, value in state.items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=0, msg=key)
    model.load_state_dict(state, strict=True)
    # the stored blur filters are the [1,2,1] x [1,2,1] / 16 kernel our BlurPool2d builds
    blur = torch.outer(torch.tensor([1.0, 2, 1]), torch.tensor([1.0, 2, 1])) / 16
    filts = [v for k, v in state.items() if k.endswith(".filt")]
    assert len(filts) == (4 if net == "vgg" else 3)
    for f in filts:
        torch.testing.assert_close(f, blur.expand_as(f))
    # frozen, always in eval mode
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training
    # the wheel's package (which imports torchvision) is only located, never imported
    assert "stlpips_pytorch" not in sys.modules


@pytest.mark.parametrize("net", NETS)
def test_reproduces_stlpips_package_reference(nets, net, shared_data):
    path = shared_data / REFERENCE
    if not path.is_file():
        pytest.skip(f"ST-LPIPS reference distances not found at {path}")
    ref = np.load(path)
    assert ref["real_a"].shape == (6, 3, 96, 96) and ref["rand_a"].shape == (4, 3, 64, 64)
    pairs = {"real": ("real_a", "real_b"), "rand": ("rand_a", "rand_b"),
             "self": ("real_a", "real_a")}
    with torch.no_grad():
        for name, (ka, kb) in pairs.items():
            got = nets[net](torch.from_numpy(ref[ka]), torch.from_numpy(ref[kb])).numpy()
            want = ref[f"{net}_{name}"]
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=f"{net}_{name}")
    assert (ref[f"{net}_real"] > 1e-3).all()  # the comparison is not between zeros


@pytest.mark.parametrize("net", NETS)
def test_identical_frames_zero_different_positive_and_gradients_flow(nets, net):
    torch.manual_seed(0)
    a, b = torch.rand(3, 3, 40, 48), torch.rand(3, 3, 40, 48)
    model = nets[net]
    d_same = model(a, a.clone())
    assert d_same.shape == (3,) and d_same.abs().max() < 1e-7
    d_diff = model(a, b)
    assert (d_diff > 1e-3).all()
    x = a.clone().requires_grad_(True)
    model(x, b).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # on smooth frames a one-pixel shift is far closer than an unrelated frame (the metric's point)
    s, t = torch.nn.functional.interpolate(torch.rand(6, 3, 10, 12), size=(40, 48),
                                           mode="bilinear").chunk(2)
    assert (model(s, torch.roll(s, shifts=1, dims=-1)) * 3 < model(s, t)).all()


def test_input_checks(nets):
    small = torch.rand(1, 3, MIN_SIZE["vgg"] - 1, 64)
    with pytest.raises(ValueError, match="at least 18x18"):
        nets["vgg"](small, small)
    ok = torch.rand(1, 3, MIN_SIZE["alex"], MIN_SIZE["alex"])
    assert nets["alex"](ok, ok).shape == (1,)
    with pytest.raises(ValueError, match="one shape"):
        nets["vgg"](torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 40))
    with pytest.raises(ValueError, match="vgg"):
        STLPIPS("squeeze")


def test_build_perceptual_stlpips_backend(nets):
    # the keys conf/task/video.yaml passes, with the backend switched
    p = build_perceptual(backend="stlpips", allow_random_backbone=False)
    assert isinstance(p, Perceptual) and p.backend == "stlpips"
    assert "ST-LPIPS (shift-tolerant, VGG)" in p.description
    assert "not the paper's LPIPS-VGG" in p.description
    assert not p.training and not any(q.requires_grad for q in p.parameters())
    torch.manual_seed(1)
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    # Perceptual takes [0, 1] frames, like the other backends, and hands them on unscaled
    torch.testing.assert_close(p(a, b), nets["vgg"](a, b), rtol=0, atol=0)
    alex = build_perceptual(backend="stlpips", net="alex")
    assert "ST-LPIPS (shift-tolerant, AlexNet)" in alex.description
    with pytest.raises(ValueError, match="backend='native'"):
        Perceptual(backend="stlpips", backbone_weights="vgg16.pth")


@pytest.mark.parametrize("package_dir", ["empty", "absent"])
def test_missing_weight_file_gives_clear_error(monkeypatch, tmp_path, package_dir):
    found = tmp_path if package_dir == "empty" else None
    monkeypatch.setattr(stlpips_mod, "stlpips_package_dir", lambda: found)
    with pytest.raises(FileNotFoundError,
                       match=r"vgg_shift_tolerant\.pth.*pip install -r requirements\.txt"):
        stlpips_weights_file("vgg")
    with pytest.raises(FileNotFoundError, match=r"alex_shift_tolerant\.pth"):
        build_perceptual(backend="stlpips", net="alex")
