"""Open-loop rollout of a single-step video world model along one episode's ground-truth actions.

The single-step world model (paper Sec. 4.2, Appendix B: ``k`` context frames and actions ->
the next frame) is trained and rewarded on one transition. Rolled out for ``horizon`` frames,
each predicted frame becomes the newest context frame of the next step while the actions stay
the episode's own (open-loop control), so errors compound; this is what the notebooks show and
what ``eval.py`` scores as multi-step metrics.

This is the one-episode convenience around :meth:`wm.tasks.video.VideoTask.open_loop`, the same
code path as evaluation: predicted frames are fed back as *tokens* (no decode -> encode round
trip), prompts use the task's tokenizer, action bins and layout, and one generator drives every
step, so a seed fixes the whole rollout. Only the first ``Tc`` frames of ``frames`` are read;
the clip handed to the task gets placeholder future frames (they would only serve as targets).
"""
from __future__ import annotations

import torch


@torch.no_grad()
def open_loop_rollout(task, policy, frames: torch.Tensor, actions: torch.Tensor, horizon: int,
                      generator: torch.Generator | None = None, temperature: float = 1.0,
                      top_k: int | None = None) -> torch.Tensor:
    """Predict ``horizon`` frames autoregressively from the first ``Tc`` ground-truth frames.

    Args:
        task: a connected ``wm.tasks.video.VideoTask`` with the single-step layout.
        policy: the world model (``task.build_policy(None, init=<last.ckpt>)``).
        frames: (T, 3, H, W) float in [0, 1]; only the first ``Tc`` (context) frames are used.
        actions: (T_a, A) raw actions, ``actions[t]`` applied at frame ``t``; step ``t`` reads
            ``actions[t : t + Tc]``, so ``T_a >= Tc + horizon - 1``.
        horizon: number of frames to predict (frames ``Tc .. Tc + horizon - 1``).
        generator: torch.Generator of the sampler (same seed -> same rollout).
        temperature, top_k: sampling settings (``temperature=0`` is greedy).

    Returns:
        (horizon, 3, H, W) predicted frames in [0, 1], on the CPU.
    """
    Tc, horizon = int(task.Tc), int(horizon)
    if horizon < 1:
        raise ValueError(f"open_loop_rollout: horizon must be >= 1, got {horizon}")
    if frames.ndim != 4 or frames.shape[0] < Tc:
        raise ValueError(f"open_loop_rollout: frames must be (T, 3, H, W) with T >= {Tc} context "
                         f"frames, got {tuple(frames.shape)}")
    need = Tc + horizon - 1
    if actions.ndim != 2 or actions.shape[0] < need:
        raise ValueError(f"open_loop_rollout: {horizon} steps after {Tc} context frames need "
                         f"actions (T_a >= {need}, A), got {tuple(actions.shape)}; shorten the "
                         "horizon")
    device = next(policy.parameters()).device
    context = frames[:Tc].float().to(device)                             # (Tc, 3, H, W)
    clip = torch.cat([context, context[-1:].expand(horizon, -1, -1, -1)])  # (Tc+H, 3, H, W)
    # the clip's last action slot is never read (step horizon-1 reads up to index Tc+H-2)
    acts = torch.cat([actions[:need], actions[need - 1 : need]]).float().to(device)  # (Tc+H, A)
    batch = {"frames": clip[None], "actions": acts[None]}                 # batch of one clip
    preds = task.open_loop(policy, batch, horizon, 1, generator, temperature=temperature,
                           top_k=top_k)
    return preds["frames"][0].cpu()                                      # (horizon, 3, H, W)
