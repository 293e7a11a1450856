"""KL estimators on hand-computed log-probs (wm.rl.kl)."""
import math

import pytest
import torch

from wm.rl.kl import KL_ESTIMATORS, token_kl

LOGP = torch.tensor([[-1.0, -2.0]])
REF = torch.tensor([[-1.5, -1.0]])


def test_k1():
    torch.testing.assert_close(token_kl(LOGP, REF, "k1"), torch.tensor([[0.5, -1.0]]))


def test_k2():
    torch.testing.assert_close(token_kl(LOGP, REF, "k2"), torch.tensor([[0.125, 0.5]]))


def test_k3_and_alias():
    # d = ref - logp = [-0.5, 1.0]; exp(d) - d - 1
    expected = torch.tensor([[math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 2.0]])
    torch.testing.assert_close(token_kl(LOGP, REF, "k3"), expected)
    torch.testing.assert_close(token_kl(LOGP, REF, "low_var_kl"), expected)


def test_k3_clamped_and_finite():
    out = token_kl(torch.tensor([0.0, -100.0]), torch.tensor([15.0, 0.0]), "k3")
    assert torch.equal(out, torch.tensor([10.0, 10.0]))


@pytest.mark.parametrize("name", sorted(KL_ESTIMATORS))
def test_zero_when_equal(name):
    x = torch.randn(3, 4)
    assert torch.equal(token_kl(x, x.clone(), name), torch.zeros(3, 4))


def test_unknown_estimator_lists_names():
    with pytest.raises(ValueError, match="low_var_kl"):
        token_kl(LOGP, REF, "k4")
