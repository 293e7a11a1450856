"""Writes light_and_door.jsonl: 40 transitions of a small hand-written world (``data=text_jsonl``).

A hall with a lamp, a locked door, a key and an apple, and a garden behind the door. Objects and
properties: ``lamp.on``, ``door.open``/``door.locked``, ``key.held``, ``apple.held`` (eaten: the
apple is removed), ``player.room`` ("hall" | "garden"), and a ``flower`` that appears when one
is picked in the garden. Some actions change nothing (``look``, or an action whose condition
fails: opening a locked door). Not derived from any dataset.

    python examples/text_world/make_light_and_door.py    # rewrites the file next to it
"""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

ACTIONS = ("look", "switch on the lamp", "switch off the lamp", "take the key", "drop the key",
           "unlock the door", "lock the door", "open the door", "close the door",
           "go to the garden", "go to the hall", "take the apple", "eat the apple",
           "pick a flower")


def step(state: dict, action: str) -> dict:
    """The world's rules: the next state after ``action`` (a copy; unchanged if it fails)."""
    s = copy.deepcopy(state)
    door, key, room = s["door"], s["key"], s["player"]["room"]
    if action in ("switch on the lamp", "switch off the lamp") and room == "hall":
        s["lamp"]["on"] = action == "switch on the lamp"
    elif action in ("take the key", "drop the key"):
        key["held"] = action == "take the key"
    elif action == "unlock the door" and key["held"] and door["locked"] and not door["open"]:
        door["locked"] = False
    elif action == "lock the door" and key["held"] and not door["locked"] and not door["open"]:
        door["locked"] = True
    elif action == "open the door" and not door["locked"]:
        door["open"] = True
    elif action == "close the door":
        door["open"] = False
    elif action in ("go to the garden", "go to the hall") and door["open"]:
        s["player"]["room"] = action.rsplit(" ", 1)[1]
    elif action == "take the apple" and "apple" in s and room == "hall":
        s["apple"]["held"] = True
    elif action == "eat the apple" and s.get("apple", {}).get("held"):
        del s["apple"]
    elif action == "pick a flower" and room == "garden" and "flower" not in s:
        s["flower"] = {"held": True}
    return s


def random_state(rng: random.Random) -> dict:
    locked = rng.random() < 0.4
    state = {"lamp": {"on": rng.random() < 0.5},
             "door": {"open": not locked and rng.random() < 0.5, "locked": locked},
             "key": {"held": rng.random() < 0.5},
             "player": {"room": "garden" if rng.random() < 0.3 else "hall"}}
    if rng.random() < 0.7:
        state["apple"] = {"held": rng.random() < 0.5}
    if state["player"]["room"] == "garden" and rng.random() < 0.3:
        state["flower"] = {"held": True}
    return state


def transitions(n: int = 40, seed: int = 7) -> list[dict]:
    """``n`` random transitions; about three in four take an action that changes something."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        state = random_state(rng)
        effective = [a for a in ACTIONS if step(state, a) != state]
        action = rng.choice(effective if effective and rng.random() < 0.75 else ACTIONS)
        out.append({"id": f"t{i + 1:02d}", "state": state, "action": action,
                    "next_state": step(state, action)})
    return out


def main() -> None:
    path = Path(__file__).with_name("light_and_door.jsonl")
    path.write_text("".join(json.dumps(t) + "\n" for t in transitions()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
