"""Logging of per-row scores (rewards, metrics) from a LightningModule, pooled over ranks."""
from __future__ import annotations

import torch


def log_scores(module, prefix: str, values: dict[str, torch.Tensor], with_std: bool = False) -> None:
    """Log the mean (and std) of each (N,) tensor as ``<prefix>/<name>[/mean|/std]``.

    The statistics are pooled over all ranks (sum, count and sum of squares are all-reduced,
    so the std is the std over every rank's rows, not a mean of per-rank stds). NaN marks rows
    outside a metric's subset (e.g. accuracy on changed transitions only) and is ignored; a
    metric with no valid row on any rank is not logged -- the same decision on every rank, so
    ranks never disagree on which collectives to run.
    """
    trainer = getattr(module, "_trainer", None)
    distributed = trainer is not None and trainer.world_size > 1
    for name, value in values.items():
        v = value.detach().float().to(module.device).flatten()
        ok = ~v.isnan()
        vals = v[ok]
        stats = torch.stack([vals.sum(), ok.sum().float(), (vals * vals).sum()])   # (3,)
        if distributed:
            stats = trainer.strategy.reduce(stats, reduce_op="sum")
        total, n, sq = stats.tolist()
        if n == 0:
            continue
        mean = total / n
        key = f"{prefix}/{name}/mean" if with_std else f"{prefix}/{name}"
        module.log(key, mean, prog_bar=name == "reward", batch_size=int(n))
        if with_std:
            var = max(sq / n - mean * mean, 0.0) * n / (n - 1) if n > 1 else 0.0
            module.log(f"{prefix}/{name}/std", var ** 0.5, batch_size=int(n))
