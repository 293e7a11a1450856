"""The ByteSized32 state model: objects by uuid, applying a predicted state difference, and the
item-by-item comparison of two states (RLVR-World Sec. 4.1; Wang et al., ByteSized32-State-
Prediction, "full" setting with state differences).

An *item* is one ``(uuid, "properties.<key>")`` or ``(uuid, "contains")`` slot of an object.
``item_acc`` is the fraction of items in ``items(pred) ∪ items(true)`` whose predicted value
equals the true one (an object the model forgot, or one it should have removed, makes all its
items wrong). ``changed_acc`` is the same fraction over the items whose value differs between
the current and the true next state (including items of objects that appear or disappear); it
is ``None`` when nothing changed. ``score_acc`` is the fraction of the three score keys right.

Departure from the reference, on purpose: values are compared strictly and type-aware (``true``
is not ``1``; ``1`` equals ``1.0``); ``contains`` lists are compared as multisets (the order of
a container's items carries no game meaning).
"""
from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

SCORE_KEYS = ("score", "gameOver", "gameWon")
_MISSING = object()


def _uuid(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdecimal():
        try:
            return int(value)
        except ValueError:  # e.g. superscript digits pass some digit tests but not int()
            return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def objects_by_uuid(state: dict) -> dict[Any, dict]:
    """``{uuid: object}`` of a ByteSized32 state (``state["objects"]``)."""
    return {_uuid(o["uuid"]): o for o in state["objects"]}


def merge_prediction(current_state: dict, prediction: dict,
                     current_score: dict | None = None) -> tuple[dict[Any, dict], dict]:
    """Apply a ``{"modified", "removed", "score"}`` prediction to ``current_state``.

    Returns ``(objects, score)``: the predicted next objects by uuid and the predicted score.
    ``modified`` entries replace the object with the same uuid (or add it); entries that are not
    objects with a ``uuid`` are ignored; ``removed`` uuids are deleted. The score follows the
    upstream state-difference format, as the reference's ``recover_game_state_from_partial``
    reads it: ``"score": {}`` means "unchanged" (``current_score`` carries over), a non-empty
    dict is the whole predicted score (a missing key is wrong), no ``score`` key or a non-dict
    predicts nothing (every score key wrong). Malformed fields never raise.
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
    score = prediction.get("score")
    if isinstance(score, dict) and not score and "score" in prediction:
        return objects, dict(current_score or {})
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


def require_field(record: dict, field: str) -> Any:
    if not isinstance(record, dict) or field not in record:
        raise KeyError(
            f"ByteSized32 record is missing field {field!r} (expected the fields of "
            'docs/data.md, "ByteSized32 and WebArena (text worlds)": current_state, tick_state, '
            "current_score_state, next_score_state)"
        )
    return record[field]


def true_transition(record: dict, upstream: bool = False) -> dict:
    """The ideal answer object for a record: changed/added objects, removed uuids, next score.

    ``upstream=True`` writes an unchanged score as ``{}`` (the upstream state-difference form).
    A deep copy: editing it never alters the record."""
    current = objects_by_uuid(require_field(record, "current_state"))
    nxt = objects_by_uuid(require_field(record, "tick_state"))
    modified = [
        obj for uid, obj in nxt.items() if uid not in current or not _same_object(current[uid], obj)
    ]
    removed = [uid for uid in current if uid not in nxt]
    score = {k: require_field(record, "next_score_state")[k] for k in SCORE_KEYS}
    if upstream:
        current_score = require_field(record, "current_score_state")
        if all(same_value(current_score.get(k, _MISSING), score[k]) for k in SCORE_KEYS):
            score = {}
    return copy.deepcopy({"modified": modified, "removed": removed, "score": score})


def _same_object(a: dict, b: dict) -> bool:
    items_a, items_b = _items({0: a}), _items({0: b})
    return items_a.keys() == items_b.keys() and all(
        _same_item(k, items_a[k], items_b[k]) for k in items_a
    )
