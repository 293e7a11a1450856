"""GRPO's speed-ups change no number (issue #14): the shared-prefix passes, whole-group
micro-batches, response trimming and the skipped old-log-prob pass give the update of the plain
computation."""
from functools import partial

import lightning as L
import torch

from stage_fixtures import TargetTokenData, TargetTokenTask, tiny_llama_factory
from wm.rl.loss import GRPOLossConfig


def _step(**kw):
    from wm.stages.grpo import GRPOModule

    L.seed_everything(0)
    module = GRPOModule(TargetTokenTask(vocab=16, eos=5), tiny_llama_factory(0),
                        partial(torch.optim.SGD, lr=1.0), GRPOLossConfig(),
                        init_policy=None, **{"group_size": 8, "micro_batch_size": 16, **kw})
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, use_distributed_sampler=False)
    trainer.fit(module, datamodule=TargetTokenData(batch_size=4))
    return ({k: v.detach().clone() for k, v in module.policy.state_dict().items()},
            trainer.callback_metrics)


def test_shared_prefix_update_equals_the_plain_update():
    fast, m_fast = _step(shared_prefix=True)
    plain, m_plain = _step(shared_prefix=False)
    init = tiny_llama_factory(0)(vocab_size=16).state_dict()
    assert any((fast[k] - init[k]).abs().max() > 1e-4 for k in init)
    for k in fast:
        torch.testing.assert_close(fast[k], plain[k], rtol=1e-4, atol=1e-6, msg=k)
    for key in ("grpo/policy_loss", "grpo/kl", "grpo/grad_norm"):
        torch.testing.assert_close(m_fast[key], m_plain[key], rtol=1e-4, atol=1e-6)


def test_skipping_the_old_pass_equals_computing_it():
    """mini_batch_size=2 of 4 prompts makes two optimizer steps (old pass computed); the same
    rollout with ppo_epochs=1 and one mini-batch skips it. Both first steps start from ratio 1."""
    _, skipped = _step()
    assert float(skipped["grpo/ratio_mean"]) == 1.0 and float(skipped["grpo/logp_diff/max"]) < 1e-4
    _, computed = _step(mini_batch_size=2)
    assert float(computed["grpo/optimizer_steps"]) == 2.0
    assert float(computed["grpo/logp_diff/max"]) < 1e-4


def test_video_scores_are_computed_once_per_sample(tmp_path, monkeypatch):
    """The reward and the metrics of a rollout share one frame_metrics call."""
    import wm.rewards.video as video_reward
    import wm.tasks.video as video_task
    from test_tasks_video import _task_and_batch
    from wm.rollout.scoring import sample_and_score

    task, batch = _task_and_batch(tmp_path)
    policy = task.build_policy(tiny_llama_factory(0))
    calls = []
    real = video_task.frame_metrics

    def counting(*a, **k):
        calls.append(k.get("names"))
        return real(*a, **k)

    monkeypatch.setattr(video_task, "frame_metrics", counting)
    monkeypatch.setattr(video_reward, "frame_metrics", counting)
    _, rewards, metrics, _ = sample_and_score(task, policy, batch, 2,
                                              torch.Generator().manual_seed(0))
    assert len(calls) == 1, calls
    assert {"mae", "mse", "psnr", "ssim"} <= set(metrics) and "reward" in rewards


def test_text_answers_are_parsed_once_per_sample(monkeypatch):
    from wm.language.presets import tiny_causal_lm
    from wm.rollout.scoring import sample_and_score
    from wm.data.text import TextStateDataModule
    from wm.tasks.text import TextStateTask

    task = TextStateTask("wm.rewards.toy.toy_rewards", "key_acc", max_prompt_tokens=256,
                         max_response_tokens=48)
    policy = task.build_policy(tiny_causal_lm)
    dm = TextStateDataModule("toy", toy_train=8, toy_val=4, batch_size=2)
    task.connect(dm)
    batch = next(iter(dm.val_dataloader()))
    calls = []
    real = task.reward_fn
    task.reward_fn = lambda texts, records: calls.append(len(texts)) or real(texts, records)
    sample_and_score(task, policy, batch, 3, torch.Generator().manual_seed(0))
    assert calls == [6]


def test_skipped_old_pass_and_cascade_sampling_give_the_plain_update():
    fast, m_fast = _step()
    plain, m_plain = _step(skip_old_logp=False, cascade=False, shared_prefix=False)
    assert float(m_fast["grpo/time/old_logp"]) < float(m_plain["grpo/time/old_logp"])
    for k in fast:
        torch.testing.assert_close(fast[k], plain[k], rtol=1e-4, atol=1e-6, msg=k)
