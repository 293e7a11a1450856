"""DAPO dynamic sampling: zero-variance groups are replaced by informative groups of freshly
drawn prompts, the batch keeps its size (hand-made merges, and a real training step)."""
from functools import partial

import lightning as L
import torch

from stage_fixtures import TargetTokenData, TargetTokenTask, tiny_llama_factory
from wm.rl.loss import GRPOLossConfig
from wm.rollout.plan import ResponsePlan, Rollout
from wm.stages.dynamic_sampling import merge_prompts, merge_rollouts, plan_slots
from wm.tasks.base import Prompts


def test_plan_slots_fills_zero_slots_in_draw_order():
    zero = torch.tensor([False, True, True, False])
    extra = [torch.tensor([True, False]), torch.tensor([False, True, True])]
    assert plan_slots(zero, extra) == [(0, 0), (1, 0), (2, 1), (0, 3)]
    # not enough donors: the remaining zero slot keeps its own group
    assert plan_slots(zero, [torch.tensor([False, True])]) == [(0, 0), (1, 1), (0, 2), (0, 3)]


def test_merge_left_pads_prompts_and_keeps_each_groups_rows():
    plan = ResponsePlan(3, forced=torch.tensor([[-1, 7, -1], [-1, 8, -1]]), allowed_lo=0,
                        allowed_hi=6)
    a = Prompts(torch.tensor([[1, 2], [3, 4]]), torch.ones(2, 2, dtype=torch.bool), plan)
    plan_b = ResponsePlan(3, forced=torch.tensor([[-1, 9, -1], [-1, 5, -1]]), allowed_lo=0,
                          allowed_hi=6)
    b = Prompts(torch.tensor([[5, 6, 7], [0, 8, 9]]),
                torch.tensor([[True, True, True], [False, True, True]]), plan_b)
    slots = [(0, 0), (1, 1)]
    m = merge_prompts([a, b], slots)
    assert m.ids.tolist() == [[0, 1, 2], [0, 8, 9]]
    assert m.mask.tolist() == [[False, True, True], [False, True, True]]
    assert m.plan.forced.tolist() == [[-1, 7, -1], [-1, 5, -1]]
    G = 2
    ra = Rollout(torch.arange(12).view(4, 3), torch.zeros(4, 3), torch.ones(4, 3, dtype=torch.bool),
                 torch.tensor([0, 0, 1, 1]))
    rb = Rollout(100 + torch.arange(12).view(4, 3), torch.zeros(4, 3),
                 torch.ones(4, 3, dtype=torch.bool), torch.tensor([0, 0, 1, 1]))
    r = merge_rollouts([ra, rb], slots, G)
    assert r.tokens[:, 0].tolist() == [0, 3, 106, 109] and r.prompt_index.tolist() == [0, 0, 1, 1]


class HalfConstantTask(TargetTokenTask):
    """Prompts whose first id is odd score a constant 0.5 (no signal); others the hit rate."""

    def rewards(self, preds, batch, group_size):
        out = super().rewards(preds, batch, group_size)
        odd = (batch["prompt"][:, 0] % 2 == 1).repeat_interleave(group_size)
        out["reward"] = torch.where(odd, torch.full_like(out["reward"], 0.5), out["reward"])
        return out


def _step(**kw):
    from wm.stages.grpo import GRPOModule

    L.seed_everything(0)
    module = GRPOModule(HalfConstantTask(vocab=16), tiny_llama_factory(0),
                        partial(torch.optim.SGD, lr=0.1), GRPOLossConfig(),
                        init_policy=None, group_size=8, micro_batch_size=32, **kw)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, use_distributed_sampler=False)
    trainer.fit(module, datamodule=TargetTokenData(batch_size=4))
    return trainer.callback_metrics


def test_dynamic_sampling_removes_dead_groups_in_a_real_step():
    plain = _step()
    dyn = _step(dynamic_sampling=True, dynamic_sampling_max_draws=3)
    assert float(plain["grpo/frac_reward_zero_std"]) > 0.2
    assert float(dyn["grpo/dynamic_sampling/replaced"]) >= 1
    assert float(dyn["grpo/frac_reward_zero_std"]) < float(plain["grpo/frac_reward_zero_std"])
    assert float(dyn["grpo/response_tokens"]) == float(plain["grpo/response_tokens"])  # same size


def _toy_group_tokens(task, rows: list[list[int]]) -> torch.Tensor:
    """(len(rows), max_response_tokens) ids: each row's ids, then EOS unless the row fills the
    budget (then it never stopped), padded with EOS."""
    eos, width = task.tokenizer.eos_token_id, task.max_response_tokens
    out = torch.full((len(rows), width), eos)
    for i, r in enumerate(rows):
        out[i, :min(len(r), width)] = torch.tensor(r[:width])
    return out


def test_dynamic_sampling_judges_the_task_outcome_not_the_length_shaping():
    """DAPO filters on the verifiable outcome: four wrong answers of different lengths are not
    informative even though the overlong penalty makes their rewards differ."""
    from wm.language.presets import tiny_causal_lm
    from wm.stages.dynamic_sampling import informative
    from wm.tasks.text import TextStateTask
    from wm.textworld.toy import MARKER

    task = TextStateTask("wm.rewards.toy.toy_rewards", "key_acc", max_response_tokens=64,
                         overlong_cache=32)
    task.build_policy(tiny_causal_lm)
    tok = task.tokenizer
    record = {"state": {"lamp": "on", "count": 1}, "action": "look",
              "next_state": {"lamp": "on", "count": 1}}
    batch = {"record": [record, record], "changed": torch.tensor([False, False])}
    filler = tok.convert_tokens_to_ids("<think>")
    right = tok(MARKER + ' {"lamp": "on", "count": 1}', add_special_tokens=False).input_ids
    wrong = [[filler] * n for n in (10, 40, 50, 64)]           # unparseable, 11 .. 65 tokens
    rows = wrong + [right] + wrong[1:]                         # group 2: one right answer
    preds = task.decode(_toy_group_tokens(task, rows), batch, 4)
    comps = task.rewards(preds, batch, 4)
    assert comps["key_acc"][:4].eq(0).all()
    assert len(set(comps["reward"][:4].tolist())) == 4          # shaped rewards all differ
    assert informative(comps, 4).tolist() == [False, True]
    torch.testing.assert_close(comps["reward"], comps["task_reward"] + comps["overlong_penalty"])


def test_informative_uses_the_unshaped_reward_when_present():
    from wm.stages.dynamic_sampling import informative

    shaped = torch.tensor([0.0, -0.5, -1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    outcome = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    assert informative({"reward": shaped}, 4).tolist() == [True, False]
    assert informative({"reward": shaped, "task_reward": outcome}, 4).tolist() == [False, True]
    # NaN as in the advantages: [NaN, 1, 1, 1] carries no signal, [NaN, 0, 1, 1] does
    nan = torch.tensor([float("nan"), 1.0, 1.0, 1.0, float("nan"), 0.0, 1.0, 1.0])
    assert informative({"reward": nan}, 4).tolist() == [False, True]
