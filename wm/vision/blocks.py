"""Convolutional building blocks shared by the FSQ-VQGAN tokenizers.

VQGAN-style (Esser et al. 2021, as used by iVideoGPT and RLVR-World's visual tokenizer, see
shared/REFERENCE.md "Video world model"): pre-activation ResNet blocks with GroupNorm + SiLU,
strided 3x3 convolutions to go down, nearest-neighbour upsampling + 3x3 convolution to go up,
and a cross-attention block used by the compressive tokenizer.

Departures from the reference: no self-attention at the bottleneck (kept small for CPU tests);
GroupNorm uses the largest group count <= 32 that divides the channel count, so tiny channel
widths (e.g. 8 or 24) work. ``norm_kind="channel"`` (ours, issue #16) replaces GroupNorm by a
per-position LayerNorm over channels: GroupNorm's statistics span the whole image, so moving a
small object flips codes far away from it (measured on the quickstart tokenizer: 28 % of the
codes more than 12 px from any changed pixel), which a world model must then predict as noise.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def num_groups(channels: int, max_groups: int = 32) -> int:
    """Largest group count <= max_groups dividing ``channels`` (32 for the usual widths)."""
    for g in range(min(max_groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


NORMS = ("group", "channel")


class ChannelNorm(nn.Module):
    """LayerNorm over the channels at each position (B, C, H, W) -> (B, C, H, W): no statistics
    over space, so a pixel change moves the features only within the convolutions' reach."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def norm(channels: int, kind: str = "group") -> nn.Module:
    """``group``: GroupNorm (VQGAN; statistics over the whole image, so a change anywhere moves
    every code a little); ``channel``: :class:`ChannelNorm` (local)."""
    if kind == "group":
        return nn.GroupNorm(num_groups(channels), channels, eps=1e-6)
    if kind == "channel":
        return ChannelNorm(channels)
    raise ValueError(f"norm={kind!r}: choose one of {NORMS}")


class ResBlock(nn.Module):
    """Pre-activation residual block: (GN, SiLU, conv3x3) x 2 plus a 1x1 skip when widths differ."""

    def __init__(self, c_in: int, c_out: int, norm_kind: str = "group"):
        super().__init__()
        self.body = nn.Sequential(
            norm(c_in, norm_kind), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
            norm(c_out, norm_kind), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H, W)
        return self.skip(x) + self.body(x)


class Downsample(nn.Module):
    """Strided 3x3 convolution: (B, C_in, H, W) -> (B, C_out, H/2, W/2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest x2 then 3x3 convolution: (B, C_in, H, W) -> (B, C_out, 2H, 2W)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class CrossAttention(nn.Module):
    """Residual multi-head cross-attention of a feature map onto a memory of tokens.

    ``x`` (B, C, h, w) queries; ``memory`` (B, M, C_mem) keys/values (e.g. the flattened
    features of every context frame). Returns (B, C, h, w).
    """

    def __init__(self, channels: int, memory_dim: int, heads: int):
        super().__init__()
        if channels % heads != 0:
            raise ValueError(
                f"cross-attention: channel width {channels} is not divisible by "
                f"attn_heads={heads}; choose attn_heads dividing every future-encoder/decoder "
                "width, or change the widths"
            )
        self.heads = heads
        self.norm_q = norm(channels)
        self.norm_kv = nn.LayerNorm(memory_dim)
        self.to_q = nn.Linear(channels, channels)
        self.to_kv = nn.Linear(memory_dim, 2 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)  # starts as the identity: the branch is learned in
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        q = rearrange(self.norm_q(x), "b c h w -> b (h w) c")
        q = rearrange(self.to_q(q), "b n (nh d) -> b nh n d", nh=self.heads)  # (B, nh, hw, d)
        k, v = self.to_kv(self.norm_kv(memory)).chunk(2, dim=-1)             # (B, M, C) each
        k = rearrange(k, "b m (nh d) -> b nh m d", nh=self.heads)            # (B, nh, M, d)
        v = rearrange(v, "b m (nh d) -> b nh m d", nh=self.heads)
        o = F.scaled_dot_product_attention(q, k, v)                          # (B, nh, hw, d)
        o = self.out(rearrange(o, "b nh n d -> b n (nh d)"))                 # (B, hw, C)
        return x + rearrange(o, "b (h w) c -> b c h w", h=h, w=w)


class Encoder(nn.Module):
    """Image -> latent map. ``len(channels) - 1`` downsamplings.

    Level i runs ``res_blocks`` ResBlocks at width channels[i], then (except at the last level)
    a strided conv to channels[i+1]. Output: (B, latent_dim, H / 2**n_down, W / 2**n_down).
    If ``memory_dim`` is set, levels whose grid has at most ``attn_max_tokens`` positions get a
    cross-attention block onto a memory passed to ``forward``.
    """

    def __init__(self, channels: Sequence[int], in_channels: int, latent_dim: int, res_blocks: int,
                 memory_dim: int | None = None, attn_heads: int = 4, attn_levels: int = 0,
                 norm_kind: str = "group"):
        super().__init__()
        channels = list(channels)
        self.n_down = len(channels) - 1
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.levels = nn.ModuleList()
        self.attn = nn.ModuleList()
        first_attn = len(channels) - attn_levels  # cross-attend at the last `attn_levels` levels
        for i, c in enumerate(channels):
            blocks = [ResBlock(c, c, norm_kind) for _ in range(res_blocks)]
            self.levels.append(nn.Sequential(*blocks))
            use_attn = memory_dim is not None and i >= first_attn
            attn = CrossAttention(c, memory_dim, attn_heads) if use_attn else nn.Identity()
            self.attn.append(attn)
        self.down = nn.ModuleList(Downsample(channels[i], channels[i + 1])
                                  for i in range(self.n_down))
        self.mid = ResBlock(channels[-1], channels[-1], norm_kind)
        self.out = nn.Sequential(norm(channels[-1], norm_kind), nn.SiLU(),
                                 nn.Conv2d(channels[-1], latent_dim, 1))

    def features(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C_in, H, W) -> last-level features (B, channels[-1], h, w), before the head."""
        x = self.conv_in(x)
        for i, level in enumerate(self.levels):
            x = level(x)
            if isinstance(self.attn[i], CrossAttention):
                x = self.attn[i](x, memory)
            if i < self.n_down:
                x = self.down[i](x)
        return self.mid(x)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.features(x, memory))


class Decoder(nn.Module):
    """Latent map -> image, the mirror of :class:`Encoder` (nearest-up instead of strided conv).

    ``features`` returns the bottom feature map (B, channels[-1], h, w) after the mid block; the
    compressive tokenizer uses it as the memory its future-frame decoder attends to.
    """

    def __init__(self, channels: Sequence[int], out_channels: int, latent_dim: int, res_blocks: int,
                 memory_dim: int | None = None, attn_heads: int = 4, attn_levels: int = 0,
                 norm_kind: str = "group"):
        super().__init__()
        channels = list(channels)
        self.n_up = len(channels) - 1
        self.conv_in = nn.Conv2d(latent_dim, channels[-1], 3, padding=1)
        self.mid = ResBlock(channels[-1], channels[-1], norm_kind)
        self.levels = nn.ModuleList()
        self.attn = nn.ModuleList()
        first_attn = len(channels) - attn_levels
        for i in reversed(range(len(channels))):  # deepest level first
            c = channels[i]
            use_attn = memory_dim is not None and i >= first_attn
            attn = CrossAttention(c, memory_dim, attn_heads) if use_attn else nn.Identity()
            self.attn.append(attn)
            self.levels.append(nn.Sequential(*[ResBlock(c, c, norm_kind)
                                               for _ in range(res_blocks)]))
        self.up = nn.ModuleList(Upsample(channels[i + 1], channels[i])
                                for i in reversed(range(self.n_up)))
        self.out = nn.Sequential(norm(channels[0], norm_kind), nn.SiLU(),
                                 nn.Conv2d(channels[0], out_channels, 3, padding=1))

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim, h, w) -> (B, channels[-1], h, w)."""
        return self.mid(self.conv_in(z))

    def forward(self, z: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        x = self.features(z)
        for j, level in enumerate(self.levels):
            if isinstance(self.attn[j], CrossAttention):
                x = self.attn[j](x, memory)
            x = level(x)
            if j < self.n_up:
                x = self.up[j](x)
        return self.out(x)  # (B, out_channels, H, W), roughly in [-1, 1]
