"""GRPO trains the policy it sampled from (issue #13): the training-side log-probs are those of
the sampling distribution (allowed id range, temperature), dropout is off in every pass, the
Dr.GRPO divisor is the configured one, and bad reference/KL settings fail clearly."""
from functools import partial

import lightning as L
import pytest
import torch

from stage_fixtures import TargetTokenData, TargetTokenTask, tiny_llama_factory
from wm.rl.loss import GRPOLossConfig, token_logprobs
from wm.rollout.distribution import sampling_entropy, sampling_logprobs
from wm.rollout.forward import response_logits
from wm.rollout.plan import ResponsePlan
from wm.rollout.sampler import Sampler
from wm.tasks.base import Prompts


class RangeTask(TargetTokenTask):
    """TargetTokenTask whose responses may only use ids [2, 12) of a 16-id vocabulary."""

    def prompts(self, batch) -> Prompts:
        ids = batch["prompt"]
        plan = ResponsePlan(self.L, allowed_lo=2, allowed_hi=12, eos_id=self.eos)
        return Prompts(ids, torch.ones_like(ids, dtype=torch.bool), plan)


def _module(task=None, loss=None, **kw):
    from wm.stages.grpo import GRPOModule

    L.seed_everything(0)
    return GRPOModule(task or RangeTask(), tiny_llama_factory(0),
                      partial(torch.optim.SGD, lr=0.1), loss or GRPOLossConfig(),
                      init_policy=None, **{"group_size": 8, "micro_batch_size": 32, **kw})


def _trainer(steps=1):
    return L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                     use_distributed_sampler=False)


def test_recomputed_logprobs_equal_the_samplers_at_temperature_and_range():
    module = _module()
    policy = module.policy.eval()
    batch = next(iter(TargetTokenData(batch_size=4).train_dataloader()))
    prompts = module.task.prompts(batch)
    rollout = Sampler().sample(policy, prompts.ids, prompts.mask, prompts.plan, group_size=4,
                               temperature=0.5, generator=torch.Generator().manual_seed(1))
    ids = prompts.ids.repeat_interleave(4, 0)
    with torch.no_grad():
        logits = response_logits(policy, ids, torch.ones_like(ids, dtype=torch.bool),
                                 rollout.tokens)
    m = rollout.mask
    ours = sampling_logprobs(logits, rollout.tokens, prompts.plan.ranges, 0.5, valid=m)
    torch.testing.assert_close(ours[m], rollout.logprobs[m], atol=1e-5, rtol=0)
    assert (ours[~m] == 0).all()
    # the old computation (raw full-vocabulary softmax) is another distribution
    raw = token_logprobs(logits.float(), rollout.tokens)
    assert (raw[m] - rollout.logprobs[m]).abs().max() > 0.05
    ent = sampling_entropy(logits, prompts.plan.ranges, 0.5, valid=m)
    assert (ent[m] > 0).all() and (ent[m] <= torch.log(torch.tensor(10.0)) + 1e-5).all()


def test_grpo_step_is_on_policy_at_temperature_half():
    """A real training step at T=0.5 on a range-restricted vocabulary: the logged alarm
    |sampler log-prob - recomputed old log-prob| stays at float noise, and the first (only)
    optimizer step of fresh samples sees ratio 1 and no clipping."""
    module = _module(temperature=0.5)
    trainer = _trainer(1)
    trainer.fit(module, datamodule=TargetTokenData(batch_size=4))
    m = trainer.callback_metrics
    assert float(m["grpo/logp_diff/max"]) < 1e-4
    assert float(m["grpo/ratio_mean"]) == pytest.approx(1.0, abs=1e-6)
    assert float(m["grpo/clip_frac_low"]) == 0 and float(m["grpo/clip_frac_high"]) == 0


def test_lora_dropout_is_off_in_every_grpo_pass():
    """With the paper's LoRA dropout (0.05) active, a train-mode pass and an eval-mode pass of
    the same tokens differ, so the first PPO ratio would not be 1. GRPO switches it off."""
    from wm.language.model import apply_lora
    from wm.utils.dropout import disable_dropout

    task = TargetTokenTask()
    base = tiny_llama_factory(0)(vocab_size=16)
    lora = apply_lora(base, {"r": 8, "alpha": 16, "dropout": 0.05})
    for n, p in lora.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    ids = torch.randint(16, (8, 4), generator=torch.Generator().manual_seed(0))
    tokens = torch.randint(16, (8, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids, dtype=torch.bool)

    def logp(train: bool):
        lora.train(train)
        torch.manual_seed(0)
        with torch.no_grad():
            return token_logprobs(response_logits(lora, ids, mask, tokens).float(), tokens)

    assert (logp(True) - logp(False)).abs().max() > 1e-3          # dropout is really there
    assert disable_dropout(lora) > 0
    torch.testing.assert_close(logp(True), logp(False), rtol=0, atol=0)   # ratio exactly 1

    module = _module(task=task, loss=GRPOLossConfig(kl_coef=0.0))
    assert not any(getattr(mod, "p", 0) for mod in module.policy.modules()
                   if isinstance(mod, torch.nn.Dropout))


def test_dr_grpo_uses_the_configured_max_len(monkeypatch):
    import wm.stages.grpo as grpo

    seen = []
    real = grpo.grpo_loss

    def spy(*args, **kwargs):
        seen.append(kwargs["max_len"])
        return real(*args, **kwargs)

    monkeypatch.setattr(grpo, "grpo_loss", spy)
    _trainer(1).fit(_module(task=TargetTokenTask(eos=5),
                            loss=GRPOLossConfig(aggregation="dr_grpo", max_len=100)),
                    datamodule=TargetTokenData(batch_size=4))
    assert seen and set(seen) == {100}
    seen.clear()                 # default: the plan's response length, not the batch's width
    _trainer(1).fit(_module(task=TargetTokenTask(eos=5), loss=GRPOLossConfig(aggregation="dr_grpo")),
                    datamodule=TargetTokenData(batch_size=4))
    assert set(seen) == {6}


def test_reference_and_kl_settings():
    with pytest.raises(ValueError, match=r"kl_coef=0.001.*use_reference=false"):
        _module(use_reference=False)
    assert _module(loss=GRPOLossConfig(kl_coef=0.0)).reference is None      # no needless copy
    assert _module(use_reference=False, loss=GRPOLossConfig(kl_coef=0.0)).reference is None
    assert _module().reference is not None
    with pytest.raises(ValueError, match="stage.module.top_k"):
        _module(top_k=50)


class NaNTask(TargetTokenTask):
    def rewards(self, preds, batch, group_size):
        out = super().rewards(preds, batch, group_size)
        out["reward"] = out["reward"].clone()
        out["reward"][::4] = float("nan")                      # a quarter unscorable
        return out


def test_nan_rewards_are_counted_not_silently_zeroed():
    trainer = _trainer(1)
    trainer.fit(_module(task=NaNTask()), datamodule=TargetTokenData(batch_size=4))
    m = trainer.callback_metrics
    assert float(m["grpo/reward_nan"]) == pytest.approx(0.25)
    assert torch.isfinite(m["grpo/policy_loss"])
