"""Verifiable reward for the web-page world model (WebArena / WMA next-state description).

Paper: RLVR-World (NeurIPS 2025), Sec. 4.2 "Web page state prediction". The answer format (and
its parser) is ``wm.textworld.web_answer``. Items are tagged by their section, so a node listed
as "new" when it was "updated" does not count. Matching is exact string equality after the
parser's normalisation, over item *sets* per section, as the reference scores them (a line
listed twice counts once). Precision, recall and F1 are pooled over the three sections.

Departures from the reference, on purpose:

- A literal ``None`` is not an item (the reference counts it, so two "nothing changed" sections
  match and inflate F1).
- Text inside ``<think>...</think>`` is never scored.
- Both sides empty → precision = recall = F1 = 1.0. A prediction with no section header is
  unparseable: all 0.0 and ``parsed`` False (never raises).
"""
from __future__ import annotations

from wm.textworld.web_answer import SECTIONS, format_target, parse_sections


def _tagged(sections: dict[str, list[str]]) -> set[tuple[str, str]]:
    """``{(section, item)}``: items tagged by their section, duplicates counted once."""
    return {(name, item) for name in SECTIONS for item in sections[name]}


def item_f1(pred_text: str, true_text: str) -> dict:
    """Precision, recall and F1 of predicted items against true items, pooled over sections.

    Returns ``{"precision", "recall", "f1", "parsed"}``. Raises ``ValueError`` only when the
    *true* text (data) has no section header.
    """
    truth = parse_sections(true_text)
    if truth is None:
        raise ValueError(
            "web reward: the true next-state text (record field 'next_state_tao') has no "
            "'New items:' / 'Deleted items:' / 'Updated items:' header"
        )
    pred = parse_sections(pred_text)
    if pred is None:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "parsed": False}
    p, t = _tagged(pred), _tagged(truth)
    n_pred, n_true = len(p), len(t)
    if n_pred == 0 and n_true == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "parsed": True}
    hits = len(p & t)
    precision = hits / n_pred if n_pred else 0.0
    recall = hits / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "parsed": True}


def web_rewards(completions: list[str], records: list[dict]) -> dict:
    """Batch form (one record per completion): float32 tensors ``(N,)`` ``f1``, ``precision``,
    ``recall``, ``parse_fail``."""
    import torch

    if len(completions) != len(records):
        raise ValueError(
            f"web_rewards: {len(completions)} completions but {len(records)} records; "
            "repeat each record once per completion of its group"
        )
    scores = [item_f1(c, format_target(r)) for c, r in zip(completions, records)]
    cols = {k: [float(s[k]) for s in scores] for k in ("f1", "precision", "recall")}
    cols["parse_fail"] = [0.0 if s["parsed"] else 1.0 for s in scores]
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in cols.items()}
