"""Group advantages on hand-computed rewards (wm.rl.advantages)."""
import math

import pytest
import torch

from wm.rl.advantages import ADVANTAGES, frac_zero_std, group_advantages

REWARDS = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])  # two groups of 3


def test_std_mode_hand_computed():
    # group 1: mean 2, unbiased std sqrt((1+0+1)/2) = 1; group 2 constant -> exactly 0
    eps = 1e-6
    expected = torch.tensor([-1 / (1 + eps), 0.0, 1 / (1 + eps), 0.0, 0.0, 0.0])
    out = group_advantages(REWARDS, 3, "std", eps=eps)
    torch.testing.assert_close(out, expected)
    assert torch.equal(out[3:], torch.zeros(3))


def test_std_mode_unbiased_not_biased_std():
    # [0,0,1,1]: mean .5, unbiased std sqrt(4*.25/3) = sqrt(1/3); biased std would be .5
    out = group_advantages(torch.tensor([0.0, 0.0, 1.0, 1.0]), 4, "std", eps=0.0)
    a = 0.5 / math.sqrt(1 / 3)  # 0.8660...
    torch.testing.assert_close(out, torch.tensor([-a, -a, a, a]))


def test_mean_mode_is_dr_grpo():
    torch.testing.assert_close(group_advantages(REWARDS, 3, "mean"),
                               torch.tensor([-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]))


def test_batch_std_mode_hand_computed():
    # batch mean 3.5; squared deviations 6.25 2.25 .25 2.25 2.25 2.25 = 15.5; /5 = 3.1
    s = math.sqrt(3.1)
    expected = torch.tensor([-1 / s, 0.0, 1 / s, 0.0, 0.0, 0.0])
    torch.testing.assert_close(group_advantages(REWARDS, 3, "batch_std", eps=0.0), expected)


@pytest.mark.parametrize("mode", sorted(ADVANTAGES))
def test_zero_variance_is_exactly_zero(mode):
    r = torch.full((6,), 0.1)  # 0.1 * 3 / 3 != 0.1 in float32: naive r - mean is not 0
    out = group_advantages(r, 3, mode)
    assert torch.equal(out, torch.zeros(6))


@pytest.mark.parametrize("mode", sorted(ADVANTAGES))
def test_group_size_one_gives_zero_not_nan(mode):
    out = group_advantages(torch.tensor([1.0, 2.0, 7.0]), 1, mode)
    assert torch.equal(out, torch.zeros(3))


def test_bad_inputs():
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(torch.ones(5), 2)
    with pytest.raises(ValueError, match="batch_std"):
        group_advantages(torch.ones(4), 2, "nope")
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(torch.ones(2, 2), 2)


def test_frac_zero_std():
    assert frac_zero_std(REWARDS, 3).item() == pytest.approx(0.5)
    assert frac_zero_std(torch.tensor([1.0, 2.0]), 1).item() == pytest.approx(1.0)
    assert frac_zero_std(torch.tensor([1.0, 2.0, 3.0, 4.0]), 2).item() == pytest.approx(0.0)
