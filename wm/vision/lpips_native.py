"""LPIPS v0.1 over VGG16 in plain torch: the ``"native"`` backend of :mod:`wm.vision.perceptual`
(Zhang et al. 2018), with torchvision's exact ``vgg16().features`` layer indices and parameter
names, so torchvision's and the lpips package's weight files load unchanged. Neither torchvision
nor lpips is imported (neither works next to the CPU torch build; shared/ENVIRONMENT.md)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from wm.vision.stlpips import memory_format_of

VGG16_TORCHVISION_FILE = "vgg16-397923af.pth"
# torchvision vgg16 "D" configuration: numbers are conv widths, "M" a 2x2 max-pool
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
              512, 512, 512, "M", 512, 512, 512, "M")
_TAPS = (3, 8, 15, 22, 29)          # indices in vgg16.features of relu1_2 .. relu5_3
_TAP_CHANNELS = (64, 128, 256, 512, 512)


def vgg16_features() -> nn.Sequential:
    """Plain-torch copy of torchvision's ``vgg16().features`` (same indices, same param names)."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=False)]
            c_in = v
    return nn.Sequential(*layers)


def lpips_package_dir() -> Path | None:
    """Folder of the installed ``lpips`` package, found without importing it (or None)."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _default_backbone_file() -> Path | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_TORCHVISION_FILE
    return path if path.is_file() else None


def _features_state_dict(state: dict) -> dict:
    """Accept torchvision's full vgg16 state dict (``features.N.*``) or a bare ``N.*`` one."""
    if any(k.startswith("features.") for k in state):
        return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    return dict(state)


class NativeLPIPS(nn.Module):
    """LPIPS v0.1 over VGG16 in plain torch. Inputs in [-1, 1]; returns (B,) distances."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.features = vgg16_features()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _TAP_CHANNELS)
        for head, c in zip(self.heads, _TAP_CHANNELS):
            nn.init.constant_(head.weight, 1.0 / c)

    def load_backbone(self, path: str | Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, _ = self.features.load_state_dict(_features_state_dict(state), strict=False)
        if missing:
            raise ValueError(f"backbone_weights={path} is not a VGG16 state dict "
                             f"(missing {missing[:4]}...)")

    def load_heads(self, path: str | Path) -> None:
        # keys lin{k}.model.1.weight, shapes (1, C_k, 1, 1)
        state = torch.load(path, map_location="cpu", weights_only=True)
        for k, head in enumerate(self.heads):
            key = f"lin{k}.model.1.weight"
            if key not in state:
                raise ValueError(f"LPIPS head file {path} has no key {key!r}; "
                                 "expected lpips' weights/v0.1/vgg.pth")
            head.weight.data.copy_(state[key])

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        weight = self.features[0].weight      # the backbone's dtype and layout (set_compute)
        fmt = memory_format_of(weight)
        if x.dtype != weight.dtype or fmt == torch.channels_last:
            x = x.to(weight.dtype).contiguous(memory_format=fmt)
        out = []
        for i, layer in enumerate(self.features[: _TAPS[-1] + 1]):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
        return out

    def set_compute(self, dtype: torch.dtype = torch.float32, channels_last: bool = False
                    ) -> "NativeLPIPS":
        """Run the VGG16 backbone in ``dtype`` / memory format (heads stay float32)."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.features.to(dtype=dtype, memory_format=fmt)
        return self

    def unit_features(self, a: torch.Tensor) -> list[torch.Tensor]:
        """(B,3,H,W) in [-1, 1] -> the five taps, float32, unit length over channels."""
        taps = self._taps((a - self.shift) / self.scale)
        return [x.float() / (x.float().pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for x in taps]

    def compare(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        """``unit_features`` of two batches of one size -> (B,) distances."""
        total = fa[0].new_zeros(fa[0].shape[0])
        for head, xa, xb in zip(self.heads, fa, fb):
            total = total + head((xa - xb).pow(2)).mean(dim=(1, 2, 3))  # (B,1,h,w) -> (B,)
        return total

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.compare(self.unit_features(a), self.unit_features(b))
