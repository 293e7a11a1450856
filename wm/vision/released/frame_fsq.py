"""The released per-frame FSQ VQGAN tokenizer (``thuml/rt1-frame-tokenizer``), in plain torch.

Port of thuml/RLVR-World ``vid_wm/ivideogpt/ivideogpt/tokenizer/vq_model.py`` ``CNNFSQModel256``
(with ``tokenizer/vae.py`` ``CNNEncoder``/``CNNDecoder``, and the parameter-free FSQ of
``ivideogpt/utils/finite_scalar_quantize.py``, Mentzer et al. 2023): each frame is encoded to a
``latent_channels`` map 16x smaller per side (5 levels), projected by a 1x1 conv
(``quant_linear``) to the FSQ dimension, quantized (levels [7,5,5,5,5], 4,375 codes), and decoded
through ``post_quant_linear`` and the decoder. RT-1: 256x320 frames -> 16x20 = 320 ids.

Pixels: frames in [0, 1] go in as they are (the reference does not rescale to [-1, 1]); decoded
frames are the decoder's raw output, ~[0, 1], NOT clamped (callers clamp).

Departures: plain torch, no diffusers; the nominal frame size that fixes ``tokens_per_*_frame``
is ``(resolution, resolution * 5 / 4)`` (RT-1's 4:5 aspect; the reference accepts any size
divisible by 16, and so do ``encode``/``decode`` here); no training losses.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from wm.vision.released.blocks import Decoder, Encoder, frame_decoder_plan

FSQ_LEVELS = {8: [8, 6, 5], 10: [8, 5, 5, 5], 12: [7, 5, 5, 5, 5], 14: [8, 8, 8, 6, 5],
              16: [8, 8, 8, 5, 5, 5]}  # the reference's get_fsq_levels


def parse_levels(levels: int | Sequence[int]) -> list[int]:
    """A config's ``*fsq_levels`` (an int key of the reference table, or the levels) -> levels."""
    if isinstance(levels, int):
        if levels not in FSQ_LEVELS:
            raise ValueError(f"fsq levels {levels} unknown; use one of {sorted(FSQ_LEVELS)} or a "
                             "list of levels")
        return list(FSQ_LEVELS[levels])
    return [int(v) for v in levels]


class FSQ(nn.Module):
    """Finite scalar quantization without projections (the reference builds it with
    ``dim = len(levels)``): each of the d channels is bounded with tanh and rounded to one of
    ``levels[i]`` values in [-1, 1]; the id is the mixed-radix number of the level indices.

    The float operations follow the reference in order (including the straight-through
    ``z + (round(z) - z)`` and the float -> int32 truncation of the id), so ids match bit for bit.
    """

    def __init__(self, levels: Sequence[int]):
        super().__init__()
        levels = [int(v) for v in levels]
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.int32), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1]), dim=0, dtype=torch.int32)
        self.register_buffer("_basis", basis, persistent=False)
        self.dim = len(levels)
        self.codebook_size = int(torch.tensor(levels).prod())

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """(..., d) float -> codes (..., d) in [-1, 1] (straight-through gradients)."""
        lv = self._levels
        half_l = (lv - 1) * (1 + 1e-3) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        bounded = (z + (offset / half_l).atanh()).tanh() * half_l - offset
        rounded = bounded + (bounded.round() - bounded).detach()
        return rounded / (lv // 2)

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., d) codes -> (...) int64 ids."""
        half = self._levels // 2
        return ((codes * half + half) * self._basis).sum(dim=-1).to(torch.int32).long()

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """(...) ids -> (..., d) float codes."""
        half = self._levels // 2
        digits = (ids.unsqueeze(-1) // self._basis) % self._levels
        return (digits - half) / half

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel-first z (N, d, *S) -> (codes (N, d, *S), ids (N, *S) int64)."""
        if z.shape[1] != self.dim:
            raise ValueError(f"FSQ expects {self.dim} channels in dim 1, got {tuple(z.shape)}")
        zl = z.movedim(1, -1)
        if zl.dtype not in (torch.float32, torch.float64):
            zl = zl.float()  # the reference quantizes in float32
        codes = self.quantize(zl)
        return codes.to(z.dtype).movedim(-1, 1), self.codes_to_ids(codes)


#: The RT-1 release (``thuml/rt1-frame-tokenizer``), shared/CHECKPOINTS.md.
RELEASED_CONFIG = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 5,
    up_block_types=["UpDecoderBlock2D"] * 5, block_out_channels=[128, 256, 256, 512, 768],
    layers_per_block=2, act_fn="silu", latent_channels=64, norm_num_groups=32, fsq_levels=12,
    norm_type="group", resolution=256)


def check_block_types(down: Sequence[str], up: Sequence[str], channels: Sequence[int],
                      norm_type: str) -> None:
    """The released configs use only these block types and GroupNorm; say so otherwise."""
    if set(down) != {"DownEncoderBlock2D"} or set(up) != {"UpDecoderBlock2D"}:
        raise ValueError(f"only DownEncoderBlock2D/UpDecoderBlock2D are supported, got "
                         f"down_block_types={list(down)} up_block_types={list(up)}")
    if not len(down) == len(up) == len(channels):
        raise ValueError(f"down_block_types ({len(down)}), up_block_types ({len(up)}) and "
                         f"block_out_channels ({len(channels)}) must have the same length")
    if norm_type != "group":
        raise ValueError(f"norm_type={norm_type!r}: only 'group' is supported")


class ReleasedFrameTokenizer(nn.Module):
    """Per-frame FSQ VQGAN under the released parameter names; the project's tokenizer contract
    (docs/architecture.md "Tokenizers") plus the reference's ``encode``/``decode``.

    Constructor arguments are the released ``config.json`` keys (defaults: the reference's).
    """

    reference_class = "CNNFSQModel256"
    shared_codebook = True

    def __init__(self, in_channels: int = 3, out_channels: int = 3,
                 down_block_types: Sequence[str] = ("DownEncoderBlock2D",) * 5,
                 up_block_types: Sequence[str] = ("UpDecoderBlock2D",) * 5,
                 block_out_channels: Sequence[int] = (128, 256, 256, 512, 768),
                 layers_per_block: int = 2, act_fn: str = "silu", latent_channels: int = 64,
                 norm_num_groups: int = 32, fsq_levels: int | Sequence[int] = 12,
                 norm_type: str = "group", resolution: int = 256):
        super().__init__()
        ch = [int(c) for c in block_out_channels]
        check_block_types(down_block_types, up_block_types, ch, norm_type)
        levels = parse_levels(fsq_levels)
        self.config = dict(
            in_channels=in_channels, out_channels=out_channels,
            down_block_types=list(down_block_types), up_block_types=list(up_block_types),
            block_out_channels=ch, layers_per_block=layers_per_block, act_fn=act_fn,
            latent_channels=latent_channels, norm_num_groups=norm_num_groups,
            fsq_levels=fsq_levels if isinstance(fsq_levels, int) else list(levels),
            norm_type=norm_type, resolution=resolution)
        self.n_down = len(ch) - 1
        self.frame_size = (int(resolution), int(resolution) * 5 // 4)          # (H, W)
        f = 2 ** self.n_down
        if self.frame_size[0] % f or self.frame_size[1] % f:
            raise ValueError(f"resolution={resolution}: frames {self.frame_size} are not "
                             f"divisible by 2**{self.n_down}")
        self.grid_hw = (self.frame_size[0] // f, self.frame_size[1] // f)       # (h, w)
        g, L = norm_num_groups, layers_per_block
        self.encoder = Encoder(in_channels, latent_channels, ch, L, g, act_fn, mid_attention=True)
        self.quant_linear = nn.Conv2d(latent_channels, len(levels), 1)
        self.dynamics_quantize = FSQ(levels)
        self.post_quant_linear = nn.Conv2d(len(levels), latent_channels, 1)
        self.decoder = Decoder(latent_channels, out_channels, frame_decoder_plan(ch), L, g, act_fn,
                               mid_attention=True)

    @classmethod
    def released(cls, **overrides) -> "ReleasedFrameTokenizer":
        """A random-init model at the RT-1 release's shapes (104.4M parameters)."""
        return cls(**{**RELEASED_CONFIG, **overrides})

    # ---- contract --------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.dynamics_quantize.codebook_size

    @property
    def codebook_sizes(self) -> tuple[int, int]:
        return (self.codebook_size, self.codebook_size)

    @property
    def tokens_per_context_frame(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1]

    @property
    def tokens_per_future_frame(self) -> int:
        return self.tokens_per_context_frame

    # ---- reference methods -----------------------------------------------------------------
    def quantize(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,3,H,W) in [0,1] -> (codes (B,d,h,w), straight-through; ids (B,h,w) int64)."""
        return self.dynamics_quantize(self.quant_linear(self.encoder(frames)))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """(B,d,h,w) FSQ codes -> raw frames (B,3,H,W)."""
        return self.decoder(self.post_quant_linear(codes))

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) -> (B,h,w), or (B,T,3,H,W) -> (B,T,h,w) int64 ids (H, W divisible by 16)."""
        if frames.ndim not in (4, 5):
            raise ValueError(f"encode expects (B,3,H,W) or (B,T,3,H,W), got {tuple(frames.shape)}")
        ids = self.quantize(frames.flatten(0, frames.ndim - 4))[1]            # (B*T, h, w)
        return ids.view(*frames.shape[:-3], *ids.shape[-2:])

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """(B,h,w) -> (B,3,H,W), or (B,T,h,w) -> (B,T,3,H,W); raw decoder output (unclamped)."""
        if ids.ndim not in (3, 4):
            raise ValueError(f"decode expects ids (B,h,w) or (B,T,h,w), got {tuple(ids.shape)}")
        flat = ids.flatten(0, ids.ndim - 3).long()                             # (B*T, h, w)
        if flat.shape[0] == 0:
            h, w = (s * 2 ** self.n_down for s in ids.shape[-2:])
            return self.post_quant_linear.weight.new_zeros(*ids.shape[:-2], 3, h, w)
        codes = self.dynamics_quantize.ids_to_codes(flat).movedim(-1, 1)       # (B*T, d, h, w)
        frames = self.decode_codes(codes.to(self.post_quant_linear.weight.dtype))
        return frames.view(*ids.shape[:-2], *frames.shape[-3:])

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,3,H,W) -> (raw reconstruction (B,3,H,W), ids (B,h,w)); gradients pass FSQ."""
        codes, ids = self.quantize(frames)
        return self.decode_codes(codes), ids

    # ---- clip level ------------------------------------------------------------------------
    def encode_clip(self, frames: torch.Tensor, n_context: int):
        """(B,T,3,H,W) in [0,1] -> (ctx (B,Tc,N), fut (B,T-Tc,N)) int64, Tc = n_context."""
        if frames.ndim != 5 or tuple(frames.shape[-2:]) != self.frame_size:
            raise ValueError(f"expected a clip (B, T, 3, {self.frame_size[0]}, "
                             f"{self.frame_size[1]}), got {tuple(frames.shape)}")
        if not 0 <= n_context <= frames.shape[1]:
            raise ValueError(f"n_context={n_context} must be in [0, T={frames.shape[1]}]")
        ids = self.encode(frames).flatten(2)                                   # (B, T, N)
        return ids[:, :n_context], ids[:, n_context:]

    def decode_clip(self, ctx: torch.Tensor, fut: torch.Tensor) -> torch.Tensor:
        """(ctx (B,Tc,N), fut (B,Tf,N)) -> future frames (B,Tf,3,H,W), unclamped; ctx unused."""
        if fut.ndim != 3 or fut.shape[-1] != self.tokens_per_future_frame:
            raise ValueError(f"fut must be (B, Tf, {self.tokens_per_future_frame}) ids, "
                             f"got {tuple(fut.shape)}")
        return self.decode(fut.unflatten(2, self.grid_hw))

    def forward_clip(self, frames: torch.Tensor, n_context: int):
        """Training path for the tokenizer stage (``wm.stages.tokenizer``): every frame of the
        clip reconstructed independently, straight-through FSQ gradients. Returns
        ``wm.vision.fsq_vqgan.ClipReconstruction``; train a released-architecture tokenizer this
        way and it is exported in the released layout (``save_released``)."""
        from wm.vision.fsq_vqgan import ClipReconstruction

        if frames.ndim != 5:
            raise ValueError(f"expected a clip (B, T, 3, H, W), got {tuple(frames.shape)}")
        B, T = frames.shape[:2]
        recon, ids = self(frames.flatten(0, 1))                                # (B*T, 3, H, W)
        recon, ids = recon.unflatten(0, (B, T)), ids.flatten(1).unflatten(0, (B, T))
        return ClipReconstruction(recon[:, :n_context], recon[:, n_context:],
                                  ids[:, :n_context], ids[:, n_context:])

    def decode_context(self, ctx: torch.Tensor) -> torch.Tensor:
        """(B,Tc,N) -> context frames (B,Tc,3,H,W), unclamped."""
        return self.decode_clip(ctx[:, :0], ctx)
