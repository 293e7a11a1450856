"""wm.vision.released: the plain-torch ports of the paper's released tokenizers.

- parity with the reference code's own outputs (../shared/data/reference_tokenizers);
- the released RT-1 shapes (parameter counts, tensor counts, file sizes of shared/CHECKPOINTS.md)
  and exact save_released -> load_released_tokenizer round trips;
- one-line load errors naming the file; the folder / hub-id resolver (offline).
"""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from wm.vision.registry import build_tokenizer, tokenizer_config
from wm.vision.released import (ReleasedCompressiveTokenizer, ReleasedFrameTokenizer,
                                load_released_tokenizer, resolve_checkpoint, save_released)
from wm.vision.released import compressive_fsq, frame_fsq
from wm.vision.released.frame_fsq import FSQ
from wm.vision.released.io import CONFIG_NAME, WEIGHTS_NAME, build_from_config
from wm.world.vocab import VocabLayout

DOWN, UP = "DownEncoderBlock2D", "UpDecoderBlock2D"
# shared/CHECKPOINTS.md, written out here (not imported) so a drift in the code is caught
RT1_FRAME = {"_class_name": "CNNFSQModel256", "in_channels": 3, "out_channels": 3,
             "down_block_types": [DOWN] * 5, "up_block_types": [UP] * 5,
             "block_out_channels": [128, 256, 256, 512, 768], "layers_per_block": 2,
             "act_fn": "silu", "latent_channels": 64, "norm_num_groups": 32, "fsq_levels": 12,
             "norm_type": "group", "resolution": 256}
RT1_COMPRESSIVE = {"_class_name": "CompressiveVQModelFSQ", "in_channels": 3, "out_channels": 3,
                   "down_block_types": [DOWN] * 4, "up_block_types": [UP] * 4,
                   "block_out_channels": [128, 256, 256, 512], "layers_per_block": 2,
                   "act_fn": "silu", "latent_channels": 64, "sample_size": 32,
                   "vq_fsq_levels": 12, "norm_num_groups": 32, "scaling_factor": 0.18215,
                   "norm_type": "group", "mid_block_add_attention": False,
                   "lookup_from_codebook": True, "force_upcast": True, "dyn_fsq_levels": 12,
                   "context_length": 1, "max_att_resolution": 32, "resolution": 256,
                   "patch_size": 4}
SMALL_FRAME = dict(block_out_channels=[8, 16], down_block_types=[DOWN] * 2,
                   up_block_types=[UP] * 2, layers_per_block=1, latent_channels=4,
                   norm_num_groups=4, resolution=16)                      # 16x20 -> 8x10 ids
SMALL_COMPRESSIVE = dict(block_out_channels=[32, 32, 32], down_block_types=[DOWN] * 3,
                         up_block_types=[UP] * 3, layers_per_block=1, latent_channels=8,
                         norm_num_groups=8, mid_block_add_attention=False, max_att_resolution=16,
                         resolution=64)                                   # 64x80 -> 16x20 + 4x5


def _fixture(shared_data, name):
    folder = shared_data / "reference_tokenizers" / name
    if not folder.is_dir():
        pytest.skip(f"reference tokenizer fixture {folder} not present")
    return folder, lambda f: torch.from_numpy(np.load(folder / f))


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


def _one_line(excinfo, *needles) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert str(n) in msg, msg
    return msg


# ------------------------------------------------------------------ parity with the reference
def test_frame_fixture_matches_reference(shared_data):
    folder, npy = _fixture(shared_data, "frame_tokenizer_small")
    tok = load_released_tokenizer(folder)
    assert isinstance(tok, ReleasedFrameTokenizer) and not tok.training
    frames, want_ids, want_dec = (npy("input_frames.npy"), npy("expected_ids.npy"),
                                  npy("expected_decoded.npy"))
    ids = tok.encode(frames)                                              # (2, 1, 4, 5)
    assert ids.dtype == torch.int64 and torch.equal(ids, want_ids)
    dec = tok.decode(want_ids)                                            # (2, 1, 3, 64, 80)
    err = _max_err(dec, want_dec)
    print(f"frame_tokenizer_small: max |decoded - reference| = {err:.3e}")
    assert err <= 1e-4
    # the project's contract gives the same numbers
    assert (tok.tokens_per_context_frame, tok.codebook_sizes) == (20, (4375, 4375))
    ctx, fut = tok.encode_clip(frames, 0)
    assert ctx.shape == (2, 0, 20) and torch.equal(fut, want_ids.flatten(2))
    assert torch.equal(tok.decode_clip(ctx, fut), dec)


def test_compressive_fixture_matches_reference(shared_data):
    folder, npy = _fixture(shared_data, "compressive_tokenizer_small")
    tok = load_released_tokenizer(folder)
    assert isinstance(tok, ReleasedCompressiveTokenizer) and not tok.training
    frames, want_ctx, want_fut, want_dec = (
        npy("input_frames.npy"), npy("expected_context_ids.npy"),
        npy("expected_future_ids.npy"), npy("expected_decoded.npy"))
    ctx, fut = tok.tokenize(frames)                                       # (1,1,1280), (1,2,80)
    assert ctx.dtype == fut.dtype == torch.int64
    assert torch.equal(ctx, want_ctx) and torch.equal(fut, want_fut)
    dec = tok.detokenize(want_ctx, want_fut)                              # (1, 3, 3, 256, 320)
    err = _max_err(dec, want_dec)
    print(f"compressive_tokenizer_small: max |decoded - reference| = {err:.3e}")
    assert err <= 1e-4
    assert (tok.tokens_per_context_frame, tok.tokens_per_future_frame) == (1280, 80)
    assert tok.codebook_sizes == (4375, 4375) and tok.shared_codebook is False
    c2, f2 = tok.encode_clip(frames, 1)
    assert torch.equal(c2, want_ctx) and torch.equal(f2, want_fut)
    assert torch.equal(tok.decode_clip(want_ctx, want_fut), dec[:, 1:])
    assert torch.equal(tok.decode_context(want_ctx), dec[:, :1])
    with pytest.raises(ValueError, match="context_length=1"):
        tok.encode_clip(frames, 2)


@pytest.mark.parametrize("name", ["frame_tokenizer_small", "compressive_tokenizer_small"])
def test_save_released_writes_the_released_layout(shared_data, tmp_path, name):
    folder, _ = _fixture(shared_data, name)
    out = save_released(load_released_tokenizer(folder), tmp_path / "copy")
    assert json.loads((out / CONFIG_NAME).read_text()) == json.loads((folder / CONFIG_NAME)
                                                                     .read_text())
    ours, theirs = load_file(out / WEIGHTS_NAME), load_file(folder / WEIGHTS_NAME)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


# ------------------------------------------------------------------ released shapes, round trip
def _assert_same_model(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert type(a) is type(b) and a.config == b.config and sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("config, cls, n_params, n_tensors, mb", [
    (RT1_FRAME, ReleasedFrameTokenizer, 104.4e6, 256, 418),
    (RT1_COMPRESSIVE, ReleasedCompressiveTokenizer, 129.4e6, 506, 518)])
def test_released_shapes_round_trip(tmp_path, config, cls, n_params, n_tensors, mb):
    torch.manual_seed(0)
    t0 = time.perf_counter()
    tok = build_from_config(dict(config)).eval()
    module = frame_fsq if cls is ReleasedFrameTokenizer else compressive_fsq
    assert type(tok) is cls and tok.config == {k: v for k, v in config.items() if k[0] != "_"}
    assert module.RELEASED_CONFIG == tok.config
    state = tok.state_dict()
    assert len(state) == n_tensors
    assert round(sum(v.numel() for v in state.values()) / 1e5) == round(n_params / 1e5)
    try:
        folder = save_released(tok, tmp_path / "released")
        assert round((folder / WEIGHTS_NAME).stat().st_size / 1e6) == mb
        saved = json.loads((folder / CONFIG_NAME).read_text())
        assert {k: v for k, v in saved.items() if k != "_diffusers_version"} == config
        back = load_released_tokenizer(folder)
    finally:
        shutil.rmtree(tmp_path / "released", ignore_errors=True)
    _assert_same_model(tok, back)
    if cls is ReleasedFrameTokenizer:  # one small frame; the compressive one needs 256x320
        x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(1))
        ids = tok.encode(x)
        assert ids.shape == (1, 4, 5) and 0 <= int(ids.min()) and int(ids.max()) < 4375
        assert torch.equal(back.encode(x), ids)
        assert torch.equal(back.decode(ids), tok.decode(ids))
        assert tok.tokens_per_context_frame == 320 and tok.frame_size == (256, 320)
    else:
        assert (tok.tokens_per_context_frame, tok.tokens_per_future_frame) == (1280, 80)
    print(f"{cls.__name__} released shapes: build+save+load {time.perf_counter() - t0:.1f}s")


def test_small_compressive_round_trip_and_registry(tmp_path):
    torch.manual_seed(0)
    tok = ReleasedCompressiveTokenizer(**SMALL_COMPRESSIVE).eval()
    x = torch.rand(2, 3, 3, 64, 80, generator=torch.Generator().manual_seed(2))
    ctx, fut = tok.encode_clip(x, 1)
    assert ctx.shape == (2, 1, 320) and fut.shape == (2, 2, 20)
    frames = tok.decode_clip(ctx, fut)
    assert frames.shape == (2, 2, 3, 64, 80)
    back = load_released_tokenizer(save_released(tok, tmp_path / "c"))
    _assert_same_model(tok, back)
    c2, f2 = back.encode_clip(x, 1)
    assert torch.equal(c2, ctx) and torch.equal(f2, fut)
    assert torch.equal(back.decode_clip(ctx, fut), frames)
    # the project's registry rebuilds it from its config (tokenizer stage checkpoints)
    rebuilt = build_tokenizer(tokenizer_config(tok))
    rebuilt.load_state_dict(tok.state_dict())
    assert type(rebuilt) is ReleasedCompressiveTokenizer and rebuilt.config == tok.config
    empty = tok.encode_clip(x[:, :1], 1)[1]
    assert empty.shape == (2, 0, 20) and tok.decode_clip(ctx, empty).shape == (2, 0, 3, 64, 80)


def test_fsq_ids_and_vocabulary():
    q = FSQ([7, 5, 5, 5, 5])
    ids = torch.arange(4375)
    assert torch.equal(q.codes_to_ids(q.ids_to_codes(ids)), ids)          # every code, exactly
    z = torch.randn(20_000, 5, generator=torch.Generator().manual_seed(0)) * 2
    codes = q.quantize(z)
    assert torch.equal(q.ids_to_codes(q.codes_to_ids(codes)), codes)
    from vector_quantize_pytorch import FSQ as PackageFSQ  # CHECKPOINTS.md: same ids as reference
    assert torch.equal(PackageFSQ(levels=[7, 5, 5, 5, 5])(z[None])[1][0].long(),
                       q.codes_to_ids(codes))
    # the world model's vocabularies of shared/CHECKPOINTS.md follow from the two tokenizers
    frame = ReleasedFrameTokenizer(**SMALL_FRAME)
    comp = ReleasedCompressiveTokenizer(**SMALL_COMPRESSIVE)
    assert VocabLayout.from_tokenizer(frame, action_bins=256).vocab_size == 4633
    assert VocabLayout.from_tokenizer(comp, action_bins=256).vocab_size == 9008


# ------------------------------------------------------------------ one-line errors
@pytest.fixture
def small_folder(tmp_path):
    torch.manual_seed(0)
    return save_released(ReleasedFrameTokenizer(**SMALL_FRAME), tmp_path / "tok")


def test_missing_config_is_one_line(small_folder):
    (small_folder / CONFIG_NAME).unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_released_tokenizer(small_folder)
    _one_line(e, small_folder / CONFIG_NAME)


def test_missing_weights_is_one_line(small_folder):
    (small_folder / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_released_tokenizer(small_folder)
    _one_line(e, small_folder / WEIGHTS_NAME)


def test_wrong_key_is_one_line(small_folder):
    path = small_folder / WEIGHTS_NAME
    state = load_file(path)
    state["encoder.conv_in.kernel"] = state.pop("encoder.conv_in.weight")
    save_file(state, path)
    with pytest.raises(ValueError) as e:
        load_released_tokenizer(small_folder)
    _one_line(e, path, "encoder.conv_in.weight", "encoder.conv_in.kernel")


def test_config_that_does_not_fit_the_weights_is_one_line(small_folder):
    cfg = json.loads((small_folder / CONFIG_NAME).read_text())
    (small_folder / CONFIG_NAME).write_text(json.dumps({**cfg, "latent_channels": 6}))
    with pytest.raises(ValueError) as e:
        load_released_tokenizer(small_folder)
    _one_line(e, small_folder / WEIGHTS_NAME, "another shape")


@pytest.mark.parametrize("what, content, error", [
    (CONFIG_NAME, "{not json", ValueError), (CONFIG_NAME, '{"_class_name": "Other"}', ValueError),
    (WEIGHTS_NAME, "not a safetensors file", ValueError)])
def test_unreadable_files_are_one_line(small_folder, what, content, error):
    (small_folder / what).write_text(content)
    with pytest.raises(error) as e:
        load_released_tokenizer(small_folder)
    _one_line(e, small_folder / what)


# ------------------------------------------------------------------ resolver
def test_resolve_local_folder(small_folder):
    assert resolve_checkpoint(small_folder) == small_folder
    assert resolve_checkpoint(str(small_folder)) == small_folder
    with pytest.raises(ValueError) as e:
        resolve_checkpoint(small_folder / CONFIG_NAME)
    _one_line(e, CONFIG_NAME)


def _offline(monkeypatch):
    import huggingface_hub.constants as constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_resolve_unknown_hub_id_offline(tmp_path, monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(FileNotFoundError) as e:
        resolve_checkpoint("thuml/no-such-tokenizer", cache_dir=tmp_path / "hf")
    _one_line(e, "'thuml/no-such-tokenizer'", "HF_HUB_OFFLINE",
              "huggingface-cli download thuml/no-such-tokenizer")


def test_resolve_cached_hub_id_offline(small_folder, tmp_path, monkeypatch):
    """A hub id already in the Hugging Face cache resolves (and loads) with no network."""
    _offline(monkeypatch)
    commit = "0" * 40
    repo = tmp_path / "hf" / "models--thuml--rt1-frame-tokenizer"
    shutil.copytree(small_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    folder = resolve_checkpoint("thuml/rt1-frame-tokenizer", cache_dir=tmp_path / "hf")
    assert folder == repo / "snapshots" / commit
    assert isinstance(load_released_tokenizer(folder), ReleasedFrameTokenizer)


def test_load_tokenizer_takes_a_released_folder(shared_data):
    """Every entry point that names a tokenizer (data.task.tokenizer_ckpt, eval.py) goes through
    wm.vision.registry.load_tokenizer, which routes a released folder to wm.vision.released."""
    from wm.vision.registry import looks_like_hub_id, load_tokenizer

    folder = shared_data / "reference_tokenizers" / "frame_tokenizer_small"
    tok = load_tokenizer(folder)
    assert isinstance(tok, ReleasedFrameTokenizer) and not tok.training
    x = torch.from_numpy(np.load(folder / "input_frames.npy"))
    expected = torch.from_numpy(np.load(folder / "expected_ids.npy"))
    with torch.no_grad():
        assert torch.equal(tok.encode(x), expected)
    assert looks_like_hub_id("thuml/rt1-frame-tokenizer")
    assert not looks_like_hub_id("runs/pusht/tokenizer/checkpoints/last.ckpt")


def test_a_trained_released_architecture_exports_in_the_released_layout(tmp_path):
    """The tokenizer stage trains a released-architecture tokenizer through forward_clip and its
    export writes the released layout; loading the export gives the same ids (exact)."""
    from functools import partial

    from wm.stages.tokenizer import TokenizerModule
    from wm.vision.released.io import load_released_tokenizer

    cfg = dict(frame_fsq.RELEASED_CONFIG, block_out_channels=[8, 8, 16], layers_per_block=1,
               down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
               latent_channels=4, norm_num_groups=4, resolution=32)
    tok = ReleasedFrameTokenizer(**cfg)
    module = TokenizerModule(tokenizer=tok, optimizer=partial(torch.optim.Adam, lr=1e-3))
    frames = torch.rand(2, 2, 3, 32, 40)
    out = tok.forward_clip(frames, 1)
    (out.future - frames[:, 1:]).abs().mean().backward()
    assert tok.quant_linear.weight.grad is not None and out.future_tokens.shape == (2, 1, 8 * 10)
    folder = module.export(tmp_path)["released"]
    again = load_released_tokenizer(folder)
    with torch.no_grad():
        assert torch.equal(again.encode(frames), tok.eval().encode(frames))
