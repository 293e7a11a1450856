"""Baselines that eval.py scores like a world model: ``python eval.py ckpt=copy_last_frame``
(the bar to clear) and ``ckpt=true_tokens`` (the tokenizer's floor).

A baseline is a parameter-free module with ``predict_baseline(task, batch, group_size,
horizon)`` returning the task's ``decode`` dict; ``wm.rollout.scoring.sample_and_score``
scores it with the task's own metrics and reward, so its row in a table is computed exactly as
the models' rows (same clips, same metric code). Issue #16: the quickstart tables carry the
"copy last frame" row.
"""
from __future__ import annotations

from torch import nn


class CopyLastFrame(nn.Module):
    """Predict the last frame the model was shown, repeated (``VideoTask.copy_last_frame``)."""

    name = "copy_last_frame"
    label = "copy last frame"

    def predict_baseline(self, task, batch, group_size: int, horizon: int = 1) -> dict:
        if not hasattr(task, "copy_last_frame"):
            raise ValueError(f"ckpt=copy_last_frame needs a video task, not "
                             f"{type(task).__name__}")
        return task.copy_last_frame(batch, group_size, horizon)


class TrueTokens(nn.Module):
    """The true future frames' tokens, decoded: the tokenizer's floor (``VideoTask.true_tokens``)."""

    name = "true_tokens"
    label = "true tokens (tokenizer floor)"

    def predict_baseline(self, task, batch, group_size: int, horizon: int = 1) -> dict:
        if not hasattr(task, "true_tokens"):
            raise ValueError(f"ckpt=true_tokens needs a video task, not {type(task).__name__}")
        return task.true_tokens(batch, group_size, horizon)


BASELINES = {CopyLastFrame.name: CopyLastFrame, TrueTokens.name: TrueTokens}


def build_baseline(name: str) -> nn.Module:
    """The baseline called ``name`` (a key of ``BASELINES``)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; valid: {sorted(BASELINES)}")
    return BASELINES[name]()
