"""Reward builders by name, for configs (RLVR-World §3.1: one verifiable reward per modality).

``build_reward("video", weights={"mae": 1, "lpips": 1})`` returns a ``VideoReward``. Other
modalities register their builders with ``register_reward(name, fn)`` when their module is
imported (text-game / web-page rewards). Hydra configs may also target the classes directly;
the registry is for code that receives a name string.
"""
from __future__ import annotations

from typing import Any, Callable

from wm.rewards.video import VideoReward

__all__ = ["REWARDS", "register_reward", "build_reward", "available_rewards"]

REWARDS: dict[str, Callable[..., Any]] = {"video": VideoReward}


def register_reward(name: str, fn: Callable[..., Any], overwrite: bool = False) -> None:
    """Register a reward builder ``fn(**kwargs) -> reward`` under ``name``.

    Re-registering the same builder is a no-op; a different one needs ``overwrite=True``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"reward name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"reward builder for {name!r} must be callable, got {type(fn).__name__}")
    if name in REWARDS and REWARDS[name] is not fn and not overwrite:
        raise ValueError(f"reward {name!r} is already registered ({REWARDS[name]!r}); "
                         "pass overwrite=True to replace it")
    REWARDS[name] = fn


def available_rewards() -> list[str]:
    """Sorted names of the registered rewards."""
    return sorted(REWARDS)


def build_reward(name: str, **kwargs: Any) -> Any:
    """Build the reward registered as ``name`` with ``kwargs``."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; registered rewards: {available_rewards()}")
    return REWARDS[name](**kwargs)
