"""Sample, decode and score: the one path from a batch to rewarded predictions, used by GRPO's
rollout, the stages' validation and ``eval.py`` (so MLE and RLVR are scored identically).

The task is passed in (duck-typed ``wm.tasks.base.Task``); this module knows nothing about
frames or JSON.
"""
from __future__ import annotations

import torch

from wm.rollout.sampler import Sampler


@torch.no_grad()
def sample_and_score(task, policy, batch, group_size: int, generator: torch.Generator,
                     temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None, prompts=None, per_frame: bool = False,
                     horizon: int = 1):
    """Sample ``group_size`` responses per prompt with ``policy``, decode and score them.

    ``prompts``: the batch's ``Task.prompts`` when the caller already built them (not rebuilt).
    ``horizon > 1``: open-loop multi-step prediction of a single-step model
    (``task.open_loop``; no rollout is returned). ``per_frame``: also per-frame metric keys
    ``<m>@<t>`` (evaluation tables).
    Returns (predictions, rewards, metrics, rollout): ``rewards`` maps reward components
    (``"reward"`` is the optimized scalar) and ``metrics`` maps evaluation metrics to (B*G,).
    """
    was_training = policy.training
    if horizon > 1:
        policy.eval()
        preds = task.open_loop(policy, batch, horizon, group_size, generator,
                               temperature=temperature, top_k=top_k)
        policy.train(was_training)
        metrics = task.metrics(preds, batch, group_size, per_frame=per_frame)
        return preds, task.rewards(preds, batch, group_size), metrics, None
    prompts = task.prompts(batch) if prompts is None else prompts
    policy.eval()
    rollout = Sampler().sample(policy, prompts.ids, prompts.mask, prompts.plan,
                               group_size=group_size, temperature=temperature, top_k=top_k,
                               top_p=top_p, generator=generator)
    policy.train(was_training)
    preds = task.decode(rollout.tokens, batch, group_size)
    rewards = task.rewards(preds, batch, group_size)
    metrics = task.metrics(preds, batch, group_size, per_frame=True) if per_frame \
        else task.metrics(preds, batch, group_size)
    return preds, rewards, metrics, rollout
