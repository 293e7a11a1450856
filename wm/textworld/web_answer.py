"""The WMA web-page answer format (RLVR-World Sec. 4.2; Chae et al., "Web Agents with World
Models", the ``next_state_tao`` annotation): how the accessibility tree changes, as three
sections::

    New items:
    [1016] gridcell '10' required: False
    ...
    Deleted items:
    None
    Updated items:
    [6] menubar '' orientation: horizontal

``format_target`` writes a record's ideal answer (its ``next_state_tao``); ``parse_sections``
reads the items back. Each non-empty line of a section is one item; ``None`` (any case, optional
trailing period) or an empty section means no items; leading bullets (``-``, ``*``, ``•``,
``1.``, ``2)``) and surrounding whitespace are stripped. A header written more than once (a
draft, then the answer): the last occurrence wins. Text inside ``<think>...</think>`` is never
read; a ``<think>`` that never closes leaves nothing to parse.
"""
from __future__ import annotations

import re

from wm.textworld.lenient_json import strip_think

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


def format_target(record: dict) -> str:
    """The ideal completion for SFT: the record's ``next_state_tao`` text."""
    if "next_state_tao" not in record:
        raise KeyError("WebArena record is missing field 'next_state_tao' (see docs/data.md, "
                       '"ByteSized32 and WebArena (text worlds)")')
    return record["next_state_tao"].strip()
