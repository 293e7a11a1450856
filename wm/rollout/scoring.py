"""Sample, decode and score: the one path from a batch to rewarded predictions, used by GRPO's
rollout, the stages' validation and ``eval.py`` (so MLE and RLVR are scored identically).

The task is passed in (duck-typed ``wm.tasks.base.Task``); this module knows nothing about
frames or JSON.
"""
from __future__ import annotations

import time

import torch

from wm.rollout.sampler import Sampler
from wm.utils.precision import full_precision


@torch.no_grad()
def sample_and_score(task, policy, batch, group_size: int, generator: torch.Generator,
                     temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None, prompts=None, per_frame: bool = False,
                     horizon: int = 1, cascade: bool = True, timings: dict | None = None):
    """Sample ``group_size`` responses per prompt with ``policy``, decode and score them.

    ``prompts``: the batch's ``Task.prompts`` when the caller already built them (not rebuilt).
    ``horizon > 1``: open-loop multi-step prediction of a single-step model
    (``task.open_loop``; no rollout is returned). ``per_frame``: also per-frame metric keys
    ``<m>@<t>`` (evaluation tables). ``cascade``: the sampler's shared-prompt attention
    (``wm.rollout.cascade``; False copies the prompt per row). ``timings``: a dict filled with
    the seconds spent sampling (``"sample"``) and decoding + scoring (``"score"``).
    Sampling runs in the caller's autocast (bf16 under ``trainer.precision=bf16-mixed``);
    decoding, rewards and metrics in float32 (``wm.utils.precision``).
    ``policy`` may be a baseline (``predict_baseline``, ``wm.evaluation.baselines``): scored
    the same way, nothing sampled.
    Returns (predictions, rewards, metrics, rollout): ``rewards`` maps reward components
    (``"reward"`` is the optimized scalar) and ``metrics`` maps evaluation metrics to (B*G,).
    """
    was_training = policy.training
    if hasattr(policy, "predict_baseline"):     # a model-free baseline (wm.evaluation.baselines)
        preds = policy.predict_baseline(task, batch, group_size, horizon)
        metrics = task.metrics(preds, batch, group_size, per_frame=per_frame)
        return preds, task.rewards(preds, batch, group_size), metrics, None
    if horizon > 1:
        policy.eval()
        preds = task.open_loop(policy, batch, horizon, group_size, generator,
                               temperature=temperature, top_k=top_k)
        policy.train(was_training)
        with full_precision(next(policy.parameters()).device):
            metrics = task.metrics(preds, batch, group_size, per_frame=per_frame)
            return preds, task.rewards(preds, batch, group_size), metrics, None
    t0 = time.perf_counter()
    prompts = task.prompts(batch) if prompts is None else prompts
    policy.eval()
    rollout = Sampler(cascade=cascade).sample(policy, prompts.ids, prompts.mask, prompts.plan,
                               group_size=group_size, temperature=temperature, top_k=top_k,
                               top_p=top_p, generator=generator)
    policy.train(was_training)
    t1 = time.perf_counter()
    with full_precision(rollout.tokens.device):    # float32 frames and rewards under bf16
        preds = task.decode(rollout.tokens, batch, group_size)
        rewards = task.rewards(preds, batch, group_size)
        metrics = task.metrics(preds, batch, group_size, per_frame=True) if per_frame \
            else task.metrics(preds, batch, group_size)
    if timings is not None:
        timings.update(sample=t1 - t0, score=time.perf_counter() - t1)
    return preds, rewards, metrics, rollout
