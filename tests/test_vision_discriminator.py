"""GAN losses on hand-computed logits, R1 on a linear critic, PatchGAN output shape."""
import pytest
import torch

from wm.vision.discriminator import PatchDiscriminator, hinge_d_loss, hinge_g_loss, r1_penalty


def test_hinge_losses_hand_computed():
    real = torch.tensor([2.0, 0.5, -1.0])   # relu(1 - x) = 0, 0.5, 2 -> mean 5/6
    fake = torch.tensor([-2.0, 0.0])        # relu(1 + x) = 0, 1 -> mean 0.5
    torch.testing.assert_close(hinge_d_loss(real, fake), torch.tensor(0.5 * (5 / 6 + 0.5)))
    torch.testing.assert_close(hinge_g_loss(fake), torch.tensor(1.0))


def test_r1_penalty_of_linear_critic():
    w = torch.tensor([1.0, -2.0, 3.0])      # D(x) = x . w  -> grad = w, ||w||^2 = 14 per sample
    x = torch.randn(4, 3, requires_grad=True)
    torch.testing.assert_close(r1_penalty(x @ w, x), torch.tensor(14.0))
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(x.detach() @ w, x.detach())


def test_patch_discriminator_shape_and_penalty_backprop():
    d = PatchDiscriminator(base_channels=8, n_layers=2)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    logits = d(x)
    assert logits.shape[:2] == (2, 1) and logits.shape[-1] > 1  # one logit per patch
    r1_penalty(logits, x).backward()
    assert d.net[0].weight.grad is not None
