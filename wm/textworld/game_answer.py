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
"""
from __future__ import annotations

import json

from wm.textworld.game_state import true_transition
from wm.textworld.lenient_json import extract_json_object

MARKER = "The final answer is:"


def format_target(record: dict, upstream: bool = False) -> str:
    """The ideal completion text for SFT: ``The final answer is: <json>`` (``upstream``: an
    unchanged score written as ``{}``)."""
    return f"{MARKER} {json.dumps(true_transition(record, upstream=upstream))}"


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
