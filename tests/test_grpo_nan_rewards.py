"""NaN (unscorable) rewards through a real GRPO step: the row's advantage is exactly 0 and the
other rows of its group are normalised among themselves (wm.stages.grpo -> group_advantages)."""
from functools import partial

import lightning as L
import torch

from stage_fixtures import TargetTokenData, TargetTokenTask, tiny_llama_factory
from wm.rl.advantages import group_advantages
from wm.rl.loss import GRPOLossConfig

G = 4
EPS = 1e-3          # not the default: stage.module.loss.advantage_eps must reach the advantages


class NegativeNaNTask(TargetTokenTask):
    """A negative reward like the video one, -(1 - hit rate) - 0.1 * row; row 2 of every group
    unscorable (NaN)."""

    def rewards(self, preds, batch, group_size):
        out = super().rewards(preds, batch, group_size)
        n = out["reward"].shape[0]
        reward = -(1.0 - out["reward"]) - 0.1 * (torch.arange(n) % group_size)
        reward[2::group_size] = float("nan")
        out["reward"] = reward
        return out


def test_nan_rows_get_zero_advantage_in_a_real_step(monkeypatch):
    import wm.stages.grpo as grpo

    seen = []

    def spy(rewards, group_size, **kw):
        adv = group_advantages(rewards, group_size, **kw)
        seen.append((rewards.detach().clone(), adv.detach().clone()))
        return adv

    monkeypatch.setattr(grpo, "group_advantages", spy)
    L.seed_everything(0)
    module = grpo.GRPOModule(NegativeNaNTask(vocab=16), tiny_llama_factory(0),
                             partial(torch.optim.SGD, lr=0.1), GRPOLossConfig(advantage_eps=EPS),
                             init_policy=None, group_size=G, micro_batch_size=16)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, use_distributed_sampler=False)
    trainer.fit(module, datamodule=TargetTokenData(batch_size=4))
    assert seen
    rewards, adv = seen[0]
    nan = rewards.isnan()
    assert nan.sum() == rewards.numel() // G            # the NaN reached the advantages as NaN
    assert torch.isfinite(adv).all() and torch.equal(adv[nan], torch.zeros(int(nan.sum())))
    for g in range(rewards.numel() // G):               # finite rows: their own mean and std
        r = rewards[g * G:(g + 1) * G]
        ok = ~r.isnan()
        f = r[ok]
        want = (f - f.mean()) / (f.std(unbiased=True) + EPS)
        torch.testing.assert_close(adv[g * G:(g + 1) * G][ok], want)
    assert torch.isfinite(trainer.callback_metrics["grpo/policy_loss"])
