"""Reward of the toy text world (``wm.textworld.toy``), for fast offline GRPO tests.

``key_acc`` = fraction of the two keys right (type-aware), ``binary`` = both right; unparseable
output scores 0.0 and is flagged.
"""
from __future__ import annotations

from wm.textworld.game_state import same_value
from wm.textworld.toy import KEYS, extract_answer


def toy_score(completion: str, record: dict) -> dict:
    """``{"key_acc", "binary", "parsed"}`` for one completion."""
    answer, info = extract_answer(completion)
    if answer is None:
        return {"key_acc": 0.0, "binary": 0.0, "parsed": False}
    right = sum(same_value(answer.get(k, None), record["next_state"][k]) for k in KEYS)
    return {"key_acc": right / len(KEYS), "binary": float(right == len(KEYS)), "parsed": True}


def toy_rewards(completions: list[str], records: list[dict]) -> dict:
    """Batch form: float32 tensors ``(N,)`` ``binary``, ``key_acc``, ``parse_fail``."""
    import torch

    if len(completions) != len(records):
        raise ValueError(f"toy_rewards: {len(completions)} completions, {len(records)} records")
    scores = [toy_score(c, r) for c, r in zip(completions, records)]
    return {
        "binary": torch.tensor([s["binary"] for s in scores]),
        "key_acc": torch.tensor([s["key_acc"] for s in scores]),
        "parse_fail": torch.tensor([0.0 if s["parsed"] else 1.0 for s in scores]),
    }
