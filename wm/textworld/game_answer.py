"""The ByteSized32 answer format: the model answers, after the marker ``The final answer is:``,
with a JSON state difference

    {"modified": [<full object>, ...], "removed": [<uuid>, ...],
     "score": {"score": int, "gameOver": bool, "gameWon": bool}}

``format_target`` writes the ideal answer of a record (the SFT target); ``extract_answer`` reads
an answer back from a completion (``wm.textworld.lenient_json`` with this marker). An answer
must be an answer: an object without both ``modified`` and ``removed`` (e.g. the ``{}`` that
repair makes of prose) is unparseable, as in the reference scorer. ``format_target(record,
upstream=True)`` writes an unchanged score as ``{}``, the upstream state-difference form that
models trained on upstream data (the paper's released models among them) produce.

``format_target(record, style="reference")`` writes the answer as the reference writes the
"expected response" of its in-context examples (thuml/RLVR-World
``lang_wm/data_process/text_game/process_jsonl.py`` with GPT-simulator ``scripts/evaluate.py``
``make_game_state_partial``): ``The final answer is: {'modified': [...], 'removed': [...],
'score': {}}`` -- Python ``str()`` on one line (single quotes, ``True``/``False``/``None``), changed
objects in the current state's order then added ones, an unchanged score ``{}``.
``reference_state_difference`` is that upstream function on the reference's states
(``{"game_state": [objects..., score]}``), its quirks included: a property is compared only over
the current object's keys, ``contains`` sorted, equality is Python's (``True == 1``), and an
added object is written as the whole ``{uuid: object}`` dict of the next state unless
``upstream_added_bug=False`` (the targets use False). ``extract_answer`` reads both styles.
"""
from __future__ import annotations

import json
from typing import Any

from wm.textworld.game_state import require_field, true_transition
from wm.textworld.lenient_json import extract_json_object

MARKER = "The final answer is:"


STYLES = ("ours", "reference")


def format_target(record: dict, upstream: bool = False, style: str = "ours") -> str:
    """The ideal completion text for SFT: ``The final answer is: <json>`` (``upstream``: an
    unchanged score written as ``{}``); ``style="reference"``: the reference's form (see the
    module docstring; ``upstream`` does not apply, the score is always written that way)."""
    if style == "reference":
        return f"{MARKER} {record_state_difference(record)}"
    if style != "ours":
        raise ValueError(f"format_target: style={style!r}; use one of {STYLES}")
    return f"{MARKER} {json.dumps(true_transition(record, upstream=upstream))}"


def reference_state(state: dict, score: dict) -> dict:
    """The reference's game state: ``{"game_state": [objects..., score]}``."""
    return {"game_state": [*state["objects"], score]}


def _split_state(game_state: list) -> tuple[dict, dict]:
    """``({uuid: object}, score)``: entries with a uuid are objects, the one with ``score`` is
    the score."""
    objects, score = {}, {}
    for entry in game_state:
        if "uuid" in entry:
            objects[entry["uuid"]] = entry
        elif "score" in entry:
            score = entry
    return objects, score


def _object_changed(a: dict, b: dict) -> bool:
    props_a, props_b = a["properties"], b["properties"]
    if any(key not in props_b or props_a[key] != props_b[key] for key in props_a):
        return True  # keys only the next object has are not looked at (as upstream)
    return sorted(a["contains"]) != sorted(b["contains"])


def reference_state_difference(current: dict, target: dict,
                               upstream_added_bug: bool = True) -> dict:
    """``make_game_state_partial`` of two reference states: ``{"modified", "removed", "score"}``.

    Python equality as upstream (``True == 1``). ``upstream_added_bug``: an added object is
    written as the whole ``{uuid: object}`` dict of ``target`` (upstream); False writes the
    object itself.
    """
    cur, score_1 = _split_state(current["game_state"])
    nxt, score_2 = _split_state(target["game_state"])
    out: dict[str, Any] = {"modified": [], "removed": [], "score": {}}
    for uuid, obj in cur.items():
        if uuid not in nxt:
            out["removed"].append(uuid)
        elif _object_changed(obj, nxt[uuid]):
            out["modified"].append(nxt[uuid])
    for uuid, obj in nxt.items():
        if uuid not in cur:
            out["modified"].append(nxt if upstream_added_bug else obj)
    if any(score_1[key] != score_2[key] for key in score_1):
        out["score"] = score_2
    return out


def record_state_difference(record: dict, upstream_added_bug: bool = False) -> dict:
    """The reference state difference of a ByteSized32 record (current -> tick state)."""
    current, nxt = (require_field(record, f) for f in ("current_state", "tick_state"))
    current_score, next_score = (require_field(record, f)
                                 for f in ("current_score_state", "next_score_state"))
    return reference_state_difference(reference_state(current, current_score),
                                      reference_state(nxt, next_score), upstream_added_bug)


ANSWER_KEYS = ("modified", "removed")


def extract_answer(text: str):
    """``(obj, info)``: the JSON answer of a completion (see ``extract_json_object``); ``obj`` is
    None (``info["parsed"]`` False) unless it is an object with the ``ANSWER_KEYS``."""
    obj, info = extract_json_object(text, MARKER)
    if obj is not None and not all(k in obj for k in ANSWER_KEYS):
        missing = [k for k in ANSWER_KEYS if k not in obj]
        info.update(parsed=False, error=f"{info['source']}: the object has no {missing} key(s): "
                                        "not an answer")
        return None, info
    return obj, info
