"""Compressive (context-conditioned) FSQ-VQGAN tokenizer for multi-step video prediction.

Implements the "compressive tokenizer" of shared/REFERENCE.md "Video world model" (iVideoGPT's
conditional tokenizer as used by RLVR-World's multi-step setting): the context frame(s) are
tokenized on a fine grid (reference 256x320 -> 32x40 = 1,280 tokens); each future frame only on a
coarse grid (8x10 = 80 tokens), because its encoder and decoder see the context through
cross-attention and only need to code what changed. Context and future ids come from separate
FSQ codebooks (``shared_codebook=False``; with [7,5,5,5,5] each has 4,375 codes, and the
multi-step vocabulary is 2 x 4,375 + 256 action bins + BOS + EOS = 9,008).

Memory the future frames attend to (B, Tc*hc*wc, C):
- encoding: the context *encoder*'s last-level features (the real context frames are at hand);
- decoding: the context *decoder*'s bottom features computed from the context *tokens*, so
  ``decode_clip`` needs only ids, exactly what the world model produces.
Cross-attention sits at the future encoder/decoder levels whose grid is no finer than the
context grid (so queries never outnumber the memory).

Departures: one memory scale (the context latent grid) instead of iVideoGPT's multi-scale
features; no bottleneck self-attention; ``forward_clip`` reconstructs context frames with the
context decoder alone and future frames with the conditional decoder.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from wm.vision.blocks import Decoder, Encoder
from wm.vision.fsq_vqgan import (DEFAULT_LEVELS, ClipReconstruction, _check_clip, check_resolution,
                                 make_fsq)

PRESETS: dict[str, dict] = {
    # 256x320: context 32x40 = 1,280 tokens, future 8x10 = 80 tokens.
    "reference": dict(context_channels=(128, 256, 256, 512),
                      future_channels=(128, 256, 256, 512, 512, 768),
                      latent_dim=64, resolution=(256, 320), attn_heads=8),
    # 64x64: context 16x16 = 256 tokens, future 4x4 = 16 tokens.
    "tiny64": dict(context_channels=(32, 64, 64), future_channels=(32, 64, 64, 64, 128),
                   latent_dim=16, resolution=(64, 64), attn_heads=4),
    # 96x96: context 24x24, future 6x6.
    "tiny96": dict(context_channels=(32, 64, 64), future_channels=(32, 64, 64, 64, 128),
                   latent_dim=16, resolution=(96, 96), attn_heads=4),
}


class CompressiveTokenizer(nn.Module):
    """Context frames on a fine grid, future frames on a coarse grid conditioned on the context.

    Args:
        context_channels: widths of the context encoder/decoder (``len - 1`` downsamplings).
        future_channels: widths of the future encoder/decoder; needs more downsamplings than the
            context path (the future grid must be coarser).
        levels: FSQ levels of the context codebook.
        future_levels: FSQ levels of the future codebook (default: ``levels``).
        in_channels: image channels (3).
        latent_dim: continuous latent width before FSQ.
        res_blocks: ResBlocks per level.
        resolution: (H, W) of the frames.
        attn_heads: heads of every cross-attention block (must divide the future widths that
            attend).
    """

    shared_codebook = False

    def __init__(self, context_channels: Sequence[int] = (128, 256, 256, 512),
                 future_channels: Sequence[int] = (128, 256, 256, 512, 512, 768),
                 levels: Sequence[int] = DEFAULT_LEVELS, future_levels: Sequence[int] | None = None,
                 in_channels: int = 3, latent_dim: int = 64, res_blocks: int = 1,
                 resolution: Sequence[int] = (256, 320), attn_heads: int = 8):
        super().__init__()
        cc, fc = [int(c) for c in context_channels], [int(c) for c in future_channels]
        future_levels = list(levels if future_levels is None else future_levels)
        self.config = dict(context_channels=cc, future_channels=fc, levels=[int(v) for v in levels],
                           future_levels=[int(v) for v in future_levels], in_channels=in_channels,
                           latent_dim=latent_dim, res_blocks=res_blocks,
                           resolution=[int(r) for r in resolution], attn_heads=attn_heads)
        self.resolution = tuple(self.config["resolution"])
        if len(fc) <= len(cc):
            raise ValueError(
                f"future_channels has {len(fc)} levels and context_channels {len(cc)}: the future "
                "path must downsample more than the context path (add levels to future_channels)"
            )
        self.context_grid = check_resolution(self.resolution, len(cc) - 1, "context_channels")
        self.future_grid = check_resolution(self.resolution, len(fc) - 1, "future_channels")
        # attend at future levels whose grid is no finer than the context grid
        attn_levels = len(fc) - (len(cc) - 1)
        mem = cc[-1]
        self.context_encoder = Encoder(cc, in_channels, latent_dim, res_blocks)
        self.context_decoder = Decoder(cc, in_channels, latent_dim, res_blocks)
        self.future_encoder = Encoder(fc, in_channels, latent_dim, res_blocks, memory_dim=mem,
                                      attn_heads=attn_heads, attn_levels=attn_levels)
        self.future_decoder = Decoder(fc, in_channels, latent_dim, res_blocks, memory_dim=mem,
                                      attn_heads=attn_heads, attn_levels=attn_levels)
        self.context_quantizer = make_fsq(levels, latent_dim, "levels")
        self.future_quantizer = make_fsq(future_levels, latent_dim, "future_levels")

    @classmethod
    def preset(cls, name: str, **overrides) -> "CompressiveTokenizer":
        if name not in PRESETS:
            raise ValueError(f"unknown CompressiveTokenizer preset {name!r}; "
                             f"choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    # ---- contract --------------------------------------------------------------------------
    @property
    def tokens_per_context_frame(self) -> int:
        return self.context_grid[0] * self.context_grid[1]

    @property
    def tokens_per_future_frame(self) -> int:
        return self.future_grid[0] * self.future_grid[1]

    @property
    def codebook_sizes(self) -> tuple[int, int]:
        return (int(self.context_quantizer.codebook_size), int(self.future_quantizer.codebook_size))

    def _check(self, frames: torch.Tensor, n_context: int) -> tuple[int, int]:
        B, T = _check_clip(frames, n_context, min_context=1)
        if tuple(frames.shape[-2:]) != self.resolution:
            raise ValueError(
                f"frames are {tuple(frames.shape[-2:])} but the tokenizer was built for resolution="
                f"{self.resolution}; resize the data or set the tokenizer's `resolution`"
            )
        return B, T

    # ---- pieces ----------------------------------------------------------------------------
    def _encode_context(self, ctx_frames: torch.Tensor):
        """(B,Tc,3,H,W) -> (zq (B*Tc,D,hc,wc), ids (B,Tc,Nc), encoder memory (B, Tc*hc*wc, C))."""
        B = ctx_frames.shape[0]
        x = rearrange(ctx_frames, "b t c h w -> (b t) c h w") * 2.0 - 1.0
        feats = self.context_encoder.features(x)                                 # (B*Tc, C, hc, wc)
        # zq (B*Tc, D, hc, wc), ids (B*Tc, hc, wc)
        zq, ids = self.context_quantizer(self.context_encoder.out(feats))
        memory = rearrange(feats, "(b t) c h w -> b (t h w) c", b=B)
        return zq, rearrange(ids.long(), "(b t) h w -> b t (h w)", b=B), memory

    def _decoder_memory(self, ctx_zq: torch.Tensor, B: int) -> torch.Tensor:
        """Context latents (B*Tc, D, hc, wc) -> decoder memory (B, Tc*hc*wc, C)."""
        return rearrange(self.context_decoder.features(ctx_zq), "(b t) c h w -> b (t h w) c", b=B)

    def _encode_future(self, fut_frames: torch.Tensor, memory: torch.Tensor):
        """(B,Tf,3,H,W) + memory (B,M,C) -> (zq (B*Tf,D,hf,wf), ids (B,Tf,Nf))."""
        B, Tf = fut_frames.shape[:2]
        x = rearrange(fut_frames, "b t c h w -> (b t) c h w") * 2.0 - 1.0
        mem = memory.repeat_interleave(Tf, dim=0)                                # (B*Tf, M, C)
        zq, ids = self.future_quantizer(self.future_encoder(x, mem))            # (B*Tf, D, hf, wf)
        return zq, rearrange(ids.long(), "(b t) h w -> b t (h w)", b=B)

    def _decode_future(self, fut_zq: torch.Tensor, dec_memory: torch.Tensor, B: int):
        """(B*Tf, D, hf, wf) + memory (B,M,C) -> unclamped frames (B, Tf, 3, H, W)."""
        Tf = fut_zq.shape[0] // B
        mem = dec_memory.repeat_interleave(Tf, dim=0)                            # (B*Tf, M, C)
        x = (self.future_decoder(fut_zq, mem) + 1.0) / 2.0
        return rearrange(x, "(b t) c h w -> b t c h w", b=B)

    def _codes(self, quantizer, ids: torch.Tensor, grid: tuple[int, int], expected: int, name: str):
        """(B, T, N) ids -> (B*T, D, h, w) codes."""
        if ids.ndim != 3 or ids.shape[-1] != expected:
            raise ValueError(f"{name} must be (B, T, {expected}) token ids, got {tuple(ids.shape)}")
        ids = rearrange(ids.long(), "b t (h w) -> (b t) h w", h=grid[0], w=grid[1])
        return quantizer.indices_to_codes(ids)

    def _context_codes(self, ctx: torch.Tensor) -> torch.Tensor:
        return self._codes(self.context_quantizer, ctx, self.context_grid,
                           self.tokens_per_context_frame, "ctx")

    # ---- clip API --------------------------------------------------------------------------
    @torch.no_grad()
    def encode_clip(self, frames: torch.Tensor, n_context: int):
        """(B,T,3,H,W) in [0,1] -> (ctx (B,Tc,Nc), fut (B,T-Tc,Nf)) int64."""
        B, T = self._check(frames, n_context)
        _, ctx_ids, memory = self._encode_context(frames[:, :n_context])
        if T == n_context:
            return ctx_ids, ctx_ids.new_zeros(B, 0, self.tokens_per_future_frame)
        _, fut_ids = self._encode_future(frames[:, n_context:], memory)
        return ctx_ids, fut_ids

    @torch.no_grad()
    def decode_clip(self, ctx: torch.Tensor, fut: torch.Tensor) -> torch.Tensor:
        """(ctx (B,Tc,Nc), fut (B,Tf,Nf)) -> future frames (B,Tf,3,H,W) in [0,1]."""
        B = ctx.shape[0]
        ctx_zq = self._context_codes(ctx)
        fut_zq = self._codes(self.future_quantizer, fut, self.future_grid,
                             self.tokens_per_future_frame, "fut")
        return self._decode_future(fut_zq, self._decoder_memory(ctx_zq, B), B).clamp(0.0, 1.0)

    @torch.no_grad()
    def decode_context(self, ctx: torch.Tensor) -> torch.Tensor:
        """(B,Tc,Nc) -> context frames (B,Tc,3,H,W) in [0,1]."""
        zq = self._context_codes(ctx)
        x = (self.context_decoder(zq) + 1.0) / 2.0                                # (B*Tc, 3, H, W)
        return rearrange(x, "(b t) c h w -> b t c h w", b=ctx.shape[0]).clamp(0.0, 1.0)

    def forward_clip(self, frames: torch.Tensor, n_context: int) -> ClipReconstruction:
        """Training path with straight-through quantization; reconstructions are unclamped."""
        B, T = self._check(frames, n_context)
        ctx_zq, ctx_ids, memory = self._encode_context(frames[:, :n_context])
        ctx_rec = (self.context_decoder(ctx_zq) + 1.0) / 2.0                   # (B*Tc, 3, H, W)
        ctx_rec = rearrange(ctx_rec, "(b t) c h w -> b t c h w", b=B)
        if T == n_context:
            empty = frames[:, :0]
            no_ids = ctx_ids.new_zeros(B, 0, self.tokens_per_future_frame)
            return ClipReconstruction(ctx_rec, empty, ctx_ids, no_ids)
        fut_zq, fut_ids = self._encode_future(frames[:, n_context:], memory)
        fut_rec = self._decode_future(fut_zq, self._decoder_memory(ctx_zq, B), B)
        return ClipReconstruction(ctx_rec, fut_rec, ctx_ids, fut_ids)
