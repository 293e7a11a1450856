"""A toy verifiable text world (lamp + counter): its dynamics and its answer format.

Not from the paper: a stand-in for ByteSized32 (RLVR-World Sec. 4.1) small enough for a tiny
randomly initialised model to learn in seconds. State ``{"lamp": "off"|"on", "count": 0..9}``;
actions ``toggle`` (flip the lamp), ``increment`` (count + 1, wrapping 9 → 0), ``look`` (no
change). The answer uses the text game's marker: ``The final answer is: {"lamp": "on",
"count": 3}`` and is read back with ``extract_answer`` (``<think>`` text not read).
"""
from __future__ import annotations

import json
import random

from wm.textworld.game_answer import MARKER
from wm.textworld.lenient_json import extract_json_object

__all__ = ["ACTIONS", "KEYS", "MARKER", "extract_answer", "toy_step", "toy_records", "toy_prompt",
           "toy_target"]

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


def extract_answer(text: str):
    """``(obj, info)``: the JSON object after the marker (any keys; ``lenient_json``)."""
    return extract_json_object(text, MARKER)
