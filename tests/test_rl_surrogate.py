"""Clipped / dual-clipped surrogate on hand-picked ratios (wm.rl.surrogate)."""
import math

import pytest
import torch

from wm.rl.surrogate import clipped_surrogate

# one token per row; ratios and advantages chosen to hit every branch (eps 0.2, c 3)
RATIOS = torch.tensor([1.0, 1.5, 0.5, 0.5, 1.5, 4.0, 2.0])
ADV = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 0.0])
# A>0: rho 1 -> -1; rho 1.5 -> max(-1.5,-1.2) = -1.2 (clipped high); rho .5 -> max(-.5,-.8) = -.5
# A<0: rho .5 -> max(.5,.8) = .8 (clipped low); rho 1.5 -> max(1.5,1.2) = 1.5;
#      rho 4 -> max(4,1.2) = 4 -> dual min(4, 3) = 3;   A=0 -> 0
EXPECTED = torch.tensor([-1.0, -1.2, -0.5, 0.8, 1.5, 3.0, 0.0])


def _run(dual_clip=3.0, adv=ADV):
    logp = RATIOS.log().unsqueeze(1).requires_grad_(True)  # (7, 1)
    old = torch.zeros(7, 1)
    loss, stats = clipped_surrogate(logp, old, adv, 0.2, 0.2, dual_clip)
    return logp, loss, stats


def test_loss_values_and_flags():
    _, loss, stats = _run()
    torch.testing.assert_close(loss.squeeze(1), EXPECTED)
    assert stats["clipped_high"].squeeze(1).tolist() == [False, True, False, False, False, False,
                                                         False]
    assert stats["clipped_low"].squeeze(1).tolist() == [False, False, False, True, False, False,
                                                        False]
    assert stats["dual_clipped"].squeeze(1).tolist() == [False] * 5 + [True, False]


def test_without_dual_clip():
    _, loss, stats = _run(dual_clip=None)
    assert loss[5, 0].item() == pytest.approx(4.0)
    assert not stats["dual_clipped"].any()


def test_gradients_zero_where_clipped():
    logp, loss, _ = _run()
    loss.sum().backward()
    # d(-A*rho)/dlogp = -A*rho where unclipped, 0 where a clip is active
    expected = torch.tensor([-1.0, 0.0, -0.5, 0.0, 1.5, 0.0, 0.0])
    torch.testing.assert_close(logp.grad.squeeze(1), expected)


def test_token_level_advantages_and_asymmetric_eps():
    logp = torch.log(torch.tensor([[1.25, 1.25]]))
    adv = torch.tensor([[1.0, 2.0]])
    loss, stats = clipped_surrogate(logp, torch.zeros(1, 2), adv, eps_low=0.2, eps_high=0.28)
    torch.testing.assert_close(loss, torch.tensor([[-1.25, -2.5]]))  # 1.25 < 1.28: unclipped
    assert not stats["clipped_high"].any()
    loss, stats = clipped_surrogate(logp, torch.zeros(1, 2), adv, eps_low=0.2, eps_high=0.2)
    torch.testing.assert_close(loss, torch.tensor([[-1.2, -2.4]]))
    assert stats["clipped_high"].all()


def test_extreme_log_ratio_is_finite():
    loss, stats = clipped_surrogate(torch.tensor([[60.0]]), torch.tensor([[0.0]]),
                                    torch.tensor([-1.0]), dual_clip=None)
    assert loss.item() == pytest.approx(math.exp(20.0), rel=1e-5)


def test_bad_config():
    with pytest.raises(ValueError, match="dual_clip"):
        clipped_surrogate(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), dual_clip=1.0)
    with pytest.raises(ValueError, match="eps"):
        clipped_surrogate(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), eps_low=-0.1)
    with pytest.raises(ValueError, match="advantages shape"):
        clipped_surrogate(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3, 1))
