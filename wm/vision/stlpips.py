"""Shift-tolerant LPIPS (ST-LPIPS): a trained perceptual distance that runs offline on CPU.

One job: compute the ST-LPIPS distance of Ghildyal & Liu 2022 ("Shift-tolerant Perceptual
Similarity Metric", ECCV) with the trained networks shipped in the ``stlpips-pytorch==0.0.2``
wheel, in plain torch. The wheel's package (``stlpips_pytorch``) is never imported (it imports
torchvision, IPython and torchsummary); only its weight files are read, located with
``importlib.util.find_spec``:
``stlpips_pytorch/weights/vST0.0/{vgg,alex}_shift_tolerant.pth`` (BSD-2, the wheel's licence).

This is NOT the paper's metric. RLVR-World scores and trains with LPIPS-VGG (Zhang et al. 2018),
whose ImageNet backbone cannot be downloaded on the CPU machines; ST-LPIPS is the only trained
perceptual network reachable offline, so it is offered as ``Perceptual(backend="stlpips")``
under its own name. Its values are not comparable with LPIPS numbers in the paper.

Architecture (the wheel's ``variant="shift_tolerant"``; both nets share the LPIPS v0.1 head):

- inputs ``x, y`` (B,3,H,W) in [0, 1] -> ``2x - 1`` in [-1, 1] -> LPIPS scaling layer
  ``(x - shift) / scale`` (shift, scale read from the weight file);
- anti-aliased backbone. Every stride-2 step is replaced by a stride-1 operation followed by a
  blur-pool: reflection padding of 2 on every side (more than the usual 1), a depthwise
  ``[1,2,1] x [1,2,1] / 16`` filter, stride 2. Maps therefore come out slightly larger than
  halves (taps at 64, 33, 17, 9, 5 for a 64x64 VGG input; AlexNet 30, 15, 8, 8, 8).
    * ``vgg``: VGG16 configuration D, 3x3 convs (zero padding 1) + ReLU; each 2x2/2 max-pool becomes
      max-pool 2x2/1 + blur-pool. Taps after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
      (64, 128, 256, 512, 512 channels); the final pool is not used.
    * ``alex``: AlexNet with conv1 11x11 at stride 1 (stride 4 in AlexNet; zero padding 2)
      followed by one blur-pool *before* its ReLU, so tap 1 is at 1/2, not 1/4, resolution;
      each 3x3/2 max-pool becomes max-pool 3x3/1 + blur-pool; taps after the five ReLUs
      (64, 192, 384, 256, 256 channels).
- per tap: unit length over channels (``f / (||f|| + 1e-10)``), squared difference of the two
  images, a 1x1 linear head without bias (trained weights are >= 0), mean over H, W; sum of the
  five.

Output: (B,) distances, 0 for identical inputs. Minimum input size: 18x18 (vgg), 21x21 (alex);
below it a reflection pad would exceed its feature map (checked, with a clear error).

The module is frozen (eval mode, ``requires_grad_(False)``); gradients still flow to the inputs.
``unit_features`` / ``compare`` split ``forward`` so that a true frame's features serve all the
samples scored against it (``wm.vision.perceptual``); ``set_compute`` runs the backbone in
bfloat16 / channels_last (``Perceptual(dtype="bf16")``, ours, not in the wheel).
"""
from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

PACKAGE = "stlpips_pytorch"          # import name of the stlpips-pytorch==0.0.2 wheel
WEIGHTS_SUBDIR = Path("weights") / "vST0.0"
NETS = ("vgg", "alex")
NET_NAMES = {"vgg": "VGG", "alex": "AlexNet"}
MIN_SIZE = {"vgg": 18, "alex": 21}   # smallest H, W whose reflection pads fit

# Layer programs, in the wheel's order (the order fixes the state-dict indices).
#   ("conv", c_out, kernel, stride, padding)  ("relu",)  ("max", kernel)  ("blur",)  ("tap",)
# "max" is stride 1; "blur" is the blur-pool (reflect pad 2, [1,2,1]^2/16, stride 2); "tap" ends a
# slice, its output is a compared feature map.
_VGG_PROGRAM = (
    ("conv", 64, 3, 1, 1), ("relu",), ("conv", 64, 3, 1, 1), ("relu",), ("tap",),
    ("max", 2), ("blur",), ("conv", 128, 3, 1, 1), ("relu",), ("conv", 128, 3, 1, 1), ("relu",),
    ("tap",),
    ("max", 2), ("blur",), ("conv", 256, 3, 1, 1), ("relu",), ("conv", 256, 3, 1, 1), ("relu",),
    ("conv", 256, 3, 1, 1), ("relu",), ("tap",),
    ("max", 2), ("blur",), ("conv", 512, 3, 1, 1), ("relu",), ("conv", 512, 3, 1, 1), ("relu",),
    ("conv", 512, 3, 1, 1), ("relu",), ("tap",),
    ("max", 2), ("blur",), ("conv", 512, 3, 1, 1), ("relu",), ("conv", 512, 3, 1, 1), ("relu",),
    ("conv", 512, 3, 1, 1), ("relu",), ("tap",),
)
_ALEX_PROGRAM = (
    ("conv", 64, 11, 1, 2), ("blur",), ("relu",), ("tap",),
    ("max", 3), ("blur",), ("conv", 192, 5, 1, 2), ("relu",), ("tap",),
    ("max", 3), ("blur",), ("conv", 384, 3, 1, 1), ("relu",), ("tap",),
    ("conv", 256, 3, 1, 1), ("relu",), ("tap",),
    ("conv", 256, 3, 1, 1), ("relu",), ("tap",),
)
_PROGRAMS = {"vgg": _VGG_PROGRAM, "alex": _ALEX_PROGRAM}


def stlpips_package_dir() -> Path | None:
    """Folder of the installed ``stlpips_pytorch`` package, found without importing it (or None)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def stlpips_weights_file(net: str) -> Path:
    """Path of the wheel's trained ST-LPIPS state dict for ``net`` ("vgg" | "alex")."""
    if net not in NETS:
        raise ValueError(f"ST-LPIPS net={net!r}: choose one of {NETS}")
    rel = WEIGHTS_SUBDIR / f"{net}_shift_tolerant.pth"
    pkg = stlpips_package_dir()
    path = (pkg / rel) if pkg is not None else Path(PACKAGE) / rel
    if pkg is None or not path.is_file():
        raise FileNotFoundError(f"ST-LPIPS weights {path} not found (shipped by the wheel "
                                "stlpips-pytorch==0.0.2): run `pip install -r requirements.txt`")
    return path


class BlurPool2d(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect pad 2, depthwise [1,2,1]x[1,2,1]/16, stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps) / 16.0
        self.register_buffer("filt", kernel.expand(channels, 1, 3, 3).clone())  # loaded, persistent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (2, 2, 2, 2), mode="reflect")
        return F.conv2d(x, self.filt, stride=2, groups=x.shape[1])


class _ScalingLayer(nn.Module):
    """LPIPS v0.1 input normalisation ``(x - shift) / scale`` for inputs in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.zeros(1, 3, 1, 1))
        self.register_buffer("scale", torch.ones(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class _Head(nn.Module):
    """1x1 linear head without bias; slot ``model.0`` is the wheel's dropout (inactive here)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _build_backbone(program) -> tuple[nn.Module, list[int]]:
    """-> (module with ``slice1..slice5`` Sequentials, channels at each tap)."""
    backbone = nn.Module()
    slices, current, widths = [], OrderedDict(), []
    c_in, index = 3, 0
    for op in program:
        kind = op[0]
        if kind == "tap":
            slices.append(nn.Sequential(current))
            widths.append(c_in)
            current = OrderedDict()
            continue
        if kind == "conv":
            _, c_out, k, stride, pad = op
            layer = nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad)
            c_in = c_out
        elif kind == "relu":
            layer = nn.ReLU()
        elif kind == "max":
            layer = nn.MaxPool2d(op[1], stride=1)
        elif kind == "blur":
            layer = BlurPool2d(c_in)
        else:  # pragma: no cover - programs are constants above
            raise ValueError(kind)
        current[str(index)] = layer
        index += 1
    for i, sl in enumerate(slices, start=1):
        backbone.add_module(f"slice{i}", sl)
    return backbone, widths


class STLPIPS(nn.Module):
    """Trained ST-LPIPS distance: ``forward(x, y)`` with (B,3,H,W) in [0, 1] -> (B,).

    Args:
        net: ``"vgg"`` (default) or ``"alex"``.
    """

    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in NETS:
            raise ValueError(f"ST-LPIPS net={net!r}: choose one of {NETS}")
        self.net_name = net
        self.scaling_layer = _ScalingLayer()
        self.net, widths = _build_backbone(_PROGRAMS[net])
        for k, c in enumerate(widths):
            self.add_module(f"lin{k}", _Head(c))
        self.n_taps = len(widths)
        self.weights_file = stlpips_weights_file(net)
        state = torch.load(self.weights_file, map_location="cpu", weights_only=True)
        self.load_state_dict(state, strict=True)
        self.eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> "STLPIPS":
        return super().train(False)  # always eval

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five tapped feature maps of ``x`` already scaled to [-1, 1]; they come out in the
        backbone's dtype (``x`` is cast to it and to its memory format: ``set_compute``)."""
        h = self.scaling_layer(x)
        weight, fmt = self.net.slice1[0].weight, memory_format_of(self.net.slice1[0].weight)
        if h.dtype != weight.dtype or fmt == torch.channels_last:
            h = h.to(weight.dtype).contiguous(memory_format=fmt)
        taps = []
        for k in range(1, self.n_taps + 1):
            h = getattr(self.net, f"slice{k}")(h)
            taps.append(h)
        return taps

    def set_compute(self, dtype: torch.dtype = torch.float32, channels_last: bool = False
                    ) -> "STLPIPS":
        """Run the backbone in ``dtype`` and memory format (the scaling layer, the unit
        normalisation and the linear heads stay float32); ``wm.vision.perceptual`` measures it."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.net.to(dtype=dtype, memory_format=fmt)
        return self

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"STLPIPS expects (B,3,H,W) frames, got {tuple(x.shape)}")
        if min(x.shape[-2:]) < MIN_SIZE[self.net_name]:
            raise ValueError(f"STLPIPS({self.net_name}) needs frames of at least "
                             f"{MIN_SIZE[self.net_name]}x{MIN_SIZE[self.net_name]}, got "
                             f"{tuple(x.shape[-2:])}")

    def unit_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Frames (B,3,H,W) in [0, 1] -> the five taps, float32, each of unit length over
        channels: what ``compare`` takes (a target's are computed once for all its samples)."""
        self._check(x)
        return [_unit(f.float()) for f in self.features(x * 2.0 - 1.0)]

    def compare(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        """``unit_features`` of two batches of one size -> (B,) distances."""
        total = fx[0].new_zeros(fx[0].shape[0])
        for k, (a, b) in enumerate(zip(fx, fy)):
            total = total + getattr(self, f"lin{k}")((a - b).pow(2)).mean(dim=(1, 2, 3))
        return total

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError("STLPIPS expects two (B,3,H,W) tensors of one shape, got "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
        return self.compare(self.unit_features(x), self.unit_features(y))


def _unit(f: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> unit length over channels (LPIPS' ``normalize_tensor``)."""
    return f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)


def memory_format_of(weight: torch.Tensor) -> torch.memory_format:
    """The layout a conv weight was put in (``set_compute``): channels_last or contiguous."""
    return torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) \
        and not weight.is_contiguous() else torch.contiguous_format
