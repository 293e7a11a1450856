"""The text response budget counts the answer's tokens AND its EOS, everywhere (issue #27).

``data.task.max_response_tokens`` is what the sampler may write (``ResponsePlan.length``), EOS
included, as verl's ``max_response_length``; so the DataModule keeps a target only when its
tokens plus EOS fit, ``responses`` refuses a longer one, and every kept target can be generated
in full, stop included. Before, a target of exactly the budget was kept but its best rollout
was cut before the EOS (counted as never stopped).
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from wm.data.text import TextStateDataModule, collate_text
from wm.language.tiny import train_bpe_tokenizer
from wm.rollout.sampler import Sampler
from wm.tasks.text import TextStateTask

SHORT, LONG = "lamp on", "lamp on count three lamp off count four"


class WordsWorld:
    """Records whose target is a fixed string (test stand-in for a text world)."""

    name = "words"

    def load(self, seed, max_train_records):
        records = [{"target": SHORT}, {"target": LONG}]
        return records, records

    def prompt_candidates(self, record, shorten, fits):
        yield "State: lamp\nAction: look\n"

    def target(self, record):
        return record["target"]

    def changed(self, record):
        return True


def exact_rewards(completions, records):
    return {"exact": torch.tensor([float(c == r["target"]) for c, r in zip(completions, records)])}


class TeacherForced(nn.Module):
    """A policy that puts all its mass on ``response`` (then EOS), whatever it is shown."""

    def __init__(self, response: list[int], prompt_len: int, vocab: int, eos: int):
        super().__init__()
        self.response, self.prompt_len, self.vocab, self.eos = response, prompt_len, vocab, eos

    def forward(self, input_ids, **kwargs):
        R, T = input_ids.shape
        n = T - self.prompt_len                                   # response tokens so far
        nxt = self.response[n] if n < len(self.response) else self.eos
        logits = torch.full((R, T, self.vocab), -1e4)             # (R, T, V)
        logits[:, -1, nxt] = 0.0
        return SimpleNamespace(logits=logits)


@pytest.fixture(scope="module")
def tok():
    return train_bpe_tokenizer(["State: lamp\nAction: look\n", SHORT, LONG] * 4, vocab_size=300)


def n_tokens(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False).input_ids)


def setup(tok, budget: int):
    task = TextStateTask("wm.rewards.toy.toy_rewards", "exact", max_response_tokens=budget,
                         chat_template=False)
    task.reward_fn, task.tokenizer = exact_rewards, tok
    dm = TextStateDataModule(WordsWorld())
    task.connect(dm)
    dm.setup()
    return task, dm


def generate(task, item):
    """Greedy rollout of a policy that writes ``item``'s target then EOS, decoded and scored."""
    tok = task.tokenizer
    batch = collate_text([item])
    prompts = task.prompts(batch)
    policy = TeacherForced(tok(item["target"], add_special_tokens=False).input_ids,
                           prompts.ids.shape[1], len(tok), tok.eos_token_id)
    roll = Sampler(temperature=0.0, use_cache=False).sample(policy, prompts.ids, prompts.mask,
                                                            prompts.plan)
    preds = task.decode(roll.tokens, batch, group_size=1)
    return roll, preds, task.rewards(preds, batch, group_size=1)


def test_a_target_of_exactly_the_budget_is_dropped_and_counted(tok):
    budget = n_tokens(tok, LONG)                      # LONG + EOS is one token over
    _, dm = setup(tok, budget)
    assert dm.stats["train"]["dropped_long_target"] == 1
    assert [i["target"] for i in dm.train_items] == [SHORT]
    _, dm = setup(tok, budget + 1)                    # LONG + EOS fits exactly
    assert dm.stats["train"]["dropped_long_target"] == 0


@pytest.mark.parametrize("extra", [0, 1])
def test_every_kept_target_is_generated_in_full_with_its_eos(tok, extra):
    task, dm = setup(tok, n_tokens(tok, LONG) + extra)
    for item in dm.train_items:
        roll, preds, rewards = generate(task, item)
        n = n_tokens(tok, item["target"])
        assert roll.tokens.shape[1] > n, "no slot left for the EOS"
        assert roll.tokens[0, n] == tok.eos_token_id, item["target"]   # it stopped
        assert int(preds["lengths"][0]) == n + 1 <= task.max_response_tokens
        assert float(rewards["reward"][0]) == 1.0
        assert task.responses(collate_text([item])).loss_mask.sum() == n + 1  # SFT: target + EOS


def test_responses_refuse_a_target_whose_eos_does_not_fit(tok):
    task, _ = setup(tok, n_tokens(tok, LONG) + 1)
    task.max_response_tokens = n_tokens(tok, LONG)
    with pytest.raises(ValueError, match="max_response_tokens"):
        task.responses(collate_text([{"prompt": "p", "target": LONG, "record": {},
                                      "changed": True}]))
