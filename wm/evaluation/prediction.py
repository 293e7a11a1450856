"""Evaluation of a world model's predictions on held-out data, with the same sample-and-score
path as training (``wm.rollout.scoring.sample_and_score``).

Paper Sec. 4 (evaluation protocol): sample with temperature 1 (top-k 100 in the paper's video
tables), decode, compute the task's metrics on held-out episodes; with ``N > 1`` samples per
prompt also report best-of-N (the best value of each metric among the N samples, Sec. 4.4).
MLE and RLVR checkpoints evaluated with the same seed see the same prompts and the same random
stream, so their numbers compare directly.
"""
from __future__ import annotations

from collections import defaultdict

import torch
from tqdm.auto import tqdm

from wm.rollout.scoring import sample_and_score
from wm.utils.seeding import seeded_generator


def _best_of_n(values: torch.Tensor, n: int, higher: bool) -> torch.Tensor:
    """values (B*N,) grouped by prompt -> (B,) best per prompt."""
    grouped = values.reshape(-1, n)                                       # (B, N)
    return grouped.amax(dim=1) if higher else grouped.amin(dim=1)


@torch.no_grad()
def evaluate_policy(task, policy, loader, num_samples: int = 1, temperature: float = 1.0,
                    top_k: int | None = None, seed: int = 0, max_batches: int | None = None,
                    device: torch.device | str = "cpu", progress: bool = True,
                    horizon: int = 1):
    """Score ``policy`` on every batch of ``loader``.

    ``horizon > 1`` evaluates multi-step prediction of a single-step model open loop
    (``task.open_loop``: predicted tokens fed back as context); per-frame keys ``<m>@<t>``.

    Returns (summary, first): ``summary`` maps metric names to floats (``<m>`` = mean over all
    samples; ``best_of_<N>/<m>`` when num_samples > 1); ``first`` = (predictions, batch) of the
    first batch, for frame strips and sample tables.
    """
    policy.eval()
    sums: dict[str, list[torch.Tensor]] = defaultdict(list)
    first = None
    directions = getattr(task, "higher_is_better", {})
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    for b, batch in enumerate(tqdm(loader, total=total, desc="eval", disable=not progress)):
        if max_batches is not None and b >= max_batches:
            break
        batch = _to_device(batch, device)
        gen = seeded_generator(seed, b, 0, device)
        preds, rewards, metrics, _ = sample_and_score(
            task, policy, batch, num_samples, gen, temperature=temperature, top_k=top_k,
            per_frame=True, horizon=horizon)
        metrics.update(rewards)
        for name, v in metrics.items():
            v = v.detach().float().cpu()
            sums[name].append(v)
            base = name.split("@")[0]
            if num_samples > 1 and base in directions:
                sums[f"best_of_{num_samples}/{name}"].append(
                    _best_of_n(v, num_samples, directions[base]))
        if first is None:
            first = (preds, batch)
    summary = {k: float(torch.cat(v).nanmean()) for k, v in sums.items()}  # NaN = not in subset
    summary["num_predictions"] = float(sum(v.numel() for v in sums.get("reward", [])))
    return summary, first


def _to_device(batch, device):
    if isinstance(batch, dict):
        return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
    return batch
