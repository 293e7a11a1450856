"""TRL-style completion logs of a GRPO step (wm.stages.completion_stats): completion lengths
(EOS counted, as TRL does), the share clipped at the budget and terminated by EOS, the lengths of
the terminated ones, and the completions the reward parser could not read.

The text rig is a real GRPO step (tiny Qwen2, ``TextStateTask``, the toy world's real reward
and parser) whose sampler is scripted, so the rollout holds known completions: some stop with
EOS (one exactly at the budget's last slot), some hit the budget, some are unparseable.
"""
from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from stage_fixtures import TargetTokenData, TargetTokenTask, tiny_llama_factory
from wm.data.text import collate_text
from wm.language.tiny import tiny_lm
from wm.rl.loss import GRPOLossConfig
from wm.rollout.plan import Rollout
from wm.stages.completion_stats import completion_stats, pooled_completion_stats
from wm.textworld.toy import toy_prompt, toy_records, toy_target

BUDGET, G = 24, 4
RECORDS = toy_records(2, seed=3)
TEXTS = [toy_prompt(r) + toy_target(r) for r in toy_records(40, seed=0)] + ["lamp " * 30]
C = "grpo/completions/"


def scripted_rows(tok) -> list[tuple[list[int], bool, bool]]:
    """(ids, terminated, parsed) for the 2 x G rows: per prompt its right answer + EOS, an
    unparseable line + EOS, the answer ended by EOS in the budget's last slot (parsed, length
    BUDGET, terminated) and a run of "lamp" filling the budget with no EOS (clipped)."""
    eos = tok.eos_token_id
    enc = partial(tok, add_special_tokens=False)
    lamp = enc(" lamp").input_ids
    rows = []
    for rec in RECORDS:
        answer = enc(toy_target(rec)).input_ids
        assert len(answer) < BUDGET - 1, "raise BUDGET: the answer must leave room to pad"
        prose = enc("no idea").input_ids
        at_end = (lamp * BUDGET)[:BUDGET - 1 - len(answer)] + answer
        rows += [(answer + [eos], True, True), (prose + [eos], True, False),
                 (at_end + [eos], True, True), ((lamp * BUDGET)[:BUDGET], False, False)]
    return rows


class ScriptedSampler:
    """Stands in for ``wm.rollout.sampler.Sampler``: returns the scripted rows as a rollout
    (pad after EOS, mask True up to and including EOS), whatever the policy."""

    rows: list = []

    def __init__(self, **kwargs):
        pass

    def sample(self, policy, ids, mask, plan, group_size=1, **kwargs) -> Rollout:
        N, Lp = len(self.rows), plan.length
        tokens = torch.full((N, Lp), plan.pad_id, dtype=torch.long)
        valid = torch.zeros(N, Lp, dtype=torch.bool)
        for i, (row, _, _) in enumerate(self.rows):
            tokens[i, :len(row)] = torch.tensor(row)
            valid[i, :len(row)] = True
        return Rollout(tokens, torch.zeros(N, Lp), valid,
                       torch.arange(N // group_size).repeat_interleave(group_size))


def fit_one_step(module, **data) -> dict[str, float]:
    """One GRPO step on CPU; the logged scalars. ``data``: ``train_dataloaders`` or
    ``datamodule``."""
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, use_distributed_sampler=False)
    trainer.fit(module, **data)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_text_step_logs_lengths_clipping_termination_and_parse_failures(monkeypatch):
    import wm.rollout.scoring as scoring
    from wm.stages.grpo import GRPOModule
    from wm.tasks.text import TextStateTask

    L.seed_everything(0)
    factory = partial(tiny_lm, TEXTS, vocab_size=300, hidden=32, layers=1, heads=2)
    task = TextStateTask("wm.rewards.toy.toy_rewards", "binary", max_response_tokens=BUDGET,
                         chat_template=False)
    module = GRPOModule(task, factory, partial(torch.optim.SGD, lr=0.0), GRPOLossConfig(),
                        init_policy=None, group_size=G, micro_batch_size=8)
    rows = scripted_rows(task.tokenizer)
    monkeypatch.setattr(ScriptedSampler, "rows", rows)
    monkeypatch.setattr(scoring, "Sampler", ScriptedSampler)
    items = [{"prompt": toy_prompt(r), "target": toy_target(r), "record": r, "changed": True}
             for r in RECORDS]
    loader = DataLoader(items, batch_size=2, collate_fn=collate_text)
    logged = fit_one_step(module, train_dataloaders=loader)

    lengths = [len(ids) for ids, _, _ in rows]          # tokens written, EOS included
    done = [t for _, t, _ in rows]
    term = [n for n, t in zip(lengths, done) if t]
    assert lengths[2] == BUDGET and lengths[3] == BUDGET and done[2] and not done[3]
    want = {"mean_length": sum(lengths) / 8, "max_length": BUDGET, "min_length": min(lengths),
            "clipped_ratio": 2 / 8, "terminated_ratio": 6 / 8,
            "mean_terminated_length": sum(term) / 6, "max_terminated_length": BUDGET,
            "min_terminated_length": min(term)}
    for k, v in want.items():
        assert logged[C + k] == pytest.approx(v), k
    # 2 prose + 2 "lamp" runs unparseable; the answers (also the one at the budget's end) parse
    fails = sum(not parsed for _, _, parsed in rows)
    assert fails == 4 and logged["grpo/parse_fail_count"] == fails
    assert logged["grpo/parse_fail_frac"] == pytest.approx(4 / 8)
    assert logged["grpo/reward/parse_fail/mean"] == pytest.approx(4 / 8)   # the reward agrees


def test_fixed_length_video_style_step_logs_only_the_lengths():
    from wm.stages.grpo import GRPOModule

    L.seed_everything(0)
    module = GRPOModule(TargetTokenTask(vocab=16, response_len=6), tiny_llama_factory(0),
                        partial(torch.optim.SGD, lr=0.0), GRPOLossConfig(), init_policy=None,
                        group_size=4, micro_batch_size=16)
    logged = fit_one_step(module, datamodule=TargetTokenData(batch_size=2))
    for k in ("mean_length", "max_length", "min_length"):
        assert logged[C + k] == 6.0, k
    assert not [k for k in logged if k.startswith((C + "clipped", C + "terminated",
                                                   C + "mean_terminated", "grpo/parse_fail"))]


def test_stats_of_hand_made_rows_count_the_eos_and_ignore_pads_equal_to_it():
    eos = 9                                   # pad == eos: the pads after EOS must not count
    tokens = torch.tensor([[1, 2, 9, 9, 9], [1, 2, 3, 4, 5], [1, 2, 3, 4, 9], [9, 9, 9, 9, 9]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]],
                        dtype=torch.bool)
    length, terminated = completion_stats(tokens, mask, eos)
    assert length.tolist() == [3, 5, 5, 1]
    assert terminated.tolist() == [True, False, True, True]
    length, terminated = completion_stats(tokens, mask, None)    # fixed length: no EOS
    assert length.tolist() == [3, 5, 5, 1] and terminated is None


class TwoRanks:
    """A trainer whose ``strategy.reduce`` adds a second rank: the first pass records what the
    other rank sends, the second combines it with this rank's tensors (sum / max)."""

    def __init__(self):
        self.world_size, self.sent, self.recording = 2, [], True
        self.strategy = self

    def reduce(self, t, reduce_op="sum"):
        if self.recording:
            self.sent.append(t.clone())
            return t
        other = self.sent.pop(0)
        return t + other if reduce_op == "sum" else torch.maximum(t, other)


def test_pooling_over_ranks_equals_the_stats_of_all_rows():
    a = (torch.tensor([3., 5., 5.]), torch.tensor([True, False, True]), torch.tensor([0., 1., 0.]))
    b = (torch.tensor([2., 7.]), torch.tensor([False, False]), torch.tensor([1., 1.]))
    trainer = TwoRanks()
    pooled_completion_stats(trainer, *b)                  # rank 1's tensors, recorded
    trainer.recording = False
    got = pooled_completion_stats(trainer, *a)
    alone = pooled_completion_stats(None, *(torch.cat([x, y]) for x, y in zip(a, b)))
    assert got == pytest.approx(alone)
    assert alone == pytest.approx({
        "completions/mean_length": 22 / 5, "completions/max_length": 7,
        "completions/min_length": 2, "completions/clipped_ratio": 3 / 5,
        "completions/terminated_ratio": 2 / 5, "completions/mean_terminated_length": 4,
        "completions/max_terminated_length": 5, "completions/min_terminated_length": 3,
        "parse_fail_count": 3, "parse_fail_frac": 3 / 5})
    none_done = pooled_completion_stats(None, b[0], b[1], None)
    assert "completions/mean_terminated_length" not in none_done    # no terminated row: absent
    assert "parse_fail_frac" not in none_done and none_done["completions/clipped_ratio"] == 1
