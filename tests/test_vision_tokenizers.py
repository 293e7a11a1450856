"""Shape/dtype contract, id ranges, errors and gradients of the FSQ-VQGAN tokenizers."""
import pytest
import torch

from wm.vision.compressive import CompressiveTokenizer
from wm.vision.fsq_vqgan import FrameTokenizer, codebook_stats
from wm.vision.registry import build_tokenizer, tokenizer_config

TINY = dict(channels=(8, 16, 16), latent_dim=8, resolution=(32, 32))          # 8x8 grid
TINY_C = dict(context_channels=(8, 16), future_channels=(8, 16, 16, 16), latent_dim=8,
              resolution=(32, 32), attn_heads=2)                               # ctx 16x16, fut 4x4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_frame_tokenizer_encode_decode_shapes_and_ids():
    tok = FrameTokenizer(**TINY)
    x = torch.rand(3, 3, 32, 32)
    ids = tok.encode(x)
    assert ids.shape == (3, 8, 8) and ids.dtype == torch.int64
    assert tok.codebook_sizes == (4375, 4375) and tok.shared_codebook
    assert int(ids.min()) >= 0 and int(ids.max()) < 4375
    y = tok.decode(ids)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert tok.grid(32, 32) == (8, 8)
    assert tok.tokens_per_context_frame == tok.tokens_per_future_frame == 64


def test_frame_tokenizer_forward_is_straight_through_and_matches_decode():
    tok = FrameTokenizer(**TINY)
    x = torch.rand(2, 3, 32, 32)
    recon, ids = tok(x)
    recon.mean().backward()
    grad = tok.encoder.conv_in.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    torch.testing.assert_close(recon.detach().clamp(0, 1), tok.decode(ids))


def test_frame_tokenizer_clip_api():
    tok = FrameTokenizer(**TINY)
    clip = torch.rand(2, 4, 3, 32, 32)
    ctx, fut = tok.encode_clip(clip, n_context=1)
    assert ctx.shape == (2, 1, 64) and fut.shape == (2, 3, 64)
    torch.testing.assert_close(ctx[:, 0], tok.encode(clip[:, 0]).flatten(1))
    out = tok.decode_clip(ctx, fut)
    assert out.shape == (2, 3, 3, 32, 32)
    torch.testing.assert_close(out[:, 1], tok.decode(fut[:, 1].reshape(2, 8, 8)))


def test_reference_grid_is_16x20():
    tok = FrameTokenizer(channels=(4, 4, 4, 4, 4), latent_dim=4, resolution=(256, 320))
    assert tok.grid(256, 320) == (16, 20) and tok.tokens_per_future_frame == 320


def test_compressive_reference_grids():
    tok = CompressiveTokenizer(context_channels=(4, 4, 4, 4), future_channels=(4,) * 6,
                               latent_dim=4, resolution=(256, 320), attn_heads=1)
    assert tok.tokens_per_context_frame == 1280 and tok.tokens_per_future_frame == 80
    assert tok.codebook_sizes == (4375, 4375) and not tok.shared_codebook
    assert 2 * 4375 + 256 + 2 == 9008  # the reference's multi-step vocabulary with these codebooks


def test_compressive_shapes_fewer_future_tokens_and_range():
    tok = CompressiveTokenizer(**TINY_C, future_levels=(5, 5, 5))
    clip = torch.rand(2, 3, 3, 32, 32)
    ctx, fut = tok.encode_clip(clip, n_context=1)
    assert ctx.shape == (2, 1, 256) and fut.shape == (2, 2, 16)
    assert ctx.dtype == fut.dtype == torch.int64
    assert tok.tokens_per_future_frame < tok.tokens_per_context_frame
    kc, kf = tok.codebook_sizes
    assert (kc, kf) == (4375, 125)
    assert 0 <= int(ctx.min()) and int(ctx.max()) < kc
    assert 0 <= int(fut.min()) and int(fut.max()) < kf
    frames = tok.decode_clip(ctx, fut)
    assert frames.shape == (2, 2, 3, 32, 32)
    assert 0 <= float(frames.min()) and float(frames.max()) <= 1
    assert tok.decode_context(ctx).shape == (2, 1, 3, 32, 32)


def test_compressive_decode_depends_on_context_and_training_path_matches():
    tok = CompressiveTokenizer(**TINY_C).eval()
    for p in tok.future_decoder.attn.parameters():   # make the cross-attention non-trivial
        torch.nn.init.normal_(p, std=0.2)
    clip = torch.rand(1, 2, 3, 32, 32)
    ctx, fut = tok.encode_clip(clip, 1)
    other_ctx = (ctx + 1) % tok.codebook_sizes[0]
    assert not torch.allclose(tok.decode_clip(ctx, fut), tok.decode_clip(other_ctx, fut))
    out = tok.forward_clip(clip, 1)
    torch.testing.assert_close(out.future.clamp(0, 1), tok.decode_clip(ctx, fut))
    assert torch.equal(out.context_tokens, ctx) and torch.equal(out.future_tokens, fut)


def test_compressive_multi_context_frames():
    tok = CompressiveTokenizer(**TINY_C)
    ctx, fut = tok.encode_clip(torch.rand(1, 4, 3, 32, 32), n_context=2)
    assert ctx.shape == (1, 2, 256) and fut.shape == (1, 2, 16)
    assert tok.decode_clip(ctx, fut).shape == (1, 2, 3, 32, 32)


@pytest.mark.parametrize("kwargs, match", [
    (dict(resolution=(30, 32)), "not divisible"),
    (dict(levels=(2, 5)), "levels"),
])
def test_frame_tokenizer_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FrameTokenizer(**{**TINY, **kwargs})


def test_errors_on_wrong_inputs():
    tok = FrameTokenizer(**TINY)
    with pytest.raises(ValueError, match="resolution"):
        tok.encode(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="n_context"):
        tok.encode_clip(torch.rand(1, 2, 3, 32, 32), n_context=3)
    with pytest.raises(ValueError, match="future path"):
        CompressiveTokenizer(**{**TINY_C, "future_channels": (8, 16)})
    with pytest.raises(ValueError, match="attn_heads"):
        CompressiveTokenizer(**{**TINY_C, "attn_heads": 3})
    with pytest.raises(ValueError, match="n_context"):
        CompressiveTokenizer(**TINY_C).encode_clip(torch.rand(1, 2, 3, 32, 32), n_context=0)


def test_config_round_trip_rebuilds_same_tokenizer():
    for tok in (FrameTokenizer(**TINY), CompressiveTokenizer(**TINY_C)):
        clone = build_tokenizer(tokenizer_config(tok))
        clone.load_state_dict(tok.state_dict())
        clip = torch.rand(1, 2, 3, 32, 32)
        for a, b in zip(tok.encode_clip(clip, 1), clone.encode_clip(clip, 1)):
            assert torch.equal(a, b)


def test_codebook_stats():
    usage, ppl = codebook_stats(torch.tensor([0, 0, 1, 1]), 4)
    assert float(usage) == 0.5 and abs(float(ppl) - 2.0) < 1e-5
