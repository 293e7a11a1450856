"""LPIPS perceptual distance with a dependency-free fallback.

The reference trains the tokenizer with 1.0 x LPIPS(VGG) and scores world models with LPIPS(VGG)
(shared/REFERENCE.md "Video world model"; Zhang et al. 2018, "The Unreasonable Effectiveness of
Deep Features as a Perceptual Metric"). The ``lpips`` package is the implementation of record
and is used wherever it works. It imports torchvision and downloads ImageNet backbone weights,
neither of which is possible on the CPU build machines, so a second backend re-implements the
same network with plain torch.

Backends (``Perceptual(backend=...)``):

- ``"lpips"``: ``lpips.LPIPS(net=net)`` (pretrained heads and backbone). Import failure raises an
  error telling how to install ``torchvision`` + ``lpips``.
- ``"native"``: our VGG16 feature stack with exactly the layer indices of torchvision's
  ``vgg16().features`` (taps after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3), LPIPS v0.1's
  scaling layer, channel-unit normalisation, squared difference, 1x1 linear heads, spatial mean,
  sum over the five taps. Weights:
    * backbone: ``backbone_weights`` (a path to torchvision's ``vgg16-397923af.pth`` or any state
      dict with ``features.N.*`` or ``N.*`` keys); if None, torch hub's cache
      ``<torch.hub.get_dir()>/checkpoints/vgg16-397923af.pth`` is used when present. With no
      weights at all, construction raises unless ``allow_random_backbone=True``, which logs a
      warning once; a random backbone is *never* used silently. ``description`` says which.
    * linear heads: ``weights/v0.1/<net>.pth`` read from the installed lpips package's folder
      (located with ``importlib.util.find_spec`` without importing lpips, whose import needs
      torchvision), or ``head_weights`` if given. If neither exists the heads are uniform
      (weight 1/C per channel, i.e. a channel mean per tap), which is a departure from LPIPS and
      is named in ``description``.
  With the real backbone and heads the native backend computes the same function as
  ``lpips.LPIPS(net="vgg")`` (dropout is inactive in eval mode).
- ``"stlpips"``: a *different* trained metric, ST-LPIPS (shift-tolerant LPIPS, Ghildyal & Liu
  2022) with ``net="vgg"`` (default) or ``"alex"``: ``wm.vision.stlpips.STLPIPS``, plain torch, its
  trained weights read from the ``stlpips-pytorch`` wheel (in requirements.txt). It is NOT the
  paper's LPIPS-VGG; it is the only trained perceptual network available offline on CPU.
  ``description`` says "ST-LPIPS (shift-tolerant, VGG)" (or AlexNet). A missing weight file raises.
- ``"auto"``: ``"lpips"`` if ``import lpips`` succeeds, else ``"native"`` (never ``"stlpips"``).

Only ``net="vgg"`` exists in the native backend (the reference's choice); AlexNet/SqueezeNet
need the lpips package (or ``backend="stlpips", net="alex"`` for the shift-tolerant AlexNet).

The module is frozen: eval mode and ``requires_grad_(False)`` on its parameters; gradients still
flow to the *inputs*, which is what a perceptual training loss needs.

Feature reuse (issue #27): ``target_features(targets)`` computes the unit-length features of K
true frames once and ``distance_to_features(pred, features, index)`` compares M predictions with
them, equal to the pair call; ``wm.rewards.frame_metrics.lpips`` uses it, so GRPO's G samples of
a prompt share one pass of its true frame (the lpips package's network gets pairs, as before).

Precision (``dtype``): ``"fp32"`` (default, exact) or ``"bf16"``: the backbone's weights and
activations in bfloat16 and channels_last (ours, for speed; stlpips and native backends only),
the scaling, unit normalisation and heads in float32. On PushT 64x64 frames it moves ST-LPIPS
distances by up to ~7e-4 (AlexNet) / ~4e-3 (VGG), the tolerance tested being 2e-3 / 8e-3
(docs/metrics.md, "Perceptual precision"; ``bench/bench_perceptual.py``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from wm.vision.lpips_native import (VGG16_TORCHVISION_FILE, NativeLPIPS, _default_backbone_file,
                                    lpips_package_dir, vgg16_features)  # noqa: F401 (re-exported)
from wm.vision.stlpips import NET_NAMES as STLPIPS_NET_NAMES
from wm.vision.stlpips import STLPIPS

log = logging.getLogger(__name__)

#: ``Perceptual(dtype=...)``: the backbone's compute dtype (module docstring, "Precision")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
_INSTALL_HINT = (
    "install torchvision and lpips matching your torch build (e.g. "
    "`pip install -r requirements.txt torchvision lpips` on a machine with a CUDA torch), "
    "or use backend='native'"
)
_warned_random = False


class Perceptual(nn.Module):
    """Frozen LPIPS distance: ``forward(pred, target)`` with (B,3,H,W) in [0,1] -> (B,).

    Args:
        backend: ``"auto"`` | ``"lpips"`` | ``"native"`` | ``"stlpips"`` (module docstring).
        net: backbone; ``"vgg"`` (native supports only this; stlpips also ``"alex"``).
        backbone_weights: native only: path to VGG16 weights (torchvision's file works).
        allow_random_backbone: native only: permit a randomly initialised backbone (tests,
            smoke runs); a warning is logged once. Ignored by stlpips (always trained).
        head_weights: native only: path to lpips' ``weights/v0.1/vgg.pth`` if the lpips
            package is not installed.
        dtype: ``"fp32"`` (default, exact) or ``"bf16"``: the backbone's weights and activations
            in bfloat16 and channels_last (the input scaling, unit normalisation and heads stay
            float32); backends stlpips and native (module docstring, "Precision").
    """

    def __init__(self, backend: str = "auto", net: str = "vgg", backbone_weights: str | None = None,
                 allow_random_backbone: bool = False, head_weights: str | None = None,
                 dtype: str = "fp32"):
        super().__init__()
        if backend not in ("auto", "lpips", "native", "stlpips"):
            raise ValueError(f"perceptual backend={backend!r}: choose 'auto', 'lpips', 'native', "
                             "'stlpips' (or 'none' in build_perceptual)")
        if dtype not in DTYPES:
            raise ValueError(f"perceptual dtype={dtype!r}: choose one of {sorted(DTYPES)} "
                             "(data.task.perceptual.dtype)")
        if backend == "auto":
            backend = "lpips" if _lpips_importable() else "native"
        self.backend = backend
        if backend == "lpips":
            self.net = self._build_lpips(net)
            self.description = f"lpips package ({net}, pretrained)"
        elif backend == "stlpips":
            if backbone_weights or head_weights:
                raise ValueError("perceptual backend='stlpips' reads its own trained weights; "
                                 "backbone_weights/head_weights are for backend='native'")
            self.net = STLPIPS(net=net)
            self.description = (f"ST-LPIPS (shift-tolerant, {STLPIPS_NET_NAMES[net]}), trained "
                                f"weights {self.net.weights_file.name}; not the paper's LPIPS-VGG")
        else:
            self.net, self.description = self._build_native(
                net, backbone_weights, allow_random_backbone, head_weights)
        self.compute_dtype = dtype
        if dtype != "fp32":
            if backend == "lpips":
                raise ValueError(f"perceptual dtype={dtype!r} needs backend 'stlpips' or 'native' "
                                 "(the lpips package's network runs in float32): drop "
                                 "data.task.perceptual.dtype or change the backend")
            self.net.set_compute(DTYPES[dtype], channels_last=True)
            self.description += f", backbone in {dtype} channels_last"
        self.eval()
        self.requires_grad_(False)

    @property
    def metric_name(self) -> str:
        """The name its distances are published under: ``stlpips`` for ST-LPIPS (not comparable
        with the paper's LPIPS numbers), ``lpips`` otherwise."""
        return "stlpips" if self.backend == "stlpips" else "lpips"

    @staticmethod
    def _build_lpips(net: str) -> nn.Module:
        try:
            import lpips
        except Exception as err:  # torchvision import errors are RuntimeErrors, not ImportErrors
            raise ImportError("perceptual backend='lpips' needs the lpips package, which failed "
                              f"to import ({err}); {_INSTALL_HINT}") from err
        return lpips.LPIPS(net=net, verbose=False)

    @staticmethod
    def _build_native(net, backbone_weights, allow_random_backbone, head_weights):
        """-> (NativeLPIPS, description)."""
        global _warned_random
        if net != "vgg":
            raise ValueError(f"perceptual net={net!r}: the native backend implements only 'vgg'; "
                             f"use backend='lpips' for {net}")
        model = NativeLPIPS()
        backbone = Path(backbone_weights) if backbone_weights else _default_backbone_file()
        if backbone_weights and not backbone.is_file():
            raise FileNotFoundError(f"perceptual backbone_weights={backbone_weights} "
                                    "does not exist")
        if backbone is not None:
            model.load_backbone(backbone)
            backbone_desc = f"backbone {backbone.name}"
        elif allow_random_backbone:
            if not _warned_random:
                log.warning("Perceptual: native VGG16 with a RANDOM backbone; LPIPS values "
                            "are not comparable to the paper's")
                _warned_random = True
            backbone_desc = "RANDOM backbone"
        else:
            raise RuntimeError(
                "perceptual backend='native' has no VGG16 backbone weights: pass "
                f"backbone_weights=<path to torchvision's {VGG16_TORCHVISION_FILE}> (download it "
                "once on a machine with internet, e.g. "
                "`torchvision.models.vgg16(weights='DEFAULT')`, which caches it under "
                "~/.cache/torch/hub/checkpoints, where it is found automatically), "
                "or set allow_random_backbone=true for smoke tests only"
            )
        pkg = lpips_package_dir()
        packaged = pkg / "weights" / "v0.1" / "vgg.pth" if pkg else None
        heads = Path(head_weights) if head_weights else packaged
        if heads is not None and heads.is_file():
            model.load_heads(heads)
            heads_desc = "LPIPS v0.1 heads"
        elif head_weights:
            raise FileNotFoundError(f"perceptual head_weights={head_weights} does not exist")
        else:
            heads_desc = "uniform heads (lpips package not found)"
        return model, f"native VGG16 with {backbone_desc}, {heads_desc}"

    def train(self, mode: bool = True) -> "Perceptual":
        return super().train(False)  # always eval: no dropout, frozen statistics

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.ndim != 4:
            raise ValueError("Perceptual expects two (B,3,H,W) tensors of one shape, got "
                             f"{tuple(pred.shape)} and {tuple(target.shape)}")
        if self.backend == "stlpips":
            return self.net(pred, target)  # STLPIPS takes [0,1] and scales itself
        a, b = pred * 2.0 - 1.0, target * 2.0 - 1.0  # [0,1] -> [-1,1]
        return self.net(a, b).reshape(pred.shape[0])  # lpips returns (B,1,1,1)

    def target_features(self, targets: torch.Tensor) -> list[torch.Tensor]:
        """Distinct true frames (K,3,H,W) in [0, 1] -> what ``distance_to_features`` compares
        predictions with: their unit-length taps (stlpips, native), computed once however many
        samples are scored against them; the frames themselves for the lpips package."""
        if targets.ndim != 4 or targets.shape[1] != 3:
            raise ValueError(f"Perceptual expects (K,3,H,W) target frames, got "
                             f"{tuple(targets.shape)}")
        if self.backend == "lpips":
            return [targets]
        return self.net.unit_features(self._net_input(targets))

    def distance_to_features(self, pred: torch.Tensor, features: list[torch.Tensor],
                             index: torch.Tensor) -> torch.Tensor:
        """pred (M,3,H,W) in [0, 1]; ``features`` of K targets (``target_features``); index
        (M,) int64 in [0, K): the distance of pred[i] to target index[i] -> (M,). Equal to
        ``self(pred, targets[index])`` (up to float rounding of the batch sizes)."""
        if self.backend == "lpips":
            return self(pred, features[0][index])
        fx = self.net.unit_features(self._net_input(pred))
        return self.net.compare(fx, [f.index_select(0, index) for f in features])

    def _net_input(self, frames: torch.Tensor) -> torch.Tensor:
        """[0, 1] frames -> what the network takes (ST-LPIPS scales itself, VGG LPIPS [-1, 1])."""
        return frames if self.backend == "stlpips" else frames * 2.0 - 1.0


def _lpips_importable() -> bool:
    if lpips_package_dir() is None:
        return False
    try:
        import lpips  # noqa: F401
    except Exception:  # a broken torchvision raises RuntimeError at import
        return False
    return True


def build_perceptual(backend: str = "auto", **cfg) -> Perceptual | None:
    """Hydra-friendly factory: ``backend="none"`` -> None (no perceptual loss/metric)."""
    if backend in ("none", None):
        return None
    return Perceptual(backend=backend, **cfg)
