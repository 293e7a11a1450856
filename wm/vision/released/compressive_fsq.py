"""The released compressive FSQ tokenizer (``thuml/rt1-compressive-tokenizer``), in plain torch.

Port of thuml/RLVR-World ``vid_wm/ivideogpt/ivideogpt/ctx_tokenizer/compressive_vq_model_fsq.py``
``CompressiveVQModelFSQ`` (with ``ctx_tokenizer/vae.py`` and ``conditional_vae.py``):

- context path: ``encoder`` -> ``quant_conv`` (1x1) -> FSQ ``quantize`` -> ``post_quant_conv`` ->
  ``decoder``; RT-1: 256x320 -> 32x40 = 1,280 ids per context frame.
- future path: ``cond_encoder`` (cross-attends to the context encoder's features at grids
  <= ``max_att_resolution``) -> the 32x40 latent cut into ``patch_size``^2 patches ->
  ``quant_linear`` -> FSQ ``dynamics_quantize`` (8x10 = 80 ids per future frame) ->
  ``post_quant_linear`` -> un-patchify -> ``cond_decoder`` (cross-attends to the context
  *decoder*'s features, so decoding needs only ids).

Pixels in [0, 1] go in unscaled; decoded frames are raw decoder output (NOT clamped).

Departures: plain torch; the decoder's cross-attention grid starts at the context latent grid
``resolution / 2^(n-1)`` where the reference hard-codes 32 (and detokenize hard-codes 32x40 and
8x10): identical for every config the reference can run (RT-1: 256 / 8 = 32); frames are
``(resolution, resolution * 5 / 4)``, the aspect the reference's position embeddings fix.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from wm.vision.released.blocks import CrossAttentionBlock, Decoder, Encoder, vae_decoder_plan
from wm.vision.released.frame_fsq import FSQ, check_block_types, parse_levels

#: The RT-1 release (``thuml/rt1-compressive-tokenizer``, the reference's configs/ctx_vae256).
RELEASED_CONFIG = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 256, 512],
    layers_per_block=2, act_fn="silu", latent_channels=64, sample_size=32, vq_fsq_levels=12,
    norm_num_groups=32, scaling_factor=0.18215, norm_type="group", mid_block_add_attention=False,
    lookup_from_codebook=True, force_upcast=True, dyn_fsq_levels=12, context_length=1,
    max_att_resolution=32, resolution=256, patch_size=4)


def _tokens(r: int) -> int:
    return r * r // 4 * 5  # positions of an r x 5r/4 map (the reference's pos-emb size)


class ConditionalEncoder(Encoder):
    """Encoder whose down blocks at grids <= ``max_att`` cross-attend to the context encoder's
    same-level features (``features[i + 1]``). Reference ``ConditionalEncoder``."""

    def __init__(self, in_channels: int, latent: int, channels: Sequence[int], layers: int,
                 groups: int, act: str, *, resolution: int, max_att: int, kv_frames: int):
        super().__init__(in_channels, latent, channels, layers, groups, act, mid_attention=True)
        self.attend: dict[int, int] = {}                    # down block -> cross_att_blocks index
        blocks, r = [], resolution
        for i, c in enumerate(channels):
            r = r // 2 if i < len(channels) - 1 else r
            if r <= max_att:
                self.attend[i] = len(blocks)
                blocks.append(CrossAttentionBlock(c, _tokens(r), kv_frames, act))
        self.cross_att_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, memory: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.conv_in(x)
        for i, block in enumerate(self.down_blocks):
            x = block(x)
            if i in self.attend:
                x = self.cross_att_blocks[self.attend[i]](x, memory[i + 1])
        return self.head(self.mid_block(x))


class ConditionalDecoder(Decoder):
    """Decoder that cross-attends after its mid block (to ``features[1]``) and after up blocks
    at grids <= ``max_att`` (to ``features[i + 2]``) of the context decoder. Reference
    ``ConditionalDecoder``."""

    def __init__(self, latent: int, out_channels: int, plan: Sequence[tuple[int, int, bool]],
                 layers: int, groups: int, act: str, *, latent_res: int, max_att: int,
                 kv_frames: int):
        super().__init__(latent, out_channels, plan, layers, groups, act, mid_attention=True)
        r = latent_res
        blocks = [CrossAttentionBlock(plan[0][0], _tokens(r), kv_frames, act)]
        self.attend: dict[int, int] = {}                    # up block -> cross_att_blocks index
        for i, (_, cout, upsample) in enumerate(plan):
            r = r * 2 if upsample else r
            if r <= max_att:
                self.attend[i] = len(blocks)
                blocks.append(CrossAttentionBlock(cout, _tokens(r), kv_frames, act))
        self.cross_att_blocks = nn.ModuleList(blocks)

    def forward(self, z: torch.Tensor, memory: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.cross_att_blocks[0](self.mid_block(self.conv_in(z)), memory[1])
        for i, block in enumerate(self.up_blocks):
            x = block(x)
            if i in self.attend:
                x = self.cross_att_blocks[self.attend[i]](x, memory[i + 2])
        return self.head(x)


class ReleasedCompressiveTokenizer(nn.Module):
    """Compressive FSQ tokenizer under the released parameter names; the project's tokenizer
    contract (``shared_codebook=False``: context and future ids come from separate codebooks)
    plus the reference's ``tokenize``/``detokenize``.

    Constructor arguments are the released ``config.json`` keys (defaults: the reference's);
    ``sample_size``, ``scaling_factor``, ``lookup_from_codebook``, ``force_upcast`` are kept
    for the config only (unused by the reference too).
    """

    reference_class = "CompressiveVQModelFSQ"
    shared_codebook = False

    def __init__(self, in_channels: int = 3, out_channels: int = 3,
                 down_block_types: Sequence[str] = ("DownEncoderBlock2D",),
                 up_block_types: Sequence[str] = ("UpDecoderBlock2D",),
                 block_out_channels: Sequence[int] = (64,), layers_per_block: int = 1,
                 act_fn: str = "silu", latent_channels: int = 3, sample_size: int = 32,
                 vq_fsq_levels: int | Sequence[int] = 12, norm_num_groups: int = 32,
                 scaling_factor: float = 0.18215, norm_type: str = "group",
                 mid_block_add_attention: bool = True, lookup_from_codebook: bool = False,
                 force_upcast: bool = False, dyn_fsq_levels: int | Sequence[int] = 12,
                 context_length: int = 1, max_att_resolution: int = 32, resolution: int = 256,
                 patch_size: int = 4):
        args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        ch = [int(c) for c in block_out_channels]
        check_block_types(down_block_types, up_block_types, ch, norm_type)
        self.config = args
        for k in ("down_block_types", "up_block_types", "block_out_channels"):
            self.config[k] = list(self.config[k])
        for k in ("vq_fsq_levels", "dyn_fsq_levels"):
            if not isinstance(self.config[k], int):
                self.config[k] = parse_levels(self.config[k])
        vq, dyn = parse_levels(vq_fsq_levels), parse_levels(dyn_fsq_levels)
        self.context_length, self.patch_size, self.latent_channels = (
            int(context_length), int(patch_size), int(latent_channels))
        self.frame_size = (int(resolution), int(resolution) * 5 // 4)          # (H, W)
        f = 2 ** (len(ch) - 1)
        H, W = self.frame_size
        if H % (f * patch_size) or W % (f * patch_size):
            raise ValueError(f"resolution={resolution}: frames {H}x{W} are not divisible by "
                             f"2**{len(ch) - 1} * patch_size={f * patch_size}")
        self.context_grid = (H // f, W // f)                                   # (32, 40) RT-1
        self.future_grid = (H // f // patch_size, W // f // patch_size)        # (8, 10) RT-1
        L, g, act, kv = layers_per_block, norm_num_groups, act_fn, self.context_length
        plan = vae_decoder_plan(ch)
        self.cond_encoder = ConditionalEncoder(
            in_channels, latent_channels, ch, L, g, act, resolution=resolution,
            max_att=max_att_resolution, kv_frames=kv)
        self.encoder = Encoder(in_channels, latent_channels, ch, L, g, act,
                               mid_block_add_attention)
        self.quant_conv = nn.Conv2d(latent_channels, len(vq), 1)
        self.quantize = FSQ(vq)
        self.post_quant_conv = nn.Conv2d(len(vq), latent_channels, 1)
        patch_dim = latent_channels * patch_size ** 2
        self.quant_linear = nn.Linear(patch_dim, len(dyn))
        self.dynamics_quantize = FSQ(dyn)
        self.post_quant_linear = nn.Linear(len(dyn), patch_dim)
        self.cond_decoder = ConditionalDecoder(
            latent_channels, out_channels, plan, L + 1, g, act,
            latent_res=self.context_grid[0], max_att=max_att_resolution, kv_frames=kv)
        self.decoder = Decoder(latent_channels, out_channels, plan, L + 1, g, act,
                               mid_block_add_attention)

    @classmethod
    def released(cls, **overrides) -> "ReleasedCompressiveTokenizer":
        """A random-init model at the RT-1 release's shapes (129.4M parameters)."""
        return cls(**{**RELEASED_CONFIG, **overrides})

    # ---- contract --------------------------------------------------------------------------
    @property
    def codebook_sizes(self) -> tuple[int, int]:
        """(context codes, future codes): 4,375 each for FSQ levels [7,5,5,5,5]."""
        return (self.quantize.codebook_size, self.dynamics_quantize.codebook_size)

    @property
    def tokens_per_context_frame(self) -> int:
        return self.context_grid[0] * self.context_grid[1]

    @property
    def tokens_per_future_frame(self) -> int:
        return self.future_grid[0] * self.future_grid[1]

    # ---- pieces ----------------------------------------------------------------------------
    def _per_future(self, feats: list[torch.Tensor], B: int, Tf: int) -> list[torch.Tensor]:
        """Context features (B*t, C, h, w) -> one copy per future frame: (B*Tf, C, h, w), or
        (B*Tf, t, C, h, w) for t > 1 context frames."""
        t = self.context_length
        out = []
        for f in feats:
            f = f.view(B, 1, t, *f.shape[1:]).expand(B, Tf, t, *f.shape[1:])
            f = f.reshape(B * Tf, t, *f.shape[3:])
            out.append(f[:, 0] if t == 1 else f)
        return out

    def _patchify(self, d: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, h*w/p^2, p*p*C), patches row-major, (row, col, channel) inside."""
        N, C, h, w = d.shape
        p = self.patch_size
        d = d.view(N, C, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return d.reshape(N, (h // p) * (w // p), p * p * C)

    def _unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, p*p*C) -> (N, C, h, w) on the context latent grid."""
        (h, w), p, C = self.context_grid, self.patch_size, self.latent_channels
        x = x.reshape(x.shape[0], h // p, w // p, p, p, C).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(x.shape[0], C, h, w)

    def _check_frames(self, frames: torch.Tensor) -> tuple[int, int]:
        if frames.ndim != 5 or tuple(frames.shape[-2:]) != self.frame_size:
            raise ValueError(f"expected a clip (B, T, 3, {self.frame_size[0]}, "
                             f"{self.frame_size[1]}), got {tuple(frames.shape)}")
        if frames.shape[1] < self.context_length:
            raise ValueError(f"clips of {frames.shape[1]} frames have fewer than the "
                             f"tokenizer's context_length={self.context_length}")
        return frames.shape[0], frames.shape[1] - self.context_length

    # ---- reference methods -----------------------------------------------------------------
    @torch.no_grad()
    def tokenize(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,T,3,H,W) in [0,1] -> (context ids (B,t,Nc), future ids (B,T-t,Nf)) int64,
        t = context_length."""
        (B, Tf), t = self._check_frames(frames), self.context_length
        h, feats = self.encoder(frames[:, :t].flatten(0, 1), return_features=True)
        ctx = self.quantize(self.quant_conv(h))[1].reshape(B, t, -1)           # (B, t, Nc)
        if Tf == 0:
            return ctx, ctx.new_zeros(B, 0, self.tokens_per_future_frame)
        d = self.cond_encoder(frames[:, t:].flatten(0, 1), self._per_future(feats, B, Tf))
        d = self.quant_linear(self._patchify(d))                               # (B*Tf, Nf, dq)
        q = self.dynamics_quantize
        return ctx, q.codes_to_ids(q.quantize(d.float())).reshape(B, Tf, -1)

    def decode_parts(self, ctx: torch.Tensor, fut: torch.Tensor):
        """(ctx (B,t,Nc), fut (B,Tf,Nf)) ids -> (context frames (B,t,3,H,W), future frames
        (B,Tf,3,H,W)), raw decoder output."""
        if ctx.ndim != 3 or ctx.shape[1:] != (self.context_length,
                                              self.tokens_per_context_frame):
            raise ValueError(f"ctx must be (B, {self.context_length}, "
                             f"{self.tokens_per_context_frame}) ids, got {tuple(ctx.shape)}")
        Nf = self.tokens_per_future_frame
        if fut.ndim != 3 or fut.shape[0] != ctx.shape[0] or fut.shape[2] != Nf:
            raise ValueError(f"fut must be ({ctx.shape[0]}, Tf, {Nf}) ids, got {tuple(fut.shape)}")
        (B, t), (hc, wc) = ctx.shape[:2], self.context_grid
        codes = self.quantize.ids_to_codes(ctx.reshape(B * t, hc, wc).long())  # (B*t, hc, wc, d)
        codes = codes.to(self.post_quant_conv.weight.dtype).permute(0, 3, 1, 2)  # (B*t,d,hc,wc)
        ctx_frames, feats = self.decoder(self.post_quant_conv(codes), return_features=True)
        ctx_frames = ctx_frames.reshape(B, t, *ctx_frames.shape[1:])
        Tf = fut.shape[1]
        if Tf == 0:
            return ctx_frames, ctx_frames[:, :0]
        codes = self.dynamics_quantize.ids_to_codes(fut.reshape(B * Tf, -1).long())
        codes = codes.to(self.post_quant_linear.weight.dtype)                  # (B*Tf, Nf, d)
        z = self._unpatchify(self.post_quant_linear(codes))                    # (B*Tf, C, hc, wc)
        fut_frames = self.cond_decoder(z, self._per_future(feats, B, Tf))
        return ctx_frames, fut_frames.reshape(B, Tf, *fut_frames.shape[1:])

    @torch.no_grad()
    def detokenize(self, ctx: torch.Tensor, fut: torch.Tensor) -> torch.Tensor:
        """Reference output: decoded context frames then future frames (B, t+Tf, 3, H, W)."""
        return torch.cat(self.decode_parts(ctx, fut), dim=1)

    # ---- clip level ------------------------------------------------------------------------
    def encode_clip(self, frames: torch.Tensor, n_context: int):
        """(B,T,3,H,W) in [0,1] -> (ctx (B,Tc,Nc), fut (B,T-Tc,Nf)) int64; Tc = context_length."""
        if n_context != self.context_length:
            raise ValueError(f"n_context={n_context}: this released tokenizer was trained with "
                             f"context_length={self.context_length} context frame(s)")
        return self.tokenize(frames)

    @torch.no_grad()
    def decode_clip(self, ctx: torch.Tensor, fut: torch.Tensor) -> torch.Tensor:
        """(ctx (B,Tc,Nc), fut (B,Tf,Nf)) -> future frames (B,Tf,3,H,W), unclamped."""
        return self.decode_parts(ctx, fut)[1]

    @torch.no_grad()
    def decode_context(self, ctx: torch.Tensor) -> torch.Tensor:
        """(B,Tc,Nc) -> context frames (B,Tc,3,H,W), unclamped."""
        return self.decode_parts(ctx, ctx.new_zeros(ctx.shape[0], 0,
                                                     self.tokens_per_future_frame))[0]
