"""Verifiable reward for the web-page world model (WebArena / WMA next-state description).

Paper: RLVR-World (NeurIPS 2025), Sec. 4.2 "Web page state prediction"; format from WMA
(Chae et al., "Web Agents with World Models", the ``next_state_tao`` annotation).

The model describes how the accessibility tree changes as three sections::

    New items:
    [1016] gridcell '10' required: False
    ...
    Deleted items:
    None
    Updated items:
    [6] menubar '' orientation: horizontal

Each non-empty line of a section is one item; ``None`` (any case, optional trailing period)
or an empty section means no items; leading bullets (``-``, ``*``, ``•``, ``1.``, ``2)``) and
surrounding whitespace are stripped. Items are tagged by their section, so a node listed as
"new" when it was "updated" does not count. Matching is exact string equality after that
normalisation, over *multisets* (a line listed twice counts twice). Precision, recall and F1 are
pooled over the three sections.

Departures from the reference, on purpose:

- A literal ``None`` is not an item (the reference counts it, so two "nothing changed" sections
  match and inflate F1).
- Text inside ``<think>...</think>`` is never scored: only the text after the last
  ``</think>`` counts; a ``<think>`` that never closes leaves nothing to score.
- A header written more than once (a draft, then the answer): the last occurrence wins.
- Both sides empty → precision = recall = F1 = 1.0. A prediction with no section header is
  unparseable: all 0.0 and ``parsed`` False (never raises).
"""
from __future__ import annotations

import re
from collections import Counter

from wm.rewards.text_game import strip_think

SECTIONS = ("new", "deleted", "updated")
_HEADER = re.compile(
    r"^[ \t#*_>-]*(new|deleted|updated)\s+items\s*[*_]*\s*:[*_]*[ \t]*", re.I | re.M
)
_BULLET = re.compile(r"^(?:[-*•+]|\d+[.)])\s+")
_NONE = re.compile(r"^none\.?$", re.I)


def parse_sections(text: str) -> dict[str, list[str]] | None:
    """``{"new": [...], "deleted": [...], "updated": [...]}``, or ``None`` if no header is found."""
    body = strip_think(text if isinstance(text, str) else "")
    if body is None:
        return None
    headers = list(_HEADER.finditer(body))
    if not headers:
        return None
    sections: dict[str, list[str]] = {name: [] for name in SECTIONS}
    for h, nxt in zip(headers, headers[1:] + [None]):
        block = body[h.end() : nxt.start() if nxt else len(body)]
        items = []
        for line in block.splitlines():
            item = _BULLET.sub("", line.strip()).strip()
            if item and not _NONE.match(item):
                items.append(item)
        sections[h.group(1).lower()] = items  # the last occurrence of a header wins
    return sections


def _tagged(sections: dict[str, list[str]]) -> Counter:
    return Counter((name, item) for name in SECTIONS for item in sections[name])


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
    n_pred, n_true = sum(p.values()), sum(t.values())
    if n_pred == 0 and n_true == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "parsed": True}
    hits = sum((p & t).values())
    precision = hits / n_pred if n_pred else 0.0
    recall = hits / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "parsed": True}


def format_target(record: dict) -> str:
    """The ideal completion for SFT: the record's ``next_state_tao`` text."""
    if "next_state_tao" not in record:
        raise KeyError("WebArena record is missing field 'next_state_tao' (see data/README.md)")
    return record["next_state_tao"].strip()


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
