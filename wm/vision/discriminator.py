"""PatchGAN discriminator and the GAN losses of the tokenizer stage.

Reference (shared/REFERENCE.md "Video world model"): the tokenizer adds 0.1 x hinge GAN loss from
step 10k, with a gradient penalty on the discriminator. The discriminator is the pix2pix /
taming-transformers PatchGAN (Isola et al. 2017): 4x4 convolutions, stride 2, LeakyReLU 0.2,
one logit per overlapping patch.

Departures: GroupNorm instead of BatchNorm (batch statistics interact badly with the gradient
penalty and with small or DDP-split batches); the penalty is R1 (Mescheder et al. 2018) on real
images, ``||d D(x) / dx||^2`` averaged over the batch.

The losses are pure functions of logits (and of the inputs, for R1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wm.vision.blocks import num_groups


class PatchDiscriminator(nn.Module):
    """(B, 3, H, W) in [0, 1] -> patch logits (B, 1, h', w').

    Args:
        in_channels: image channels.
        base_channels: width of the first layer (doubles per layer, capped at 8x).
        n_layers: strided layers after the first (3 -> 70x70 receptive field).
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, n_layers: int = 3):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers={n_layers}: the PatchGAN needs at least one layer")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, 2, 1),
                                   nn.LeakyReLU(0.2)]
        c = base_channels
        for i in range(1, n_layers + 1):
            c_out = base_channels * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(c, c_out, 4, stride, 1, bias=False),
                       nn.GroupNorm(num_groups(c_out), c_out), nn.LeakyReLU(0.2)]
            c = c_out
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images * 2.0 - 1.0)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (E[relu(1 - D(x))] + E[relu(1 + D(G(z)))])."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))]."""
    return -logits_fake.mean()


def r1_penalty(logits_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1: mean over the batch of ||d sum(D(x)) / dx||^2; ``real`` must require grad.

    ``create_graph=True`` so the penalty itself is differentiated w.r.t. the discriminator.
    """
    if not real.requires_grad:
        raise ValueError("r1_penalty: call real.requires_grad_(True) before the "
                         "discriminator's forward")
    (grad,) = torch.autograd.grad(logits_real.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()  # (B, C*H*W) -> (B,) -> scalar
