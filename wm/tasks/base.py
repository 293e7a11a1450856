"""The Task protocol: what makes a modality a world-modelling problem for the shared loops.

Paper Sec. 3: every world model is a question (tokenized state and action) answered by a
response (tokenized next state) that is decoded and scored by a verifiable metric. A ``Task``
owns everything modality-specific (tokenizers, layouts, decoding, rewards); the MLE and GRPO
LightningModules own only the optimization and never look at frames or JSON.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class Prompts:
    """Prompt tokens of a batch and how to sample their responses.

    ids, mask: (B, P) int64 / bool, left-padded when prompts differ in length.
    plan: a ``wm.rollout.plan.ResponsePlan`` (length, forced tokens, allowed ids, EOS).
    """

    ids: torch.Tensor
    mask: torch.Tensor
    plan: Any


@dataclass
class Responses:
    """Ground-truth responses for teacher forcing: ids (B, L) int64, loss_mask (B, L) bool."""

    ids: torch.Tensor
    loss_mask: torch.Tensor


@runtime_checkable
class Task(Protocol):
    """What the MLE and GRPO stages need from a modality. ``G`` is the group size; rows
    ``r*G .. r*G+G-1`` of a rollout answer prompt ``r``."""

    def connect(self, datamodule) -> None:
        """Receive run-time values from the data (action statistics, tokenizers...)."""

    def build_policy(self, factory, init: str | None = None) -> torch.nn.Module:
        """Complete the model factory from config with this task's vocabulary; load ``init``."""

    def policy_checkpoint(self, policy) -> dict:
        """Extra items stored in a stage checkpoint so the next stage can rebuild the policy."""

    def prompts(self, batch) -> Prompts: ...

    def responses(self, batch) -> Responses: ...

    def decode(self, tokens: torch.Tensor, batch, group_size: int) -> Any: ...

    def rewards(self, predictions, batch, group_size: int) -> dict[str, torch.Tensor]:
        """Verifiable reward components, each (B*G,) float; key ``"reward"`` is the scalar
        that GRPO optimizes."""

    def metrics(self, predictions, batch, group_size: int) -> dict[str, torch.Tensor]:
        """Evaluation metrics, each (B*G,) float (averaged by the caller)."""
