"""Open-loop (autoregressive) rollouts of a video world model along ground-truth actions.

The world models of this project are trained and scored on one transition (single-step layout:
``k`` context frames and actions -> the next frame) or on ``Tf`` frames per call (multi-step
layout). To see how errors compound (paper Sec. 4.2 shows multi-step videos), we roll the model
out for ``horizon`` frames: each call's predicted frames become context frames of the next call,
while the actions stay the ground-truth ones of the episode (open-loop control, as in
action-conditioned video prediction benchmarks).

Every call goes through the task's own path (``task.prompts`` -> ``Sampler`` -> ``task.decode``),
so prompts use the same tokenizer, action bins and layout as training and evaluation.

Departures / choices:
* Predicted frames are fed back as *pixels* and re-encoded by the tokenizer (decode -> encode);
  a tokenizer whose round trip is not exact can therefore move a predicted frame's tokens a little.
  This keeps the rollout on the task's public batch interface (the same as the data loader's).
* The last action of each call's clip is never read by the layouts (single-step reads the ``k``
  context actions; multi-step the actions of the last context frame and of every predicted frame
  but the last); when the episode has no action there it is filled with the previous one.
* The token cache of ``VideoTask`` (``cache_tokens``, keyed by episode and frame index) is turned
  off during the rollout: predicted frames are not frames of any episode.
"""
from __future__ import annotations

import math

import torch

from wm.rollout.sampler import Sampler


def _forget_last_batch(task) -> None:
    """Drop ``VideoTask``'s last-batch token cache. It is keyed by the frames tensor's address and
    shape, and the clips built here are freed between calls, so a new clip could land at the
    address of an old one and be served its tokens."""
    if hasattr(task, "_cache_key"):
        task._cache_key, task._cache = None, None


@torch.no_grad()
def open_loop_rollout(task, policy, frames: torch.Tensor, actions: torch.Tensor, horizon: int,
                      generator: torch.Generator | None = None, temperature: float = 1.0,
                      top_k: int | None = None) -> torch.Tensor:
    """Predict ``horizon`` frames autoregressively from the first ``Tc`` ground-truth frames.

    Args:
        task: a connected ``wm.tasks.video.VideoTask`` (``Tc`` context, ``Tf`` future frames).
        policy: the world model (``task.build_policy(None, init=<last.ckpt>)``).
        frames: (T, 3, H, W) float in [0, 1]; only the first ``Tc`` frames are used.
        actions: (T_a, A) raw actions, ``actions[t]`` applied at frame ``t``; needs
            ``T_a >= Tc + n_calls * Tf - 1`` with ``n_calls = ceil(horizon / Tf)``
            (for single-step: ``Tc + horizon - 1``).
        horizon: number of frames to predict (frames ``Tc .. Tc + horizon - 1``).
        generator: torch.Generator for the sampler (same seed -> same rollout).
        temperature, top_k: sampling settings (``temperature=0`` is greedy).

    Returns:
        (horizon, 3, H, W) predicted frames in [0, 1], on the CPU.
    """
    Tc, Tf = int(task.Tc), int(task.Tf)
    if int(horizon) < 1:
        raise ValueError(f"open_loop_rollout: horizon must be >= 1, got {horizon}")
    if frames.ndim != 4 or frames.shape[0] < Tc:
        raise ValueError(f"open_loop_rollout: frames must be (T, 3, H, W) with T >= {Tc} context "
                         f"frames, got {tuple(frames.shape)}")
    calls = math.ceil(int(horizon) / Tf)
    need = Tc + calls * Tf - 1  # actions read by the layouts over all calls
    if actions.ndim != 2 or actions.shape[0] < need:
        raise ValueError(f"open_loop_rollout: {horizon} frames with {Tc} context and {Tf} future "
                         f"frames per call need actions (T_a >= {need}, A), got "
                         f"{tuple(actions.shape)}; shorten the horizon")
    device = next(policy.parameters()).device
    # (Tc + calls*Tf, A): the final slot is never read by the layout (see module docstring)
    acts = torch.cat([actions[:need], actions[need - 1 : need]], dim=0).float().to(device)
    history = list(frames[:Tc].float().to(device))          # Tc x (3, H, W)
    sampler, was_training, cached = Sampler(), policy.training, task.cache_tokens
    task.cache_tokens = False
    policy.eval()
    try:
        for c in range(calls):
            s = c * Tf                                       # first context frame of this call
            context = torch.stack(history[s : s + Tc])       # (Tc, 3, H, W)
            # the future slots are placeholders: they only build the (unused) target response
            clip = torch.cat([context, context[-1:].expand(Tf, -1, -1, -1)])  # (Tc+Tf, 3, H, W)
            batch = {"frames": clip[None],                   # (1, Tc+Tf, 3, H, W)
                     "actions": acts[None, s : s + Tc + Tf],  # (1, Tc+Tf, A)
                     "episode": torch.tensor([-1 - c], device=device),
                     "start": torch.tensor([0], device=device)}
            _forget_last_batch(task)
            prompts = task.prompts(batch)
            rollout = sampler.sample(policy, prompts.ids, prompts.mask, prompts.plan,
                                     group_size=1, temperature=temperature, top_k=top_k,
                                     generator=generator)
            pred = task.decode(rollout.tokens, batch, 1)["frames"][0]  # (Tf, 3, H, W)
            history.extend(pred.clamp(0, 1))
    finally:
        _forget_last_batch(task)
        task.cache_tokens = cached
        policy.train(was_training)
    return torch.stack(history[Tc : Tc + int(horizon)]).cpu()  # (horizon, 3, H, W)
