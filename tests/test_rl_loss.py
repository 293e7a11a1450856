"""The composed GRPO loss, its config and the logits helpers (wm.rl.loss)."""
import math

import pytest
import torch

from wm.rl.loss import GRPOLossConfig, grpo_loss, token_entropy, token_logprobs

LOGP = torch.tensor([[-1.0, -2.0], [-0.5, -1.0]])
REF = torch.tensor([[-1.5, -1.0], [-0.5, -1.0]])
ADV = torch.tensor([1.0, -2.0])
MASK = torch.tensor([[True, True], [True, False]])
K3_ROW0 = [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 2.0]  # d = ref - logp = -0.5, 1.0


def test_hand_computed_loss_and_stats():
    cfg = GRPOLossConfig(entropy_coef=0.01).validate()
    entropy = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    loss, stats = grpo_loss(LOGP, LOGP.clone(), REF, ADV, MASK, cfg, entropy=entropy)
    # rho = 1: per-token -A = [[-1,-1],[2,2]]; token-mean over 3 valid = (-1-1+2)/3 = 0
    policy = 0.0
    kl = (K3_ROW0[0] + K3_ROW0[1] + 0.0) / 3
    ent = (1 + 2 + 3) / 3
    assert stats["policy_loss"].item() == pytest.approx(policy, abs=1e-7)
    assert stats["kl"].item() == pytest.approx(kl)
    assert stats["entropy"].item() == pytest.approx(ent)
    assert loss.item() == pytest.approx(policy + 0.001 * kl - 0.01 * ent)
    assert stats["ratio_mean"].item() == pytest.approx(1.0)
    for key in ("clip_frac_low", "clip_frac_high", "dual_clip_frac"):
        assert stats[key].item() == 0.0


def test_gradient_is_minus_advantage_over_tokens():
    cfg = GRPOLossConfig(kl_coef=0.0)
    logp = LOGP.clone().requires_grad_(True)
    loss, _ = grpo_loss(logp, LOGP.clone(), None, ADV, MASK, cfg)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1 / 3, -1 / 3], [2 / 3, 0.0]]))


def test_clip_fractions():
    old = torch.zeros(2, 2)
    logp = torch.log(torch.tensor([[1.5, 1.0], [0.5, 4.0]]))
    loss, stats = grpo_loss(logp, old, None, torch.tensor([1.0, -1.0]),
                            torch.ones(2, 2, dtype=torch.bool), GRPOLossConfig(kl_coef=0.0))
    # per token: -1.2 (clipped high), -1, 0.8 (clipped low), 3 (dual clipped)
    assert loss.item() == pytest.approx((-1.2 - 1.0 + 0.8 + 3.0) / 4)
    assert stats["clip_frac_high"].item() == pytest.approx(0.25)
    assert stats["clip_frac_low"].item() == pytest.approx(0.25)
    assert stats["dual_clip_frac"].item() == pytest.approx(0.25)
    assert stats["ratio_mean"].item() == pytest.approx((1.5 + 1.0 + 0.5 + 4.0) / 4)


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean", "dr_grpo"])
def test_micro_batches_sum_to_full_batch(aggregation):
    g = torch.Generator().manual_seed(0)
    logp, old, ref = (torch.randn(5, 4, generator=g) - 2 for _ in range(3))
    adv = torch.randn(5, generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]],
                        dtype=torch.bool)
    cfg = GRPOLossConfig(aggregation=aggregation, entropy_coef=0.1, kl_coef=0.5)
    ent = torch.rand(5, 4, generator=g)
    full, full_stats = grpo_loss(logp, old, ref, adv, mask, cfg, entropy=ent)
    tokens, seqs = int(mask.sum()), int(mask.any(-1).sum())
    parts = [grpo_loss(logp[s], old[s], ref[s], adv[s], mask[s], cfg, entropy=ent[s],
                       global_tokens=tokens, global_seqs=seqs) for s in (slice(0, 1), slice(1, 5))]
    assert (parts[0][0] + parts[1][0]).item() == pytest.approx(full.item(), rel=1e-5)
    for key, value in full_stats.items():
        summed = parts[0][1][key] + parts[1][1][key]
        assert summed.item() == pytest.approx(value.item(), rel=1e-5, abs=1e-7), key


def test_config_validation_messages():
    with pytest.raises(ValueError, match="seq-mean-token-mean"):
        GRPOLossConfig(aggregation="sum").validate()
    with pytest.raises(ValueError, match="low_var_kl"):
        GRPOLossConfig(kl_estimator="k7").validate()
    with pytest.raises(ValueError, match="batch_std"):
        GRPOLossConfig(advantage="rank").validate()
    with pytest.raises(ValueError, match="dual_clip"):
        GRPOLossConfig(dual_clip=0.5).validate()
    with pytest.raises(ValueError, match="eps_low"):
        GRPOLossConfig(eps_low=1.0).validate()
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(LOGP, LOGP, None, ADV, MASK, GRPOLossConfig())
    with pytest.raises(ValueError, match="entropy"):
        grpo_loss(LOGP, LOGP, REF, ADV, MASK, GRPOLossConfig(entropy_coef=0.1))


@pytest.mark.parametrize("field,value", [
    ("eps_low", 1.0), ("eps_high", -0.1), ("dual_clip", 0.5), ("kl_coef", -1.0),
    ("entropy_coef", -0.1), ("kl_estimator", "k9"), ("aggregation", "tokenmean"),
    ("advantage", "rank"), ("advantage_eps", -1.0), ("importance", "word"), ("max_len", 0)])
def test_every_loss_error_names_the_command_line_option(field, value):
    """Each refusal starts with the override the user typed, ``stage.module.loss.<f>=<v>:``
    (the CLI prints such errors as one line; new-user trial: short names were ambiguous)."""
    with pytest.raises(ValueError) as err:
        GRPOLossConfig(**{field: value}).validate()
    assert str(err.value).startswith(f"stage.module.loss.{field}={value!r}: "), str(err.value)


def test_token_logprobs_and_entropy_hand_computed():
    logits = torch.tensor([[[0.0, 0.0, math.log(2.0)], [5.0, 5.0, 5.0]]])  # probs 1/4 1/4 1/2
    tokens = torch.tensor([[2, 0]])
    torch.testing.assert_close(token_logprobs(logits, tokens),
                               torch.tensor([[math.log(0.5), math.log(1 / 3)]]))
    torch.testing.assert_close(token_entropy(logits),
                               torch.tensor([[1.5 * math.log(2.0), math.log(3.0)]]))


def test_logits_helpers_chunking_bf16_and_grad():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 3, 7, generator=g, requires_grad=True)
    tokens = torch.randint(0, 7, (5, 3), generator=g)
    direct = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
    chunked = token_logprobs(logits, tokens, chunk_rows=2)
    torch.testing.assert_close(chunked, direct)
    chunked.sum().backward()
    assert logits.grad is not None
    out = token_logprobs(logits.detach().bfloat16(), tokens)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, direct.detach(), atol=0.05, rtol=0)
    with pytest.raises(ValueError, match="chunk_rows"):
        token_entropy(logits, chunk_rows=0)


def test_dr_grpo_max_len_argument_overrides_config():
    cfg = GRPOLossConfig(kl_coef=0.0, aggregation="dr_grpo", max_len=4)
    ones = torch.ones(2, 2, dtype=torch.bool)
    adv = torch.tensor([1.0, 1.0])
    # rho = 1, per-token loss -1, sum -4 over 2 sequences
    loss, _ = grpo_loss(LOGP, LOGP.clone(), None, adv, ones, cfg)
    assert loss.item() == pytest.approx(-4 / (2 * 4))
    loss, _ = grpo_loss(LOGP, LOGP.clone(), None, adv, ones, cfg, max_len=8)
    assert loss.item() == pytest.approx(-4 / (2 * 8))
