"""GSPO's sequence-level ratio and DAPO's soft overlong punishment on hand-computed tensors."""
import math

import pytest
import torch

from wm.rewards.overlong import soft_overlong_penalty
from wm.rl.loss import GRPOLossConfig, grpo_loss
from wm.rl.surrogate import clipped_surrogate, sequence_log_ratio


def test_sequence_log_ratio_is_the_masked_mean_per_row():
    logp = torch.tensor([[0.0, -1.0, -2.0], [-0.5, -0.5, 0.0]])
    old = torch.tensor([[-0.1, -1.3, 5.0], [-0.5, -0.7, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    lr = sequence_log_ratio(logp, old, mask)
    torch.testing.assert_close(lr[0], torch.full((3,), (0.1 + 0.3) / 2))   # masked token ignored
    torch.testing.assert_close(lr[1], torch.full((3,), 0.2 / 3))


def test_gspo_clips_one_ratio_per_response_and_spreads_its_gradient():
    # row 0: mean log-ratio 0.4 -> s = e^0.4 = 1.49 > 1 + 0.2, positive advantage: clipped
    # row 1: mean log-ratio -0.05 -> s = 0.951, inside the clip range: gradient flows
    logp = torch.tensor([[0.2, 0.6], [-0.1, 0.0]], requires_grad=True)
    old = torch.zeros(2, 2)
    mask = torch.ones(2, 2, dtype=torch.bool)
    adv = torch.tensor([1.0, 2.0])
    loss, st = clipped_surrogate(logp, old, adv, 0.2, 0.2, None, importance="sequence", mask=mask)
    s0, s1 = math.exp(0.4), math.exp(-0.05)
    torch.testing.assert_close(loss[0], torch.full((2,), -1.2))              # -clip(s0) * A
    torch.testing.assert_close(loss[1], torch.full((2,), -2.0 * s1))
    assert st["clipped_high"][0].all() and not st["clipped_high"][1].any()
    loss.sum().backward()
    # d/dlogp_t of sum_t(-A s) over the row's 2 tokens: -A * s * (1/|y|) * |y| = -A s each
    torch.testing.assert_close(logp.grad[0], torch.zeros(2))
    torch.testing.assert_close(logp.grad[1], torch.full((2,), -2.0 * s1))
    token, _ = clipped_surrogate(logp.detach(), old, adv, 0.2, 0.2, None)  # token level differs
    assert not torch.allclose(token, loss.detach())


def test_gspo_through_the_loss_config():
    cfg = GRPOLossConfig(importance="sequence", kl_coef=0.0, dual_clip=None,
                         aggregation="seq-mean-token-mean").validate()
    logp = torch.zeros(2, 3)
    loss, stats = grpo_loss(logp, logp, None, torch.tensor([1.0, -1.0]),
                            torch.ones(2, 3, dtype=torch.bool), cfg)
    assert float(stats["ratio_mean"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="importance"):
        GRPOLossConfig(importance="segment").validate()


def test_gspo_refuses_length_weighted_aggregation():
    # token-mean weighs each response by its length; GSPO's objective is a mean over responses
    for agg in ("token-mean", "seq-mean-token-sum", "dr_grpo"):
        with pytest.raises(ValueError,
                           match="stage.module.loss.aggregation=seq-mean-token-mean"):
            GRPOLossConfig(importance="sequence", aggregation=agg).validate()
    GRPOLossConfig(importance="sequence", aggregation="seq-mean-token-mean").validate()
    GRPOLossConfig(importance="token", aggregation="token-mean").validate()   # GRPO unchanged


def test_gspo_loss_is_the_papers_mean_over_responses():
    # two responses of 1 and 4 tokens; s_1 = e^0.1 (inside the clip), s_2 = e^-0.5 (clipped)
    logp = torch.tensor([[0.1, 0.0, 0.0, 0.0], [-0.5, -0.5, -0.5, -0.5]])
    old = torch.zeros(2, 4)
    mask = torch.tensor([[True, False, False, False], [True, True, True, True]])
    adv = torch.tensor([1.0, -0.5])
    s1, s2 = math.exp(0.1), math.exp(-0.5)
    per_response = torch.tensor([-min(s1 * 1.0, s1 * 1.0),                 # -min(s A, clip(s) A)
                                 -min(s2 * -0.5, 0.8 * -0.5)])
    paper = per_response.mean()                                      # (1/G) sum_i, equal weights
    cfg = GRPOLossConfig(importance="sequence", kl_coef=0.0, dual_clip=None,
                         aggregation="seq-mean-token-mean").validate()
    loss, _ = grpo_loss(logp, old, None, adv, mask, cfg)
    torch.testing.assert_close(loss, paper)
    # token-mean would weigh the long response 4:1 (the mix validate refuses)
    cfg.aggregation = "token-mean"
    tok_loss, _ = grpo_loss(logp, old, None, adv, mask, cfg)
    assert abs(float(tok_loss) - float(paper)) > 0.1


def test_soft_overlong_penalty_hand_computed():
    # L_max 100, cache 20: free up to 80, linear to -1 at 100, -1 beyond
    lengths = torch.tensor([10, 80, 81, 90, 100, 101, 500])
    want = torch.tensor([0.0, 0.0, -1 / 20, -0.5, -1.0, -1.0, -1.0])
    torch.testing.assert_close(soft_overlong_penalty(lengths, 100, 20), want)
    with pytest.raises(ValueError, match="overlong_cache"):
        soft_overlong_penalty(lengths, 100, 0)


def test_text_task_adds_the_overlong_penalty():
    from wm.language.presets import tiny_causal_lm
    from wm.tasks.text import TextStateTask

    task = TextStateTask("wm.rewards.toy.toy_rewards", "key_acc", max_response_tokens=8,
                         overlong_cache=4)
    task.build_policy(tiny_causal_lm)
    eos = task.tokenizer.eos_token_id
    other = task.tokenizer.convert_tokens_to_ids("<think>")
    tokens = torch.full((3, 8), other)
    tokens[0, 2] = eos          # 3 tokens: no penalty
    tokens[1, 5] = eos          # 6 tokens: (4 - 6) / 4 = -0.5
    batch = {"record": [{"state": {"lamp": "on", "count": 1}, "action": "look",
                         "next_state": {"lamp": "on", "count": 1}}], "changed": torch.tensor([False])}
    preds = task.decode(tokens, batch, 3)
    comps = task.rewards(preds, batch, 3)
    torch.testing.assert_close(comps["overlong_penalty"], torch.tensor([0.0, -0.5, -1.0]))
    torch.testing.assert_close(comps["reward"], comps["key_acc"] + comps["overlong_penalty"])
    with pytest.raises(ValueError, match="overlong_cache"):
        TextStateTask("wm.rewards.toy.toy_rewards", "key_acc", max_response_tokens=8,
                      overlong_cache=9)
