"""A user's own object world ("bring your own text world") on the ByteSized32 state model.

Not from the paper: a way to train RLVR-World's text world model (Sec. 4.1) on any world whose
state is a set of named objects with properties, scored by the SAME rewards as ByteSized32
(``wm.rewards.text_game``: exact match, item accuracy, accuracy on the changed items).

A state is a JSON object ``{object name: {property: value}}``; values are any JSON. It maps to
the ByteSized32 state ``{"objects": [{"uuid": <name>, "properties": {...}}, ...]}`` (in the
order of the JSON object), so the name is the object's uuid and each ``(name, property)`` is one
scored item. A transition ``(state, action, next_state)`` becomes a ByteSized32-shaped record
(``current_state``/``tick_state``, empty ``current_score_state``/``next_score_state``), which
``wm.rewards.text_game.text_game_rewards`` scores unchanged.

- *Changed*: ``next_state`` differs from ``state`` in an item (a property value added, removed
  or different, or an object added or removed), compared as the reward compares items
  (``game_state.same_value``: strict, ``true`` is not ``1``; ``1`` equals ``1.0``).
- *Answer* (the SFT target): ``The final answer is: {"modified": [<new or changed objects, in
  full>], "removed": [<names>]}`` (``game_answer``'s format without ``score``).

Departures from ByteSized32: there is no score (the scores are empty, so the score keys count as
right when an answer has no ``score`` key or ``"score": {}``, and wrong otherwise) and no
``contains`` lists (a nested value is one property). Names that read as the same uuid (``"1"``
and ``"01"``: ByteSized32 uuids are numbers) are refused.
"""
from __future__ import annotations

import json
from typing import Any

from wm.textworld.game_answer import MARKER
from wm.textworld.game_state import compare_states, objects_by_uuid, true_transition

STATE_FORM = "{object name: {property: value}}"
_PLACEHOLDER_SCORE = {"score": 0, "gameOver": False, "gameWon": False}


def state_objects(state: Any, field: str = "state") -> dict:
    """``{"objects": [{"uuid": name, "properties": props}, ...]}`` of a user state; a state of
    another form is a ``ValueError`` naming ``field`` (e.g. ``next_state.lamp``)."""
    if not isinstance(state, dict):
        raise ValueError(f"field {field!r} must be a JSON object {STATE_FORM}, got "
                         f"{type(state).__name__}")
    objects = []
    for name, props in state.items():
        if not name.strip():
            raise ValueError(f"field {field!r}: an object name is empty")
        if not isinstance(props, dict):
            raise ValueError(f"field '{field}.{name}' must be a JSON object of properties "
                             f"{{property: value}}, got {type(props).__name__}")
        objects.append({"uuid": name, "properties": props})
    out = {"objects": objects}
    by_uuid = objects_by_uuid(out)
    if len(by_uuid) != len(objects):
        same = sorted({o["uuid"] for o in objects} - {o["uuid"] for o in by_uuid.values()})
        raise ValueError(f"field {field!r}: object names {same} read as the same uuid as another "
                         "name (numbers written two ways, e.g. '1' and '01'); rename them")
    return out


def object_record(state: Any, action: str, next_state: Any) -> dict:
    """The ByteSized32-shaped record of one transition (see the module docstring)."""
    return {"current_state": state_objects(state, "state"), "action": action,
            "tick_state": state_objects(next_state, "next_state"),
            "current_score_state": {}, "next_score_state": {}}


def object_answer(record: dict) -> dict:
    """``{"modified": [...], "removed": [...]}``: the ideal answer of a record."""
    answer = true_transition({**record, "current_score_state": _PLACEHOLDER_SCORE,
                              "next_score_state": _PLACEHOLDER_SCORE})
    del answer["score"]                         # this world has no score
    return answer


def object_target(record: dict) -> str:
    """The SFT target: ``The final answer is: {"modified": [...], "removed": [...]}``."""
    return f"{MARKER} {json.dumps(object_answer(record))}"


def object_changed(record: dict) -> bool:
    """Does the action change any item (see *Changed* in the module docstring)?"""
    current = objects_by_uuid(record["current_state"])
    nxt = objects_by_uuid(record["tick_state"])
    return compare_states(current, nxt, {}, {}, current)["n_changed"] > 0
