"""Find and parse a JSON object in free model output, repairing common damage.

Shared by the JSON text worlds (``game_answer``, ``toy``). Text inside ``<think>...</think>`` is
never read: only the text after the last ``</think>`` counts (a ``<think>`` that never closes
leaves nothing). Damaged JSON (trailing commas, single quotes, Python ``True/False/None``, code
fences, missing or extra closing braces) is repaired before it is given up; nothing here raises
on model output.
"""
from __future__ import annotations

import ast
import json
import re
from typing import Any


def strip_think(text: str) -> str | None:
    """Text that may be scored: after the last ``</think>``; ``None`` if a ``<think>`` never closes."""
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        return None
    return text


_OPEN, _CLOSE = "{[", "}]"
_SPAN_SPECIAL = re.compile(r"[{}\[\]\"']")
_IN_QUOTE = {'"': re.compile(r'["\\]'), "'": re.compile(r"['\\]")}


def _balanced_span(text: str, start: int) -> tuple[int, bool]:
    """End index (exclusive) of the JSON-ish value opening at ``text[start]`` and whether it closed.

    Tracks double- and single-quoted strings and nesting of ``{}``/``[]``; an unclosed value runs to
    the end of the text. Linear in the text (jumps between special characters with a regex).
    """
    depth, i, n = 0, start, len(text)
    while True:
        m = _SPAN_SPECIAL.search(text, i)
        if m is None:
            return n, False
        i, c = m.start(), m.group()
        if c in "\"'":
            # an apostrophe inside a word (don't) is not a quote
            if c == "'" and text[i - 1 : i].isalnum() and text[i + 1 : i + 2].isalnum():
                i += 1
                continue
            j = i + 1
            while True:  # skip the quoted text, honouring backslash escapes
                q = _IN_QUOTE[c].search(text, j)
                if q is None:
                    return n, False
                if q.group() == "\\":
                    j = q.start() + 2
                    continue
                i = q.start() + 1
                break
            continue
        depth += 1 if c in _OPEN else -1
        i += 1
        if depth == 0:
            return i, True


def _first_object(text: str) -> str | None:
    """The object opening at the first ``{`` (to the end of the text if it never closes)."""
    start = text.find("{")
    if start < 0:
        return None
    end, _ = _balanced_span(text, start)
    return text[start:end]


def _outermost_last_object(text: str) -> str | None:
    """The last top-level ``{...}`` of free text (prose around it is skipped).

    An unclosed top-level brace runs to the end of the text: everything after it is *inside*
    that object (a truncated answer), so the scan never restarts inside it and never returns one
    of its inner objects as the answer.
    """
    last, i = None, text.find("{")
    while i >= 0:
        end, closed = _balanced_span(text, i)
        last = text[i:end]
        if not closed:
            break
        i = text.find("{", end)
    return last


def _strip_fences(s: str) -> str:
    """Drop a leading ```` ```lang ```` and a trailing ```` ``` ```` (no regex backtracking)."""
    s = s.strip()
    if s.startswith("```"):
        k = 3
        while k < len(s) and s[k].isalpha():
            k += 1
        s = s[k:].lstrip()
    if s.endswith("```"):
        s = s[:-3].rstrip()
    return s


_PY_WORDS = {"True": "true", "False": "false", "None": "null"}
_REPAIR_SPECIAL = re.compile(r"[\"'{}\[\]A-Za-z_]")
_WORD = re.compile(r"[A-Za-z0-9_]*")


def _drop_trailing_comma(out: list[str]) -> None:
    """Remove trailing whitespace and one trailing comma from the text written so far."""
    while out:
        tail = out[-1].rstrip()
        if not tail:
            out.pop()
            continue
        out[-1] = tail[:-1] if tail.endswith(",") else tail
        return


def _copy_string(s: str, i: int) -> tuple[str, int]:
    """The quoted string opening at ``s[i]``, re-quoted with double quotes; and the index after
    it. An unterminated string is closed at the end of the text."""
    quote, n = s[i], len(s)
    pattern = _IN_QUOTE[quote]
    buf, j = [], i + 1
    while True:
        m = pattern.search(s, j)
        if m is None:
            buf.append(s[j:].replace('"', '\\"') if quote == "'" else s[j:])
            j = n
            break
        k = m.start()
        chunk = s[j:k]
        buf.append(chunk.replace('"', '\\"') if quote == "'" else chunk)
        if m.group() == "\\":
            if k + 1 < n:
                esc = s[k + 1]
                buf.append("'" if esc == "'" else "\\" + esc)
                j = k + 2
                continue
            j = n
            break
        j = k + 1
        break
    return '"' + "".join(buf).replace("\n", "\\n") + '"', j


def repair_json(s: str) -> str:
    """Rewrite common JSON damage: single quotes, Python literals, trailing commas, missing or
    extra closing brackets, an unterminated string. Returns a string for ``json.loads``.
    Linear in the input: plain runs are copied in bulk between special characters."""
    out: list[str] = []
    stack: list[str] = []
    i, n = 0, len(s)
    while i < n:
        m = _REPAIR_SPECIAL.search(s, i)
        if m is None:
            out.append(s[i:])
            break
        if m.start() > i:
            out.append(s[i:m.start()])
        i, c = m.start(), m.group()
        if c in "\"'":
            text, i = _copy_string(s, i)
            out.append(text)
            continue
        if c not in "{}[]":  # a word: map Python literals
            j = _WORD.match(s, i).end()
            out.append(_PY_WORDS.get(s[i:j], s[i:j]))
            i = j
            continue
        if c in "{[":
            stack.append("}" if c == "{" else "]")
            out.append(c)
            i += 1
            continue
        _drop_trailing_comma(out)
        if not stack:  # an extra closing bracket: the value is complete
            break
        while len(stack) > 1 and stack[-1] != c:  # close what was left open inside
            out.append(stack.pop())
        out.append(stack.pop())  # the expected closer, even if a wrong one was written
        i += 1
        if not stack:
            break
    text = "".join(out).rstrip().rstrip(",")
    return text + "".join(reversed(stack))


_LITERAL_EVAL_MAX = 100_000  # chars; ast.literal_eval is slow and deeply recursive beyond this


def _loads(s: str) -> tuple[Any, bool]:
    """Parse ``s`` as JSON, repairing if needed. Returns (value, repaired); raises ValueError
    (never RecursionError or MemoryError: deep or huge input is simply unparseable)."""
    s = _strip_fences(s)
    try:
        return json.loads(s), False
    except (ValueError, RecursionError):
        pass
    try:
        return json.loads(repair_json(s)), True
    except (ValueError, RecursionError):
        pass
    if len(s) <= _LITERAL_EVAL_MAX:
        try:  # last resort: a Python literal (never evaluates code)
            value = ast.literal_eval(s)
            json.dumps(value)
            return value, True
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    raise ValueError("not JSON, even after repair")


def _last_fence(body: str) -> str | None:
    """Content of the last ```` ``` ```` fence (``json`` tag dropped; unclosed: to the end)."""
    opens = [m.end() for m in re.finditer("```", body)]
    if not opens:
        return None
    # fences pair up: 1st opens, 2nd closes, ...; the last opening one is at an even position
    start = opens[(len(opens) - 1) // 2 * 2]
    end = body.find("```", start)
    content = body[start:] if end < 0 else body[start:end]
    if content.startswith("json"):
        content = content[4:]
    return content.strip()


def extract_json_object(text: str, marker: str | None = None) -> tuple[dict | None, dict]:
    """Find and parse the JSON answer of a completion.

    With ``marker`` in the text, the answer is the outermost object after the last marker and
    nothing else (a truncated one is repaired or unparseable, never replaced by an inner object
    or by text before the marker). Without it: the last fenced ```` ```json ```` block, else the
    last top-level ``{...}`` (see ``_outermost_last_object``). Text inside ``<think>`` is ignored.
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
    if marker and marker in body:
        candidates.append(("marker", _first_object(body.rsplit(marker, 1)[1])))
    else:
        fence = _last_fence(body)
        if fence is not None:
            candidates.append(("fence", _first_object(fence)))
        candidates.append(("brace", _outermost_last_object(body)))
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
