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


# ---- NaN (unscorable) rewards: the row gets 0, its group is normalised over its finite rows
NEG = torch.tensor([-3.0, -1.0, math.nan, -2.0,      # video-like negative reward, one NaN row
                    -5.0, -4.0, -6.0, -5.0])


def test_nan_row_gets_zero_not_the_top_advantage():
    # the old path (NaN -> 0 before the advantages) made the NaN row the best of its group
    old = group_advantages(NEG.nan_to_num(0.0), 4, "std")
    assert old[2] == old[:4].max() > 1.0
    out = group_advantages(NEG, 4, "std", eps=0.0)
    # finite rows -3, -1, -2: mean -2, unbiased std 1
    torch.testing.assert_close(out[:4], torch.tensor([-1.0, 1.0, 0.0, 0.0]))
    assert out[2].item() == 0.0


@pytest.mark.parametrize("mode", sorted(ADVANTAGES))
def test_nan_rows_are_zero_and_the_rest_normalised_among_themselves(mode):
    out = group_advantages(NEG, 4, mode, eps=0.0)
    assert torch.isfinite(out).all() and out[2].item() == 0.0
    centered = torch.tensor([-1.0, 1.0, 0.0, 0.0, 0.0, 1.0, -1.0, 0.0])   # r - finite group mean
    finite = NEG[~NEG.isnan()]
    scale = {"std": torch.tensor([1.0] * 4 + [math.sqrt(2 / 3)] * 4),
             "mean": torch.ones(8),
             "batch_std": finite.std(unbiased=True).expand(8)}[mode]
    torch.testing.assert_close(out, centered / scale)


@pytest.mark.parametrize("mode", sorted(ADVANTAGES))
def test_fewer_than_two_finite_rows_give_zero_everywhere(mode):
    r = torch.tensor([math.nan, math.nan, math.nan, 1.0,      # one finite row
                      math.nan, math.nan, math.nan, math.nan,  # none
                      math.nan, 2.0, 2.0, 2.0])                # finite rows all equal
    assert torch.equal(group_advantages(r, 4, mode), torch.zeros(12))
    assert torch.equal(group_advantages(torch.tensor([math.nan, 3.0]), 1, mode), torch.zeros(2))


def test_zero_std_counts_nan_rows_like_the_advantages():
    from wm.rl.advantages import zero_std_groups

    r = torch.tensor([math.nan, 2.0, 2.0, 2.0,     # finite rows equal: no signal
                      math.nan, 0.0, 1.0, 1.0,     # informative (NaN is not read as 0)
                      math.nan, math.nan, math.nan, 0.0])
    assert zero_std_groups(r, 4).tolist() == [True, False, True]
    assert frac_zero_std(r, 4).item() == pytest.approx(2 / 3)
    # and NaN is not 0: [NaN, 0, 0, 0] has no signal (filling NaN with 0 would say the same,
    # but [NaN, 1, 1, 1] read as [0, 1, 1, 1] would have had one)
    assert zero_std_groups(torch.tensor([math.nan, 1.0, 1.0, 1.0]), 4).tolist() == [True]
