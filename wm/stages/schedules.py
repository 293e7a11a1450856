"""Learning-rate schedules of the MLE and GRPO stages (the reference: linear warmup, then constant)."""
from __future__ import annotations

import torch


def warmup_constant_schedule(optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from ~0 to the optimizer's lr over ``warmup_steps``, then constant."""
    warmup = max(int(warmup_steps), 0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
