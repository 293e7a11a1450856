"""Verifiable rewards for the text-game world model (ByteSized32-State-Prediction).

Paper: RLVR-World (NeurIPS 2025), Sec. 4.1 "Text game state prediction" and its appendix on
the reward; data and answer format from Wang et al., "Can Language Models Serve as Text-Based
World Simulators?" (ByteSized32-State-Prediction, "full" setting with state differences).

The model answers, after the marker ``The final answer is:``, with a JSON object

    {"modified": [<full object>, ...], "removed": [<uuid>, ...],
     "score": {"score": int, "gameOver": bool, "gameWon": bool}}

which is merged into the current state (``merge_prediction``) and compared with the true next
state (``record["tick_state"]``, the state after the action *and* the time step) property by
property (``compare_states``).

An *item* is one ``(uuid, "properties.<key>")`` or ``(uuid, "contains")`` slot of an object.
``item_acc`` is the fraction of items in ``items(pred) ∪ items(true)`` whose predicted value
equals the true one (an object the model forgot, or one it should have removed, makes all its
items wrong). ``changed_acc`` is the same fraction over the items whose value differs between
the current and the true next state (including items of objects that appear or disappear); it
is ``None`` when nothing changed. ``score_acc`` is the fraction of the three score keys right.

Rewards, for one completion:

- ``binary_reward``: 1.0 iff every item and every score key is right (``exact``).
- ``task_specific_reward`` (the reference *code*): ``0.09*item_acc + 0.01*score_acc +
  0.2*exact + changed_acc`` (the ``changed_acc`` term is 0 when nothing changed).
- ``paper_task_specific_reward`` (the *paper's* formula): ``0.1*acc_all + 1.0*acc_changed +
  0.2*I(correct)`` with ``acc_all`` pooled over items and score keys.

Departures from the reference, on purpose:

- Text inside ``<think>...</think>`` is never scored: only the text after the last
  ``</think>`` counts (a completion whose ``<think>`` never closes is unparseable).
- Values are compared strictly and type-aware (``true`` is not ``1``; ``1`` equals ``1.0``);
  ``contains`` lists are compared as multisets (the order of a container's items carries no
  game meaning).
- Damaged JSON (trailing commas, single quotes, Python ``True/False/None``, code fences,
  missing or extra closing braces) is repaired before it is given up; unparseable output scores
  0.0 and is flagged (``parsed=False``), it never raises.
"""
from __future__ import annotations

import ast
import copy
import json
import math
import re
from collections import Counter
from typing import Any

MARKER = "The final answer is:"
SCORE_KEYS = ("score", "gameOver", "gameWon")
_MISSING = object()

# ------------------------------------------------------------------------------------------
# answer extraction


def strip_think(text: str) -> str | None:
    """Text that may be scored: after the last ``</think>``; ``None`` if a ``<think>`` never closes."""
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        return None
    return text


def _balanced_span(text: str, start: int) -> tuple[int, bool]:
    """End index (exclusive) of the JSON-ish value opening at ``text[start]`` and whether it closed.

    Tracks double- and single-quoted strings and nesting of ``{}``/``[]``; an unclosed value runs to
    the end of the text.
    """
    depth, quote, i = 0, None, start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            # an apostrophe inside a word (don't) is not a quote
            if c == '"' or not (text[i - 1 : i].isalnum() and text[i + 1 : i + 2].isalnum()):
                quote = c
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1, True
        i += 1
    return len(text), False


def _first_object(text: str) -> str | None:
    start = text.find("{")
    if start < 0:
        return None
    end, _ = _balanced_span(text, start)
    return text[start:end]


def _last_object(text: str) -> str | None:
    """The last top-level balanced ``{...}`` in free text (prose around it is skipped)."""
    last, i = None, text.find("{")
    while i >= 0:
        end, closed = _balanced_span(text, i)
        if closed:
            last = text[i:end]
            i = text.find("{", end)
        else:
            # an unclosed brace (prose or truncation): try the next opening brace
            last = last or text[i:end]
            i = text.find("{", i + 1)
    return last


def _strip_fences(s: str) -> str:
    s = s.strip()
    s = re.sub(r"^```[a-zA-Z]*\s*", "", s)
    return re.sub(r"\s*```\s*$", "", s)


_PY_WORDS = {"True": "true", "False": "false", "None": "null"}


def repair_json(s: str) -> str:
    """Rewrite common JSON damage: single quotes, Python literals, trailing commas, missing or
    extra closing brackets, an unterminated string. Returns a string for ``json.loads``."""
    out: list[str] = []
    stack: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in "\"'":  # copy a string, re-quoting it with double quotes
            quote, j, buf = c, i + 1, []
            while j < n and s[j] != quote:
                if s[j] == "\\" and j + 1 < n:
                    esc = s[j + 1]
                    buf.append("'" if esc == "'" else "\\" + esc)
                    j += 2
                    continue
                buf.append('\\"' if s[j] == '"' else s[j])
                j += 1
            out.append('"' + "".join(buf).replace("\n", "\\n") + '"')
            i = j + 1
            continue
        if c.isalpha() or c == "_":
            j = i
            while j < n and (s[j].isalnum() or s[j] == "_"):
                j += 1
            word = s[i:j]
            out.append(_PY_WORDS.get(word, word))
            i = j
            continue
        if c in "{[":
            stack.append("}" if c == "{" else "]")
        elif c in "}]":
            # drop a trailing comma before the closer
            while out and out[-1].strip() in ("", ","):
                if out[-1].strip() == ",":
                    out.pop()
                    break
                out.pop()
            if not stack:  # an extra closing bracket: the value is complete
                break
            while len(stack) > 1 and stack[-1] != c:  # close what was left open inside
                out.append(stack.pop())
            out.append(stack.pop())  # the expected closer, even if a wrong one was written
            i += 1
            if not stack:
                break
            continue
        out.append(c)
        i += 1
    text = "".join(out).rstrip().rstrip(",")
    return text + "".join(reversed(stack))


def _loads(s: str) -> tuple[Any, bool]:
    """Parse ``s`` as JSON, repairing if needed. Returns (value, repaired); raises ValueError."""
    s = _strip_fences(s)
    try:
        return json.loads(s), False
    except ValueError:
        pass
    try:
        return json.loads(repair_json(s)), True
    except ValueError:
        pass
    try:  # last resort: a Python literal (never evaluates code)
        value = ast.literal_eval(s)
        json.dumps(value)
        return value, True
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError("not JSON, even after repair") from None


def extract_answer(text: str) -> tuple[dict | None, dict]:
    """Find and parse the JSON answer of a completion.

    Order: the first JSON object after the last ``The final answer is:``; else the last fenced
    ```` ```json ```` block; else the last balanced ``{...}``. Text inside ``<think>`` is ignored.
    Returns ``(obj, info)``; ``obj`` is ``None`` (and ``info["parsed"]`` False) when nothing
    parses to a JSON object. ``info``: ``parsed``, ``source`` (marker|fence|brace|None),
    ``repaired``, ``error``.
    """
    info: dict[str, Any] = {"parsed": False, "source": None, "repaired": False, "error": None}
    body = strip_think(text if isinstance(text, str) else "")
    if body is None:
        info["error"] = "unclosed <think>: no answer after the reasoning"
        return None, info
    candidates: list[tuple[str, str | None]] = []
    if MARKER in body:
        candidates.append(("marker", _first_object(body.rsplit(MARKER, 1)[1])))
    fences = re.findall(r"```(?:json)?\s*(.*?)(?:```|$)", body, flags=re.S)
    if fences:
        candidates.append(("fence", _first_object(fences[-1])))
    candidates.append(("brace", _last_object(body)))
    for source, snippet in candidates:
        if not snippet:
            continue
        try:
            value, repaired = _loads(snippet)
        except ValueError as err:
            info["error"] = f"{source}: {err}"
            continue
        if isinstance(value, dict):
            info.update(parsed=True, source=source, repaired=repaired, error=None)
            return value, info
        info["error"] = f"{source}: answer is a {type(value).__name__}, not a JSON object"
    if info["error"] is None:
        info["error"] = "no JSON object found"
    return None, info


# ------------------------------------------------------------------------------------------
# states


def _uuid(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def objects_by_uuid(state: dict) -> dict[Any, dict]:
    """``{uuid: object}`` of a ByteSized32 state (``state["objects"]``)."""
    return {_uuid(o["uuid"]): o for o in state["objects"]}


def merge_prediction(current_state: dict, prediction: dict) -> tuple[dict[Any, dict], dict]:
    """Apply a ``{"modified", "removed", "score"}`` prediction to ``current_state``.

    Returns ``(objects, score)``: the predicted next objects by uuid and the predicted score
    dict (``{}`` when missing). ``modified`` entries replace the object with the same uuid (or
    add it); entries that are not objects with a ``uuid`` are ignored; ``removed`` uuids are
    deleted. Malformed fields never raise.
    """
    objects = dict(objects_by_uuid(current_state))
    modified = prediction.get("modified", [])
    for obj in modified if isinstance(modified, list) else []:
        if isinstance(obj, dict) and "uuid" in obj:
            try:
                objects[_uuid(obj["uuid"])] = obj
            except TypeError:  # unhashable uuid
                continue
    removed = prediction.get("removed", [])
    for uid in removed if isinstance(removed, list) else []:
        try:
            objects.pop(_uuid(uid), None)
        except TypeError:
            continue
    score = prediction.get("score", {})
    return objects, score if isinstance(score, dict) else {}


def _items(objects: dict[Any, dict]) -> dict[tuple, Any]:
    """Flatten objects to ``{(uuid, "properties.<k>" | "contains"): value}``."""
    items: dict[tuple, Any] = {}
    for uid, obj in objects.items():
        props = obj.get("properties", {})
        if isinstance(props, dict):
            for key, value in props.items():
                items[(uid, f"properties.{key}")] = value
        items[(uid, "contains")] = obj.get("contains", [])
    return items


def same_value(a: Any, b: Any, *, multiset: bool = False) -> bool:
    """Strict, type-aware JSON equality (``true != 1``, ``1 == 1.0``)."""
    if a is _MISSING or b is _MISSING:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        if multiset:
            key = lambda v: json.dumps(v, sort_keys=True)  # noqa: E731
            try:
                return Counter(map(key, a)) == Counter(map(key, b))
            except TypeError:
                return False
        return all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _same_item(key: tuple, a: Any, b: Any) -> bool:
    return same_value(a, b, multiset=key[1] == "contains")


def compare_states(
    pred_state: dict[Any, dict],
    true_state: dict[Any, dict],
    pred_score: dict,
    true_score: dict,
    current_state: dict[Any, dict],
) -> dict[str, Any]:
    """Per-item comparison of a predicted next state with the true one (all ``{uuid: object}``).

    Returns ``item_acc``, ``score_acc``, ``exact`` (bool), ``changed_acc`` (``None`` when no item
    changed), ``acc_all`` (items and score keys pooled), and the counts behind them.
    """
    pred_items, true_items, cur_items = _items(pred_state), _items(true_state), _items(current_state)
    keys = set(pred_items) | set(true_items)
    right = sum(
        _same_item(k, pred_items.get(k, _MISSING), true_items.get(k, _MISSING)) for k in keys
    )
    changed = [
        k
        for k in set(cur_items) | set(true_items)
        if not _same_item(k, cur_items.get(k, _MISSING), true_items.get(k, _MISSING))
    ]
    changed_right = sum(
        _same_item(k, pred_items.get(k, _MISSING), true_items.get(k, _MISSING)) for k in changed
    )
    score_right = sum(
        same_value(pred_score.get(k, _MISSING), true_score.get(k, _MISSING)) for k in SCORE_KEYS
    )
    n_items = max(len(keys), 1)
    return {
        "item_acc": right / n_items,
        "score_acc": score_right / len(SCORE_KEYS),
        "exact": right == len(keys) and score_right == len(SCORE_KEYS),
        "changed_acc": changed_right / len(changed) if changed else None,
        "acc_all": (right + score_right) / (len(keys) + len(SCORE_KEYS)),
        "n_items": len(keys),
        "n_changed": len(changed),
    }


# ------------------------------------------------------------------------------------------
# records


def _require(record: dict, field: str) -> Any:
    if not isinstance(record, dict) or field not in record:
        raise KeyError(
            f"ByteSized32 record is missing field {field!r} (expected the fields of "
            "data/README.md: current_state, tick_state, current_score_state, next_score_state)"
        )
    return record[field]


def true_transition(record: dict) -> dict:
    """The ideal answer object for a record: changed/added objects, removed uuids, next score.

    A deep copy: editing it never alters the record."""
    current = objects_by_uuid(_require(record, "current_state"))
    nxt = objects_by_uuid(_require(record, "tick_state"))
    modified = [
        obj for uid, obj in nxt.items() if uid not in current or not _same_object(current[uid], obj)
    ]
    removed = [uid for uid in current if uid not in nxt]
    score = {k: _require(record, "next_score_state")[k] for k in SCORE_KEYS}
    return copy.deepcopy({"modified": modified, "removed": removed, "score": score})


def _same_object(a: dict, b: dict) -> bool:
    items_a, items_b = _items({0: a}), _items({0: b})
    return items_a.keys() == items_b.keys() and all(
        _same_item(k, items_a[k], items_b[k]) for k in items_a
    )


def format_target(record: dict) -> str:
    """The ideal completion text for SFT: ``The final answer is: <json>``."""
    return f"{MARKER} {json.dumps(true_transition(record))}"


def score_completion(completion: str, record: dict) -> dict[str, Any]:
    """Parse, merge and compare one completion. Unparseable → all accuracies 0, ``parsed`` False."""
    current = objects_by_uuid(_require(record, "current_state"))
    true_next = objects_by_uuid(_require(record, "tick_state"))
    true_score = _require(record, "next_score_state")
    answer, info = extract_answer(completion)
    if answer is None:
        n_changed = compare_states(current, true_next, {}, true_score, current)["n_changed"]
        return {
            "parsed": False, "error": info["error"], "item_acc": 0.0, "score_acc": 0.0,
            "exact": False, "changed_acc": 0.0 if n_changed else None, "acc_all": 0.0,
            "n_changed": n_changed,
        }
    pred, pred_score = merge_prediction(record["current_state"], answer)
    result = compare_states(pred, true_next, pred_score, true_score, current)
    result.update(parsed=True, error=None, repaired=info["repaired"])
    return result


def binary_reward(completion: str, record: dict) -> float:
    """1.0 iff the predicted next state and score are entirely right, else 0.0."""
    return float(score_completion(completion, record)["exact"])


def _task_specific(s: dict) -> float:
    if not s["parsed"]:
        return 0.0
    return 0.09 * s["item_acc"] + 0.01 * s["score_acc"] + 0.2 * s["exact"] + (s["changed_acc"] or 0.0)


def _paper_task_specific(s: dict) -> float:
    if not s["parsed"]:
        return 0.0
    return 0.1 * s["acc_all"] + 1.0 * (s["changed_acc"] or 0.0) + 0.2 * s["exact"]


def task_specific_reward(completion: str, record: dict) -> float:
    """Reference code: ``0.09*item_acc + 0.01*score_acc + 0.2*exact + changed_acc``."""
    return _task_specific(score_completion(completion, record))


def paper_task_specific_reward(completion: str, record: dict) -> float:
    """Paper: ``0.1*acc_all + 1.0*acc_changed + 0.2*I(correct)``."""
    return _paper_task_specific(score_completion(completion, record))


def max_task_specific_reward(record: dict) -> float:
    """Best possible ``task_specific_reward`` for a record: 1.3 if something changed, else 0.3."""
    current = objects_by_uuid(_require(record, "current_state"))
    nxt = objects_by_uuid(_require(record, "tick_state"))
    changed = compare_states(current, nxt, {}, {}, current)["n_changed"]
    return 0.3 + (1.0 if changed else 0.0)


def text_game_rewards(completions: list[str], records: list[dict]) -> dict[str, Any]:
    """Batch form: one record per completion (repeat records ``G`` times for a group of ``G``).

    Returns float32 tensors of shape ``(N,)``: ``binary``, ``task_specific``,
    ``task_specific_paper``, ``item_acc``, ``score_acc``, ``exact``, ``changed_acc`` (NaN where
    nothing changed), ``parse_fail`` (1.0 where the completion did not parse).
    """
    import torch

    if len(completions) != len(records):
        raise ValueError(
            f"text_game_rewards: {len(completions)} completions but {len(records)} records; "
            "repeat each record once per completion of its group"
        )
    scores = [score_completion(c, r) for c, r in zip(completions, records)]
    cols = {
        "binary": [float(s["exact"]) for s in scores],
        "task_specific": [_task_specific(s) for s in scores],
        "task_specific_paper": [_paper_task_specific(s) for s in scores],
        "item_acc": [s["item_acc"] for s in scores],
        "score_acc": [s["score_acc"] for s in scores],
        "exact": [float(s["exact"]) for s in scores],
        "changed_acc": [math.nan if s["changed_acc"] is None else s["changed_acc"] for s in scores],
        "parse_fail": [0.0 if s["parsed"] else 1.0 for s in scores],
    }
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in cols.items()}
