"""Verifiable rewards for the text-game world model (ByteSized32-State-Prediction).

Paper: RLVR-World (NeurIPS 2025), Sec. 4.1 "Text game state prediction" and its appendix on
the reward. The answer format is ``wm.textworld.game_answer``; the merge and the item-by-item
comparison (``item_acc``, ``changed_acc``, ``score_acc``) are ``wm.textworld.game_state``.

Rewards, for one completion:

- ``binary_reward``: 1.0 iff every item and every score key is right (``exact``).
- ``task_specific_reward`` (the reference *code*): ``0.09*item_acc + 0.01*score_acc +
  0.2*exact + changed_acc`` (the ``changed_acc`` term is 0 when nothing changed).
- ``paper_task_specific_reward`` (the *paper's* formula): ``0.1*acc_all + 1.0*acc_changed +
  0.2*I(correct)`` with ``acc_all`` pooled over items and score keys.

Unparseable output scores 0.0 and is flagged (``parsed=False``), it never raises.
"""
from __future__ import annotations

import math
from typing import Any

from wm.textworld.game_answer import extract_answer
from wm.textworld.game_state import compare_states, merge_prediction, objects_by_uuid, require_field


def score_completion(completion: str, record: dict) -> dict[str, Any]:
    """Parse, merge and compare one completion. Unparseable → all accuracies 0, ``parsed`` False."""
    current = objects_by_uuid(require_field(record, "current_state"))
    true_next = objects_by_uuid(require_field(record, "tick_state"))
    true_score = require_field(record, "next_score_state")
    try:
        answer, info = extract_answer(completion)
        if answer is not None:
            pred, pred_score = merge_prediction(record["current_state"], answer,
                                                record.get("current_score_state"))
            result = compare_states(pred, true_next, pred_score, true_score, current)
            result.update(parsed=True, error=None, repaired=info["repaired"])
            return result
        error = info["error"]
    except (RecursionError, MemoryError, ValueError, TypeError) as err:
        # one pathological completion (e.g. nesting deeper than Python's stack) must never take
        # down a reward batch: it is unparseable
        error = f"unscorable answer ({type(err).__name__}: {str(err)[:80]})"
    n_changed = compare_states(current, true_next, {}, true_score, current)["n_changed"]
    return {
        "parsed": False, "error": error, "item_acc": 0.0, "score_acc": 0.0,
        "exact": False, "changed_acc": 0.0 if n_changed else None, "acc_all": 0.0,
        "n_changed": n_changed,
    }


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
    current = objects_by_uuid(require_field(record, "current_state"))
    nxt = objects_by_uuid(require_field(record, "tick_state"))
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
