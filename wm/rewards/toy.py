"""A toy verifiable text world (lamp + counter) and its reward, for fast offline GRPO tests.

Not from the paper: a stand-in for ByteSized32 (RLVR-World Sec. 4.1) small enough for a tiny
randomly initialised model to learn in seconds. State ``{"lamp": "off"|"on", "count": 0..9}``;
actions ``toggle`` (flip the lamp), ``increment`` (count + 1, wrapping 9 → 0), ``look`` (no
change). The answer uses the text game's marker: ``The final answer is: {"lamp": "on",
"count": 3}`` and is parsed with the same ``extract_answer`` (``<think>`` text not scored).

Reward: ``key_acc`` = fraction of the two keys right (type-aware), ``binary`` = both right;
unparseable output scores 0.0 and is flagged.
"""
from __future__ import annotations

import json
import random

from wm.rewards.text_game import MARKER, extract_answer, same_value

ACTIONS = ("toggle", "increment", "look")
KEYS = ("lamp", "count")


def toy_step(state: dict, action: str) -> dict:
    """The toy world's transition function."""
    nxt = dict(state)
    if action == "toggle":
        nxt["lamp"] = "off" if state["lamp"] == "on" else "on"
    elif action == "increment":
        nxt["count"] = (state["count"] + 1) % 10
    elif action != "look":
        raise ValueError(f"toy world: unknown action {action!r}; expected one of {ACTIONS}")
    return nxt


def toy_records(n: int, seed: int = 0) -> list[dict]:
    """``n`` random transitions ``{"state", "action", "next_state"}`` (deterministic in ``seed``)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        state = {"lamp": rng.choice(["off", "on"]), "count": rng.randrange(10)}
        action = rng.choice(ACTIONS)
        out.append({"state": state, "action": action, "next_state": toy_step(state, action)})
    return out


def toy_prompt(record: dict) -> str:
    return f"State: {json.dumps(record['state'])}\nAction: {record['action']}\n"


def toy_target(record: dict) -> str:
    return f"{MARKER} {json.dumps(record['next_state'])}"


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
