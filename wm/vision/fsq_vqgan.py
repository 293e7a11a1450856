"""Per-frame FSQ-VQGAN visual tokenizer (RLVR-World single-step video world model).

Implements the per-frame tokenizer of shared/REFERENCE.md "Video world model": a VQGAN-style CNN
encoder/decoder whose latent is quantized with FSQ (Mentzer et al. 2023, levels [7,5,5,5,5] =
4,375 codes). Reference size: 256x320 frames, channels (128,256,256,512,768), latent 64 ->
16x20 = 320 tokens per frame.

Contract (docs/architecture.md "Tokenizers"): ``encode`` (B,3,H,W) in [0,1] -> (B,h,w) int64;
``decode`` (B,h,w) -> (B,3,H,W) in [0,1]; ``encode_clip`` / ``decode_clip`` at clip level; one
codebook shared by context and future frames.

Departures from the reference:
- ``len(channels) - 1`` downsamplings set the grid (the reference's "5 down blocks" counts the
  stem, giving the same 16x x reduction for 5 widths).
- ``forward`` returns the *unclamped* reconstruction (training losses see the raw decoder
  output); ``decode`` clamps to [0,1].
- No bottleneck self-attention (see ``wm.vision.blocks``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn
from vector_quantize_pytorch import FSQ

from wm.vision.blocks import Decoder, Encoder

DEFAULT_LEVELS = (7, 5, 5, 5, 5)

#: Named configurations. ``reference`` is the paper's 256x320 tokenizer; the tiny ones are for
#: PushT-sized frames and tests on CPU.
PRESETS: dict[str, dict] = {
    "reference": dict(channels=(128, 256, 256, 512, 768), latent_dim=64, resolution=(256, 320)),
    "tiny64_8x8": dict(channels=(32, 64, 64, 128), latent_dim=16, resolution=(64, 64)),
    "tiny64_16x16": dict(channels=(32, 64, 128), latent_dim=16, resolution=(64, 64)),
    "tiny96_12x12": dict(channels=(32, 64, 64, 128), latent_dim=16, resolution=(96, 96)),
}


class ClipReconstruction(NamedTuple):
    """What ``forward_clip`` returns (training path, straight-through quantization)."""

    context: torch.Tensor         # (B, Tc, 3, H, W) reconstruction of the context frames
    future: torch.Tensor          # (B, Tf, 3, H, W) reconstruction of the future frames
    context_tokens: torch.Tensor  # (B, Tc, Nc) int64
    future_tokens: torch.Tensor   # (B, Tf, Nf) int64


def check_resolution(resolution: Sequence[int], n_down: int, option: str) -> tuple[int, int]:
    """Validate that (H, W) is divisible by 2**n_down; returns (h, w) of the token grid."""
    if len(resolution) != 2:
        raise ValueError(f"resolution must be (H, W), got {tuple(resolution)}")
    H, W = (int(r) for r in resolution)
    f = 2 ** n_down
    if H % f or W % f or H < f or W < f:
        raise ValueError(
            f"resolution {H}x{W} is not divisible by 2**{n_down}={f} (set by len({option}) - 1 "
            f"downsamplings); change `resolution` or the number of entries in `{option}`"
        )
    return H // f, W // f


def make_fsq(levels: Sequence[int], latent_dim: int, option: str = "levels") -> FSQ:
    levels = [int(v) for v in levels]
    if not levels or any(v < 3 for v in levels):
        raise ValueError(f"{option}={levels}: every FSQ level must be >= 3 (e.g. [7,5,5,5,5])")
    return FSQ(levels=levels, dim=latent_dim)  # projects latent_dim <-> len(levels) inside


def codebook_stats(tokens: torch.Tensor, codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fraction of the codebook used, perplexity of the code histogram) for any-shape tokens."""
    counts = torch.bincount(tokens.reshape(-1), minlength=codebook_size).float()  # (K,)
    p = counts / counts.sum().clamp_min(1.0)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return (counts > 0).float().mean(), entropy.exp()


class FrameTokenizer(nn.Module):
    """Per-frame FSQ-VQGAN: each frame -> an (h, w) grid of ids in one shared codebook.

    Args:
        channels: encoder widths per level; ``len(channels) - 1`` downsamplings.
        levels: FSQ levels; the codebook has ``prod(levels)`` codes.
        in_channels: image channels (3).
        latent_dim: width of the continuous latent before FSQ's projection to ``len(levels)``.
        res_blocks: ResBlocks per level.
        resolution: (H, W) of the frames; fixes ``tokens_per_*_frame``.
        norm: ``"group"`` (VQGAN's GroupNorm) or ``"channel"`` (per-position LayerNorm: codes
            of unchanged regions stay the same when something else in the frame moves;
            :mod:`wm.vision.blocks`).
    """

    shared_codebook = True

    def __init__(self, channels: Sequence[int] = (128, 256, 256, 512, 768),
                 levels: Sequence[int] = DEFAULT_LEVELS, in_channels: int = 3, latent_dim: int = 64,
                 res_blocks: int = 1, resolution: Sequence[int] = (256, 320),
                 norm: str = "group"):
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"channels={channels}: give at least one positive width")
        self.config = dict(channels=channels, levels=[int(v) for v in levels],
                           in_channels=in_channels, latent_dim=latent_dim, res_blocks=res_blocks,
                           resolution=[int(r) for r in resolution], norm=str(norm))
        self.resolution = tuple(self.config["resolution"])
        self.n_down = len(channels) - 1
        self.grid_hw = check_resolution(self.resolution, self.n_down, "channels")
        self.encoder = Encoder(channels, in_channels, latent_dim, res_blocks, norm_kind=norm)
        self.decoder = Decoder(channels, in_channels, latent_dim, res_blocks, norm_kind=norm)
        self.quantizer = make_fsq(levels, latent_dim)
        self.codebook_size = int(self.quantizer.codebook_size)

    @classmethod
    def preset(cls, name: str, **overrides) -> "FrameTokenizer":
        if name not in PRESETS:
            raise ValueError(f"unknown FrameTokenizer preset {name!r}; "
                             f"choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    # ---- contract --------------------------------------------------------------------------
    @property
    def tokens_per_context_frame(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1]

    @property
    def tokens_per_future_frame(self) -> int:
        return self.tokens_per_context_frame

    @property
    def codebook_sizes(self) -> tuple[int, int]:
        return (self.codebook_size, self.codebook_size)

    def grid(self, H: int, W: int) -> tuple[int, int]:
        """Token grid (h, w) for H x W frames."""
        return check_resolution((H, W), self.n_down, "channels")

    def _check_frames(self, frames: torch.Tensor) -> None:
        if frames.ndim != 4 or frames.shape[1] != self.config["in_channels"]:
            raise ValueError(f"expected frames (B, {self.config['in_channels']}, H, W), "
                             f"got {tuple(frames.shape)}")
        if tuple(frames.shape[-2:]) != self.resolution:
            raise ValueError(
                f"frames are {tuple(frames.shape[-2:])} but the tokenizer was built for resolution="
                f"{self.resolution}; resize the data or set the tokenizer's `resolution`"
            )

    def quantize(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,3,H,W) in [0,1] -> (latent (B,D,h,w), straight-through grads; ids (B,h,w))."""
        self._check_frames(frames)
        z = self.encoder(frames * 2.0 - 1.0)           # (B, D, h, w)
        zq, ids = self.quantizer(z)                    # (B, D, h, w), (B, h, w) int32
        return zq, ids.long()

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.quantize(frames)[1]

    def decode_latent(self, zq: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> unclamped reconstruction (B, 3, H, W), ~[0, 1]."""
        return (self.decoder(zq) + 1.0) / 2.0

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, h, w) ids -> (B, 3, H, W) in [0, 1] (no gradients: the inference path)."""
        if tokens.ndim != 3:
            raise ValueError(f"decode expects tokens (B, h, w), got {tuple(tokens.shape)}")
        zq = self.quantizer.indices_to_codes(tokens.long())  # (B, h, w) -> (B, D, h, w)
        return self.decode_latent(zq).clamp(0.0, 1.0)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,3,H,W) -> (unclamped recon (B,3,H,W), ids (B,h,w)); gradients pass the quantizer."""
        zq, ids = self.quantize(frames)
        return self.decode_latent(zq), ids

    # ---- clip level ------------------------------------------------------------------------
    def encode_clip(self, frames: torch.Tensor, n_context: int):
        """(B,T,3,H,W) -> (ctx (B,Tc,N), fut (B,T-Tc,N)) int64, Tc = n_context."""
        B, T = _check_clip(frames, n_context, min_context=0)
        ids = self.encode(rearrange(frames, "b t c h w -> (b t) c h w"))         # (B*T, h, w)
        ids = rearrange(ids, "(b t) h w -> b t (h w)", b=B)                      # (B, T, N)
        return ids[:, :n_context], ids[:, n_context:]

    def decode_clip(self, ctx: torch.Tensor, fut: torch.Tensor) -> torch.Tensor:
        """(ctx (B,Tc,N), fut (B,Tf,N)) -> future frames (B,Tf,3,H,W); the context is not needed."""
        B, Tf, N = fut.shape
        if N != self.tokens_per_future_frame:
            raise ValueError(f"fut has {N} tokens per frame, this tokenizer uses "
                             f"{self.tokens_per_future_frame}")
        h, w = self.grid_hw
        frames = self.decode(rearrange(fut, "b t (h w) -> (b t) h w", h=h, w=w))  # (B*Tf, 3, H, W)
        return rearrange(frames, "(b t) c h w -> b t c h w", b=B)

    def decode_context(self, ctx: torch.Tensor) -> torch.Tensor:
        """(B,Tc,N) -> (B,Tc,3,H,W)."""
        return self.decode_clip(ctx[:, :0], ctx)

    def forward_clip(self, frames: torch.Tensor, n_context: int) -> ClipReconstruction:
        """Training path: every frame of the clip is tokenized independently (flattened over T)."""
        B, T = _check_clip(frames, n_context, min_context=0)
        # recon (B*T, 3, H, W), ids (B*T, h, w)
        recon, ids = self(rearrange(frames, "b t c h w -> (b t) c h w"))
        recon = rearrange(recon, "(b t) c h w -> b t c h w", b=B)
        ids = rearrange(ids, "(b t) h w -> b t (h w)", b=B)
        return ClipReconstruction(recon[:, :n_context], recon[:, n_context:],
                                  ids[:, :n_context], ids[:, n_context:])


def _check_clip(frames: torch.Tensor, n_context: int, min_context: int) -> tuple[int, int]:
    if frames.ndim != 5:
        raise ValueError(f"expected a clip (B, T, 3, H, W), got {tuple(frames.shape)}")
    B, T = frames.shape[:2]
    if not (min_context <= n_context <= T):
        raise ValueError(f"n_context={n_context} must be in [{min_context}, T={T}] "
                         f"for clips of {T} frames")
    return B, T
