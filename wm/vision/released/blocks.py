"""Plain-torch building blocks of the released RLVR-World tokenizers, under diffusers' names.

Ports the pieces that thuml/RLVR-World (``vid_wm/ivideogpt/ivideogpt/tokenizer/vae.py``,
``ctx_tokenizer/vae.py``, ``ctx_tokenizer/conditional_vae.py``) takes from diffusers 0.27
(``ResnetBlock2D``, ``Downsample2D``, ``Upsample2D``, ``Attention``, ``UNetMidBlock2D``,
``DownEncoderBlock2D``, ``UpDecoderBlock2D``) and the reference ``CrossAttentionBlock``, with the
same parameter names so the released ``diffusion_pytorch_model.safetensors`` loads strictly.
(The FSQ quantizer is in :mod:`wm.vision.released.frame_fsq`.)

Only the configuration the released tokenizers use is supported: GroupNorm (eps 1e-6) everywhere,
no time embedding, dropout 0 in the convolutional blocks, one attention head in the mid block.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS = {"silu": nn.SiLU, "swish": nn.SiLU, "mish": nn.Mish, "gelu": nn.GELU,
                "relu": nn.ReLU}
EPS = 1e-6  # GroupNorm eps of every diffusers block the reference builds


def activation(name: str) -> nn.Module:
    """diffusers ``get_activation``: the module for an ``act_fn`` name."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"act_fn={name!r} is not supported; use one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


class ResnetBlock(nn.Module):
    """GroupNorm-act-conv3x3, twice, plus a skip (1x1 conv when the width changes).

    (B, cin, H, W) -> (B, cout, H, W). Port of diffusers ``ResnetBlock2D`` without time embedding.
    """

    def __init__(self, cin: int, cout: int, groups: int, act: str):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=EPS)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nonlinearity = activation(act)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = self.conv2(self.nonlinearity(self.norm2(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class SpatialSelfAttention(nn.Module):
    """Single-head self-attention over the H*W positions with a residual (diffusers ``Attention``
    as built by ``UNetMidBlock2D`` with ``attention_head_dim = channels``)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=EPS)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        # contiguous: F.linear's kernel choice for strided input depends on requires_grad
        h = self.group_norm(x.view(B, C, H * W)).transpose(1, 2).contiguous()  # (B, HW, C)
        q, k, v = (f(h).unsqueeze(1) for f in (self.to_q, self.to_k, self.to_v))  # (B, 1, HW, C)
        h = F.scaled_dot_product_attention(q, k, v).squeeze(1)              # (B, HW, C)
        h = self.to_out[1](self.to_out[0](h))
        return h.transpose(1, 2).reshape(B, C, H, W) + x


class Downsample(nn.Module):
    """Pad right/bottom by one, then a stride-2 3x3 conv: (B,C,H,W) -> (B,C,H/2,W/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2, then a 3x3 conv: (B,C,H,W) -> (B,C,2H,2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    """resnet, [self-attention], resnet at constant width (diffusers ``UNetMidBlock2D``)."""

    def __init__(self, channels: int, groups: int, act: str, attention: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups, act)
                                      for _ in range(2)])
        self.attentions = nn.ModuleList([SpatialSelfAttention(channels, groups)]
                                        if attention else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attn in self.attentions:
            x = attn(x)
        return self.resnets[1](x)


class DownBlock(nn.Module):
    """``layers`` resnets (the first changes the width), then an optional stride-2 downsample
    (diffusers ``DownEncoderBlock2D`` with ``downsample_padding=0``)."""

    def __init__(self, cin: int, cout: int, layers: int, groups: int, act: str, downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(cin if i == 0 else cout, cout, groups, act)
                                      for i in range(layers)])
        self.downsamplers = nn.ModuleList([Downsample(cout)] if downsample else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in (*self.resnets, *self.downsamplers):
            x = m(x)
        return x


class UpBlock(nn.Module):
    """``layers`` resnets (the first changes the width), then an optional x2 upsample
    (diffusers ``UpDecoderBlock2D``)."""

    def __init__(self, cin: int, cout: int, layers: int, groups: int, act: str, upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(cin if i == 0 else cout, cout, groups, act)
                                      for i in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample(cout)] if upsample else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in (*self.resnets, *self.upsamplers):
            x = m(x)
        return x


class Encoder(nn.Module):
    """conv_in -> down blocks (all but the last halve H, W) -> mid block -> GroupNorm, act,
    conv_out. (B, in, H, W) -> (B, latent, H/2^(n-1), W/2^(n-1)), n = len(channels).

    The reference's ``CNNEncoder`` (frame tokenizer) and ctx ``Encoder`` share this layout.
    """

    def __init__(self, in_channels: int, latent: int, channels: Sequence[int], layers: int,
                 groups: int, act: str, mid_attention: bool):
        super().__init__()
        n = len(channels)
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([
            DownBlock(channels[max(i - 1, 0)], channels[i], layers, groups, act, i < n - 1)
            for i in range(n)])
        self.mid_block = MidBlock(channels[-1], groups, act, mid_attention)
        self.conv_norm_out = nn.GroupNorm(groups, channels[-1], eps=EPS)
        self.conv_act = activation(act)
        self.conv_out = nn.Conv2d(channels[-1], latent, 3, padding=1)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """-> latent, or (latent, features): ``[conv_in out, down block 0..n-1 outs, mid out]``
        (the context features the conditional encoder attends to)."""
        x = self.conv_in(x)
        feats = [x]
        for block in self.down_blocks:
            x = block(x)
            feats.append(x)
        x = self.mid_block(x)
        feats.append(x)
        out = self.head(x)
        return (out, feats) if return_features else out


def frame_decoder_plan(channels: Sequence[int]) -> list[tuple[int, int, bool]]:
    """(cin, cout, upsample) per up block of the reference ``CNNDecoder`` (frame tokenizer):
    widths reversed then ``channels[0]`` again; every block but the first upsamples."""
    rev = [*reversed(channels), channels[0]]
    return [(rev[i], rev[i + 1], i > 0) for i in range(len(channels))]


def vae_decoder_plan(channels: Sequence[int]) -> list[tuple[int, int, bool]]:
    """(cin, cout, upsample) per up block of the reference ctx ``Decoder`` (compressive
    tokenizer): widths reversed; every block but the last upsamples."""
    rev = list(reversed(channels))
    n = len(rev)
    return [(rev[max(i - 1, 0)], rev[i], i < n - 1) for i in range(n)]


class Decoder(nn.Module):
    """conv_in -> mid block -> up blocks (``plan``) -> GroupNorm, act, conv_out.
    (B, latent, h, w) -> (B, out, h*2^u, w*2^u), u = number of upsampling blocks."""

    def __init__(self, latent: int, out_channels: int, plan: Sequence[tuple[int, int, bool]],
                 layers: int, groups: int, act: str, mid_attention: bool):
        super().__init__()
        top, bottom = plan[0][0], plan[-1][1]
        self.conv_in = nn.Conv2d(latent, top, 3, padding=1)
        self.mid_block = MidBlock(top, groups, act, mid_attention)
        self.up_blocks = nn.ModuleList([UpBlock(cin, cout, layers, groups, act, up)
                                        for cin, cout, up in plan])
        self.conv_norm_out = nn.GroupNorm(groups, bottom, eps=EPS)
        self.conv_act = activation(act)
        self.conv_out = nn.Conv2d(bottom, out_channels, 3, padding=1)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))

    def forward(self, z: torch.Tensor, return_features: bool = False):
        """-> image, or (image, features): ``[conv_in out, mid out, up block 0..n-1 outs]``."""
        x = self.conv_in(z)
        feats = [x]
        x = self.mid_block(x)
        feats.append(x)
        for block in self.up_blocks:
            x = block(x)
            feats.append(x)
        out = self.head(x)
        return (out, feats) if return_features else out


class CrossAttentionBlock(nn.Module):
    """Queries: the future frame's feature map; keys/values: the context's feature map(s), each
    GroupNorm(32)-ed and given a learned position embedding; ``act(z + attention)``.

    Port of the reference ``conditional_vae.CrossAttentionBlock`` (4 heads, dropout 0.1 in
    training). z (B, C, H, W), memory (B, C, H, W) or (B, t, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, tokens: int, kv_frames: int, act: str, heads: int = 4,
                 dropout: float = 0.1):
        super().__init__()
        self.att = nn.MultiheadAttention(channels, heads, dropout=dropout, batch_first=True)
        self.resid_dropout = nn.Dropout(dropout)
        self.kv_norm = nn.GroupNorm(32, channels)   # default eps 1e-5, as in the reference
        self.q_norm = nn.GroupNorm(32, channels)
        self.kv_frames = kv_frames
        self.kv_pos_emb = nn.Parameter(torch.zeros(kv_frames * tokens, channels))
        self.q_pos_emb = nn.Parameter(torch.zeros(tokens, channels))
        self.act = activation(act)

    def forward(self, z: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        if memory.ndim == 5:  # (B, t, C, H, W) -> (B, C, t*H, W): frames stacked along H
            memory = memory.transpose(1, 2).flatten(2, 3)
        B, C = z.shape[:2]
        kv = self.kv_norm(memory).permute(0, 2, 3, 1).reshape(B, -1, C) + self.kv_pos_emb
        q = self.q_norm(z).permute(0, 2, 3, 1).reshape(B, -1, C) + self.q_pos_emb  # (B, HW, C)
        # nn.MultiheadAttention's general path, called directly (a frozen module in eval mode
        # would take the fused kernel); contiguous inputs keep F.linear's kernel independent of
        # requires_grad: both as the reference computes them to the last bit
        a, kv = self.att, kv.transpose(0, 1).contiguous()                     # (M, B, C)
        out = F.multi_head_attention_forward(
            q.transpose(0, 1).contiguous(), kv, kv, a.embed_dim, a.num_heads, a.in_proj_weight,
            a.in_proj_bias, None, None, False, a.dropout, a.out_proj.weight, a.out_proj.bias,
            training=self.training, need_weights=True)[0].transpose(0, 1)     # (B, HW, C)
        out = self.resid_dropout(out).permute(0, 2, 1).reshape(z.shape)
        return self.act(z + out)

