"""Rollouts: the sampler shared by evaluation and GRPO (docs/architecture.md, "Sampler").

``ResponsePlan``/``Rollout`` are light; ``Sampler`` imports ``transformers`` lazily on first use.
"""
from wm.rollout.plan import ResponsePlan, Rollout

__all__ = ["ResponsePlan", "Rollout", "Sampler", "sample_cached", "sample_no_cache"]


def __getattr__(name):
    if name in ("Sampler", "sample_cached", "sample_no_cache"):
        from wm.rollout import sampler

        return getattr(sampler, name)
    raise AttributeError(f"module 'wm.rollout' has no attribute {name!r}")
