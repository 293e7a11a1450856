"""GRPO stage: it learns, it resumes exactly, its micro-batching leaves the maths unchanged, and
it fails clearly when a previous stage's checkpoint is missing (issue #5)."""
from functools import partial

import lightning as L
import pytest
import torch

from stage_fixtures import (
    TargetTokenData, TargetTokenTask, assert_same_run, compose_train, cpu_overrides, resume_pair,
    save_tiny_tokenizer, tiny_llama_factory, tiny_video_overrides, write_video_dataset)


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny_video")
    return write_video_dataset(base / "squares"), save_tiny_tokenizer(base / "tok" / "last.ckpt")


def _grpo_module(lr=3e-3, task=None, optimizer=torch.optim.AdamW, **kw):
    from wm.rl.loss import GRPOLossConfig
    from wm.stages.grpo import GRPOModule

    L.seed_everything(0)
    return GRPOModule(task or TargetTokenTask(), tiny_llama_factory(0),
                      partial(optimizer, lr=lr, weight_decay=0.0), GRPOLossConfig(),
                      init_policy=None, **{"group_size": 8, "micro_batch_size": 32, **kw})


def _trainer(max_steps):
    return L.Trainer(accelerator="cpu", max_steps=max_steps, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, limit_val_batches=0,
                     use_distributed_sampler=False)


def _heldout_reward(module, dm, group=8) -> float:
    """Mean verifiable reward on the held-out prompts, sampled (temperature 1) with fixed seeds."""
    from wm.rollout.scoring import sample_and_score
    from wm.utils.seeding import seeded_generator

    rewards = [sample_and_score(module.task, module.policy, b, group, seeded_generator(99, i, 0, "cpu"))[1]["reward"]
               for i, b in enumerate(dm.val_dataloader())]
    return torch.cat(rewards).mean().item()


def test_grpo_raises_heldout_reward():
    """20 rollout batches of the real GRPOModule.training_step under a Lightning Trainer take
    the hit rate of a target token from chance (1/16) to well above it on unseen prompts."""
    dm = TargetTokenData(batch_size=4)
    module = _grpo_module()
    before = _heldout_reward(module, dm)
    trainer = _trainer(20)
    trainer.fit(module, datamodule=dm)
    after = _heldout_reward(module, dm)
    assert before < 0.15, before
    assert after >= before + 0.3, (before, after)
    m = trainer.callback_metrics
    assert int(trainer.global_step) == 20 and float(m["grpo/optimizer_steps"]) == 1.0
    assert float(m["grpo/kl"]) > 0 and float(m["grpo/grad_norm"]) > 0
    assert float(m["grpo/reward/reward/mean"]) > 0.3
    assert float(m["grpo/logp_diff/max"]) < 1e-4      # trained on the policy it sampled from


def test_grpo_micro_batching_does_not_change_the_update():
    """One rollout batch, one optimizer step: 32 responses in one micro-batch or in 8 of 4 give
    the same weights. Responses stop at EOS, so micro-batches hold different token counts: a
    per-micro-batch token-mean divided by the accumulation steps (verl's bug) would differ."""
    weights, lengths = [], []
    for micro in (32, 4):
        module = _grpo_module(micro_batch_size=micro, task=TargetTokenTask(vocab=16, eos=5),
                              optimizer=torch.optim.SGD, lr=1.0)   # SGD: update = -grad
        _trainer(1).fit(module, datamodule=TargetTokenData(batch_size=4))
        weights.append({k: v.detach().clone() for k, v in module.policy.state_dict().items()})
        lengths.append(float(module.trainer.callback_metrics["grpo/response_tokens"]))
    assert lengths[0] == lengths[1] < 32 * 6          # same rollout, some rows ended early
    init = _grpo_module().policy.state_dict()
    assert any(not torch.equal(weights[0][k], init[k]) for k in init)   # it did update
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], rtol=1e-5, atol=1e-6, msg=k)


def test_grpo_resume_is_exact_video(tiny_video, tmp_path):
    """Video GRPO from a random policy (reward -MAE: never constant in a group) with two
    optimizer steps per rollout batch: 8 optimizer steps straight == 4 + resume + 4."""
    root, tok = tiny_video
    common = ["stage=grpo"] + tiny_video_overrides(root, tok) + [
        "stage.module.init_policy=null", "stage.module.group_size=4",
        "stage.module.mini_batch_size=1", "stage.module.micro_batch_size=4",
        "stage.module.log_images_every_n_steps=0", "stage.val_check_interval=1000",
        "stage.limit_val_batches=0", "model.lr.grpo=1e-3"]
    out = resume_pair(tmp_path, common, total=8)
    assert_same_run(out, rows=4)                      # 4 rollout batches, 2 optimizer steps each
    rows = out["straight"][0]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert all(r["metrics"]["grpo/optimizer_steps"] == 2.0 for r in rows)
    assert rows[-1]["metrics"]["grpo/kl"] > 0          # the policy moved away from the reference


def _root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:     # Hydra wraps constructor errors in InstantiationException
        err = err.__cause__
    return err


def test_grpo_missing_mle_checkpoint_names_the_command(tiny_video, tmp_path):
    from wm.cli.fit import fit_stage

    root, tok = tiny_video
    cfg = compose_train(["stage=grpo"] + tiny_video_overrides(root, tok)
                        + cpu_overrides(tmp_path / "runs", tmp_path / "data"))
    with pytest.raises(Exception) as err:
        fit_stage(cfg)
    assert isinstance(_root_cause(err.value), FileNotFoundError)
    msg = str(err.value)            # what the user reads (Hydra repeats the cause's message)
    assert str(tmp_path / "runs" / "pusht" / "mle" / "checkpoints" / "last.ckpt") in msg
    assert "python train.py stage=mle" in msg


def test_grpo_missing_tokenizer_checkpoint_names_the_command(tiny_video, tmp_path):
    from wm.cli.fit import fit_stage

    root, _ = tiny_video
    missing = tmp_path / "nowhere" / "last.ckpt"
    cfg = compose_train(["stage=grpo"] + tiny_video_overrides(root, missing)
                        + cpu_overrides(tmp_path / "runs", tmp_path / "data"))
    with pytest.raises(Exception) as err:
        fit_stage(cfg)
    assert isinstance(_root_cause(err.value), FileNotFoundError)
    msg = str(err.value)            # what the user reads (Hydra repeats the cause's message)
    assert str(missing) in msg and "python train.py stage=tokenizer" in msg
