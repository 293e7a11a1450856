"""How two run identities (or evaluation keys) differ, written for a one-line refusal.

Used by :mod:`wm.cli.run_identity` (a resume with other settings), :mod:`wm.cli.evaluate_checks`
(a checkpoint trained on other data) and :mod:`wm.cli.evaluate` (an ``out_dir`` holding another
evaluation). Issue #24, item 6: values were cut to their first 70 characters, so a model config
(``{"_partial_": true, "_target_": ...``) or a long path lost the part that differs on both
sides. Here a mapping is compared entry by entry down to the entries that differ
(``model.policy.hidden_size=32 there, 48 here``), lists of equal length item by item
(``data.resolution[0]``), and a long value is shown from a little before its first differing
character, at the same place on both sides.
"""
from __future__ import annotations

import json
import os
from typing import Any

UNSET = "<unset>"


def differences(recorded: dict, current: dict, keys=None) -> list[str]:
    """The keys whose values differ (a key missing on one side counts), in a stable order."""
    keys = list(keys) if keys is not None else sorted(set(recorded) | set(current))
    return [k for k in keys if (k in recorded or k in current)
            and recorded.get(k, UNSET) != current.get(k, UNSET)]


def leaf_differences(key: str, there: Any, here: Any) -> list[tuple[str, Any, Any]]:
    """``(dotted key, value there, value here)`` for every entry that differs below ``key``."""
    if isinstance(there, dict) and isinstance(here, dict):
        return [leaf for k in sorted(set(there) | set(here), key=str)
                for leaf in leaf_differences(f"{key}.{k}", there.get(k, UNSET), here.get(k, UNSET))]
    if isinstance(there, list) and isinstance(here, list) and len(there) == len(here):
        return [leaf for i, (a, b) in enumerate(zip(there, here))
                for leaf in leaf_differences(f"{key}[{i}]", a, b)]
    return [] if there == here else [(key, there, here)]


def _text(value: Any) -> str:
    return "null" if value is None else (value if isinstance(value, str) else
                                         json.dumps(value, sort_keys=True, default=str))


def show_pair(there: Any, here: Any, limit: int = 90, before: int = 24) -> tuple[str, str]:
    """Both values as text; when one is longer than ``limit``, both are cut to the same window
    that starts ``before`` characters ahead of their first difference."""
    a, b = _text(there), _text(here)
    if max(len(a), len(b)) <= limit:
        return a, b
    start = max(0, len(os.path.commonprefix([a, b])) - before)

    def cut(text: str) -> str:
        end = start + limit
        return ("..." if start else "") + text[start:end] + ("..." if len(text) > end else "")

    return cut(a), cut(b)


def describe_difference(recorded: dict, current: dict, diff: list[str], shown: int = 3) -> str:
    """``data.root=/a there, /b here; model.policy.hidden_size=32 there, 48 here (and 2 more:
    x, y)``: the first ``shown`` differing entries with both values, then the others' names."""
    leaves = [leaf for k in diff
              for leaf in leaf_differences(k, recorded.get(k, UNSET), current.get(k, UNSET))]
    leaves = leaves or [(k, recorded.get(k, UNSET), current.get(k, UNSET)) for k in diff]
    parts = []
    for key, there, here in leaves[:shown]:
        a, b = show_pair(there, here)
        parts.append(f"{key}={a} there, {b} here")
    text = "; ".join(parts)
    rest = [key for key, _, _ in leaves[shown:]]
    if rest:
        text += f" (and {len(rest)} more: {', '.join(rest[:3])}{', ...' if len(rest) > 3 else ''})"
    return text
