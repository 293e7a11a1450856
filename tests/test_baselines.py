"""The "copy last frame" baseline (issue #16): scored by the same evaluation code as a model, its
numbers equal the metrics computed by hand on the same held-out clips, and ST-LPIPS is
published under its own name."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from stage_fixtures import RES, save_tiny_tokenizer, write_video_dataset
from wm.data.video import VideoDataModule
from wm.evaluation.baselines import CopyLastFrame, build_baseline
from wm.evaluation.prediction import evaluate_policy
from wm.rewards.frame_metrics import mae, ssim
from wm.rewards.video import VideoReward
from wm.tasks.video import VideoTask


class FakeSTLPIPS(nn.Module):
    """Stands in for Perceptual(backend="stlpips"): mean squared error, named stlpips."""

    metric_name = "stlpips"

    def forward(self, x, y):
        return (x - y).square().flatten(1).mean(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baselines")
    root = write_video_dataset(tmp / "data", episodes=6, length=10)
    ckpt = save_tiny_tokenizer(tmp / "tok.ckpt")

    def make(future=1, perceptual=None, weights=None):
        dm = VideoDataModule(str(root), 2, future, resolution=(RES, RES), val_every=2,
                             batch_size=3)
        dm.setup("validate")
        task = VideoTask(str(ckpt), context_frames=2, future_frames=1, perceptual=perceptual,
                         reward=VideoReward(weights=weights or {"mae": 1.0}))
        task.connect(dm)
        return task, dm
    return make


def _clips(dm):
    return torch.cat([b["frames"].float() for b in dm.val_dataloader()])    # (N, T, 3, H, W)


def test_copy_row_equals_metrics_by_hand(setup):
    task, dm = setup()
    summary, _ = evaluate_policy(task, CopyLastFrame(), dm.val_dataloader(), progress=False)
    clips = _clips(dm)
    last, nxt = clips[:, 1], clips[:, 2]
    assert summary["num_predictions"] == clips.shape[0] > 0
    assert summary["mae"] == pytest.approx(float(mae(last, nxt).mean()), rel=1e-6)
    assert summary["ssim"] == pytest.approx(float(ssim(last, nxt).mean()), rel=1e-6)
    assert summary["reward"] == pytest.approx(-summary["mae"], rel=1e-6)
    assert summary["repeat"] == 1.0          # its tokens are the previous frame's, always
    assert summary["mae"] > 0                # the toy data moves: copying is not exact


def test_copy_open_loop_repeats_the_last_context_frame(setup):
    task, dm = setup(future=3)
    summary, _ = evaluate_policy(task, build_baseline("copy_last_frame"), dm.val_dataloader(),
                                 horizon=3, progress=False)
    clips = _clips(dm)
    for t in range(3):
        want = float(mae(clips[:, 1], clips[:, 2 + t]).mean())
        assert summary[f"mae@{t + 1}"] == pytest.approx(want, rel=1e-6)
    assert summary["mae@3"] > summary["mae@1"]   # the further ahead, the more copying costs


def test_stlpips_is_published_under_its_name(setup):
    task, dm = setup(future=2, perceptual=FakeSTLPIPS(), weights={"mae": 1.0, "lpips": 1.0})
    summary, _ = evaluate_policy(task, CopyLastFrame(), dm.val_dataloader(), horizon=2,
                                 progress=False)
    assert "stlpips" in summary and "stlpips@2" in summary and "best_of_1/stlpips" not in summary
    assert not any(k == "lpips" or k.startswith("lpips@") for k in summary)
    assert summary["reward"] == pytest.approx(-(summary["mae"] + summary["stlpips"]), rel=1e-5)


def test_unknown_baseline_and_text_task_are_refused():
    with pytest.raises(ValueError, match="unknown baseline 'nope'.*copy_last_frame"):
        build_baseline("nope")
    with pytest.raises(ValueError, match="needs a video task"):
        CopyLastFrame().predict_baseline(object(), {}, 1)


# ---------------------------------------------------------------- patch decoding (ours)
def _patch_task(setup, future=1):
    task, dm = setup(future=future)
    task.decoding = "patch"
    return task, dm


def _cells(mask, task, size):
    """(N, h*w) bool per token -> (N, 1, H, W) float per pixel."""
    h, w = task.tokenizer.grid_hw
    return torch.nn.functional.interpolate(mask.view(-1, 1, h, w).float(), size=size)


def _every_third_changed(task, dm, step):
    """Held-out frames (B,T,3,H,W), their context codes (B,2,N) and the last context frame's
    codes with every 3rd token moved by ``step`` (B,1,N); checks that keeping every token
    reproduces the last context frame exactly."""
    frames = next(iter(dm.val_dataloader()))["frames"].float()
    ctx, _ = task.tokenizer.encode_clip(frames[:, :2], 2)                  # (B, 2, N)
    same = task.frames_from_codes(ctx, ctx[:, -1:], frames[:, 1])         # nothing changed
    torch.testing.assert_close(same[:, 0], frames[:, 1], rtol=0, atol=0)
    other = ctx[:, -1:].clone()
    other[:, :, ::3] = (other[:, :, ::3] + step) % task.tokenizer.codebook_size
    return frames, ctx, other


def test_patch_decoding_keeps_the_previous_pixels_where_tokens_are_kept(setup):
    task, dm = _patch_task(setup)
    frames, ctx, other = _every_third_changed(task, dm, 1)
    got = task.frames_from_codes(ctx, other, frames[:, 1])[:, 0]
    kept = _cells(other[:, 0] == ctx[:, -1], task, frames.shape[-2:])
    decoded = task.tokenizer.decode_clip(ctx, other)[:, 0].clamp(0, 1)
    torch.testing.assert_close(got, kept * frames[:, 1] + (1 - kept) * decoded)
    assert 0 < kept.mean() < 1


def test_true_tokens_floor_plain_is_reconstruction_and_patch_differs(setup):
    task, dm = setup()
    plain, _ = evaluate_policy(task, build_baseline("true_tokens"), dm.val_dataloader(),
                               progress=False)
    nxt = _clips(dm)[:, 2]
    recon = task.tokenizer.decode(task.tokenizer.encode(nxt)).clamp(0, 1)
    assert plain["mae"] == pytest.approx(float(mae(recon, nxt).mean()), rel=1e-5)
    assert plain["repeat"] == plain["repeat_truth"]
    task.decoding = "patch"
    patch, _ = evaluate_policy(task, build_baseline("true_tokens"), dm.val_dataloader(),
                               progress=False)
    assert patch["mae"] != pytest.approx(plain["mae"], rel=1e-3)


def _dilate(mask, d):
    """(N,1,H,W) 0/1 -> grown by d px (max over the (2d+1)^2 neighbourhood, zero outside)."""
    H, W = mask.shape[-2:]
    padded = torch.nn.functional.pad(mask, (d, d, d, d))
    return torch.stack([padded[..., i:i + H, j:j + W] for i in range(2 * d + 1)
                        for j in range(2 * d + 1)]).amax(0)


@pytest.mark.parametrize("decoding", ["patch", "delta"])
def test_patch_open_loop_chains_frame_by_frame(setup, decoding):
    from stage_fixtures import tiny_llama_factory

    task, dm = _patch_task(setup, future=3)
    task.decoding, task.delta_threshold, task.delta_dilate = decoding, 0.05, 1
    policy = task.build_policy(tiny_llama_factory(seed=0))
    batch = next(iter(dm.val_dataloader()))
    preds = task.open_loop(policy, batch, 3, 2, torch.Generator().manual_seed(0))
    frames = batch["frames"].float()
    ctx, _ = task.tokenizer.encode_clip(frames[:, :2], 2)
    ctx = ctx.repeat_interleave(2, dim=0)
    decoded = task.tokenizer.decode_clip(ctx, preds["tokens"]).clamp(0, 1)
    prev, prev_codes = frames[:, 1].repeat_interleave(2, dim=0), ctx[:, -1]
    prev_dec = task.tokenizer.decode_clip(ctx, ctx[:, -1:])[:, 0].clamp(0, 1)
    for t in range(3):
        kept = _cells(preds["tokens"][:, t] == prev_codes, task, frames.shape[-2:])
        if decoding == "delta":
            moved = ((decoded[:, t] - prev_dec).abs().amax(1, keepdim=True) > 0.05).float()
            kept = torch.maximum(kept, 1 - _dilate(moved, 1))
            prev_dec = decoded[:, t]
        prev = kept * prev + (1 - kept) * decoded[:, t]
        prev_codes = preds["tokens"][:, t]
        torch.testing.assert_close(preds["frames"][:, t], prev)


def test_delta_decoding_redraws_only_the_pixels_a_changed_code_changes(setup):
    task, dm = _patch_task(setup)
    task.decoding = "delta"
    frames, ctx, other = _every_third_changed(task, dm, 7)
    kept = _cells(other[:, 0] == ctx[:, -1], task, frames.shape[-2:])
    changed = (1 - kept).bool()
    new = task.tokenizer.decode_clip(ctx, other)[:, 0].clamp(0, 1)
    old = task.tokenizer.decode_clip(ctx, ctx[:, -1:])[:, 0].clamp(0, 1)
    change = (new - old).abs().amax(1, keepdim=True)                       # (B, 1, H, W)
    # a threshold that only some of the changed cells' pixels pass (the tiny tokenizer's scale)
    task.delta_threshold, task.delta_dilate = float(change[changed].quantile(0.9)), 1
    got = task.frames_from_codes(ctx, other, frames[:, 1])[:, 0]
    redrawn = _dilate((change > task.delta_threshold).float(), 1) * (1 - kept)
    torch.testing.assert_close(got, redrawn * new + (1 - redrawn) * frames[:, 1])
    assert 0 < redrawn[changed].mean() < 1
    # threshold 0, no dilation: every pixel the new code's decoding changes is redrawn
    task.delta_threshold, task.delta_dilate = 0.0, 0
    every = task.frames_from_codes(ctx, other, frames[:, 1])[:, 0]
    diff = ((change > 0) & changed).expand_as(new)
    torch.testing.assert_close(every[diff], new[diff], rtol=0, atol=0)
    torch.testing.assert_close(every[~diff], frames[:, 1][~diff], rtol=0, atol=0)


def test_bad_decoding_is_refused(setup):
    task, _ = setup()
    with pytest.raises(ValueError, match="data.task.decoding='pixels'.*tokens.*patch.*delta"):
        task._check_decoding("pixels", 0)
    for decoding in ("patch", "delta"):
        with pytest.raises(ValueError, match=f"decoding={decoding} with n_prompt_future=1"):
            task._check_decoding(decoding, 1)
    task.tokenizer.shared_codebook = False          # a compressive tokenizer's own grid
    try:
        with pytest.raises(ValueError, match="per-frame tokenizer"):
            task._check_decoding("patch", 0)
    finally:
        del task.tokenizer.shared_codebook
