"""MLE stage: it overfits one batch (issue #4), and a resumed run equals an uninterrupted one.

The overfit test trains the real ``MLEModule`` on a ``VideoTask`` (tiny tokenizer + tiny LLaMA)
with a Lightning Trainer, then checks the teacher-forced loss collapsed *and* that greedy sampling
through the shared ``Sampler`` reproduces the ground-truth next-frame tokens: training
(``response_logits``) and inference (the KV-cached sampler) must agree on positions and masks.
"""
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from stage_fixtures import (
    assert_same_run, resume_pair, save_tiny_tokenizer, tiny_llama_factory, tiny_video_overrides,
    write_video_dataset)


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny_video")
    return write_video_dataset(base / "squares"), save_tiny_tokenizer(base / "tok" / "last.ckpt")


def test_mle_overfits_one_batch(tiny_video):
    from wm.data.video import VideoDataModule
    from wm.rollout.scoring import sample_and_score
    from wm.utils.seeding import seeded_generator
    from wm.stages.mle import MLEModule
    from wm.rewards.video import VideoReward
    from wm.tasks.video import VideoTask

    root, tok = tiny_video
    dm = VideoDataModule(str(root), context_frames=2, future_frames=1, batch_size=4, val_every=4)
    task = VideoTask(str(tok), context_frames=2, future_frames=1,
                     reward=VideoReward(weights={"mae": 1.0}))
    task.connect(dm)
    L.seed_everything(0)
    module = MLEModule(task, tiny_llama_factory(0), partial(torch.optim.AdamW, lr=3e-3),
                       val_sample=False)
    batch = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        initial = module.loss(batch).item()
    trainer = L.Trainer(accelerator="cpu", max_steps=200, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, DataLoader([batch], batch_size=None))   # the same batch every step
    with torch.no_grad():
        final = module.loss(batch).item()
    assert initial > 3.0                      # ~log(vocab) at random init: not trivially small
    assert final < 0.05 * initial, (initial, final)

    # greedy decoding reproduces the memorised next frames (train/inference alignment)
    _, _, _, rollout = sample_and_score(module.task, module.policy, batch, 1, seeded_generator(0, 0, 0, "cpu"),
                                        temperature=0.0)
    target = task.responses(batch)
    free = rollout.mask
    assert free.any()
    agree = (rollout.tokens[free] == target.ids[free]).float().mean().item()
    assert agree > 0.95, agree


def test_mle_resume_is_exact_video(tiny_video, tmp_path):
    root, tok = tiny_video
    common = ["stage=mle"] + tiny_video_overrides(root, tok) + [
        "stage.val_check_interval=1000", "stage.limit_val_batches=0", "stage.log_every_n_steps=1"]
    out = resume_pair(tmp_path, common, total=6)
    assert_same_run(out, rows=6)
    assert len({tuple(r["batch"]["episode"]) for r in out["straight"][0]}) > 1  # the stream moves


def test_mle_resume_is_exact_text(tmp_path):
    common = ["stage=mle", "data=toy_text", "stage.val_check_interval=1000",
              "stage.limit_val_batches=0", "stage.log_every_n_steps=1",
              "data.datamodule.batch_size=4", "data.task.max_response_tokens=40"]
    out = resume_pair(tmp_path, common, total=6)
    assert_same_run(out, rows=6)
