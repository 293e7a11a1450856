"""Prompt templates for the language world models.

Paper: RLVR-World (NeurIPS 2025), Sec. 4.1 (text game, ByteSized32-State-Prediction) and
Sec. 4.2 (web pages, WMA/WebArena). The text-game prompt follows the structure of the
ByteSized32 simulator prompts ("full" setting, state differences): instructions, one in-context
example game, the target game's task (and rules when given), the current state JSON, the action,
and the answer format with the marker ``The final answer is:``. Wording is ours.

Departures:

- The object/action/score rules of the games are not part of the state records (upstream ships
  them in separate rule files). They are optional arguments here; without them the prompt says
  nothing about rules.
- The state is shown as its object list plus the score and UUID base (the free-text fields
  ``observation``/``look``/``inventory`` are not predicted, so they are not shown).
- Prompts are built from named *parts* (``text_game_prompt_parts``) so a DataModule can drop
  the in-context example first when a prompt is too long, rather than cutting text blindly.

These are our prompts (``prompt_style="ours"``). The reference's exact prompts, which the
paper's released text world models were trained on, are ``wm.language.reference_prompts``
(``prompt_style="reference"``).
"""
from __future__ import annotations

import json
from typing import Any

from wm.textworld.game_answer import MARKER, format_target

TEXT_GAME_INSTRUCTIONS = (
    "You are a simulator of a text game. Read the task description of a text game. Given the "
    "current game state in JSON, you need to decide the new game state after taking an action, "
    "including the game score.\n"
    "Note that while game states can be changed by actions, some game states may also change "
    "over time (the tick function of each object), so the new state may reflect both."
)

TEXT_GAME_FORMAT = (
    "Your answer must be a JSON object with three keys: 'modified', 'removed' and 'score'. "
    "'modified' is a list of the full states of all objects that are added or changed (an empty "
    "list if none). 'removed' is a list of the uuids of the objects that are removed (an empty "
    "list if none). 'score' is a JSON object with three keys: 'score' (the game score), "
    "'gameOver' (whether the game is over, a bool) and 'gameWon' (whether the game is won, a "
    f"bool). Clearly indicate your answer by starting it with '{MARKER}'."
)


def _dump(value: Any, indent: int | None) -> str:
    return json.dumps(value, indent=indent)


def example_record(examples: dict, kind: str = "action") -> dict:
    """Pick the in-context example record from the content of upstream ``examples.json``.

    ``examples`` may already be a record (it has ``current_state``); otherwise it must hold
    ``examples["full"][kind]`` (``kind``: "action" or "tick").
    """
    if "current_state" in examples:
        return examples
    try:
        return examples["full"][kind]
    except (KeyError, TypeError):
        raise KeyError(
            f"examples.json: expected a record or a dict with ['full'][{kind!r}] (the upstream "
            "ByteSized32 examples file)"
        ) from None


def _state_block(record: dict, indent: int | None) -> str:
    state = record["current_state"]
    return (
        "Here is the game state:\n"
        f"{_dump(state['objects'], indent)}\n"
        f"The current game score is: {_dump(record['current_score_state'], None)}\n"
        f"The current game UUID base is {state.get('max_UUID', '')}\n"
        f"The action to take is:\n{record['action_state']['lastAction']}"
    )


def _rules_block(rules: dict | None, prefix: str) -> str:
    if not rules:
        return ""
    lines = []
    for key, title in (
        ("object", "the game objects' properties"),
        ("action", "the game actions"),
        ("score", "the score function"),
    ):
        if rules.get(key):
            lines.append(f"Here are the descriptions of {title}{prefix}:\n{rules[key].strip()}")
    return "\n".join(lines)


def text_game_prompt_parts(
    record: dict,
    example_game: dict | None,
    rules: dict | None = None,
    example_rules: dict | None = None,
    indent: int | None = None,
) -> dict[str, str]:
    """The prompt as ordered named parts: instructions, format, example, task, state, question.

    ``record``/``example_game`` are ByteSized32 records (``example_game`` may be the content of
    examples.json, see ``example_record``); ``rules``/``example_rules`` optional dicts with
    "object"/"action"/"score" text. ``indent`` for the state JSON (None = compact).
    """
    for field in ("current_state", "action_state", "current_score_state"):
        if field not in record:
            raise KeyError(f"ByteSized32 record is missing field {field!r} (see docs/data.md, "
                           '"ByteSized32 and WebArena (text worlds)")')
    parts = {"instructions": TEXT_GAME_INSTRUCTIONS, "format": TEXT_GAME_FORMAT, "example": ""}
    if example_game is not None:
        ex = example_record(example_game)
        body = [
            "Here is an example from another game.",
            f"Example game task description:\n{ex['current_state']['taskDesc']}",
            _rules_block(example_rules, " in the example game"),
            _state_block(ex, indent),
            f"The expected response is:\n{format_target(ex)}",
        ]
        parts["example"] = "\n".join(b for b in body if b)
    task = [
        "Here is the game that you need to simulate:",
        f"Task Description:\n{record['current_state'].get('taskDesc', '')}",
        _rules_block(rules, ""),
    ]
    parts["task"] = "\n".join(t for t in task if t)
    parts["state"] = _state_block(record, indent)
    parts["question"] = f"What is the new game state? Remember to start your answer with '{MARKER}'."
    return parts


def join_parts(parts: dict[str, str]) -> str:
    return "\n\n".join(p for p in parts.values() if p) + "\n"


def text_game_prompt(
    record: dict,
    example_game: dict | None,
    rules: dict | None = None,
    example_rules: dict | None = None,
    indent: int | None = None,
) -> str:
    """Full text-game prompt (see ``text_game_prompt_parts``)."""
    return join_parts(text_game_prompt_parts(record, example_game, rules, example_rules, indent))


WEB_INSTRUCTIONS = (
    "You are a simulator of a web browser. Given a user's objective, the current web page "
    "(its URL and accessibility tree), the previous actions and the current action, predict how "
    "the accessibility tree changes after the current action."
)

WEB_FORMAT = (
    "Answer with exactly three sections, in this order:\n"
    "New items:\n<one accessibility-tree line per item that appears, or None>\n\n"
    "Deleted items:\n<one line per item that disappears, or None>\n\n"
    "Updated items:\n<one line per item whose text or state changes, or None>\n"
    "Write each item as it appears in the accessibility tree, e.g. [42] link 'Orders'."
)


def web_prompt_parts(record: dict, observation: str | None = None) -> dict[str, str]:
    """Ordered named parts of the web prompt; ``observation`` overrides the record's tree
    (a DataModule passes a shortened tree here)."""
    for field in ("objective", "url", "current_action", "observation"):
        if field not in record:
            raise KeyError(f"WebArena record is missing field {field!r} (see docs/data.md, "
                           '"ByteSized32 and WebArena (text worlds)")')
    previous = record.get("previous_actions") or ["None"]
    if isinstance(previous, str):
        previous = [previous]
    return {
        "instructions": WEB_INSTRUCTIONS,
        "format": WEB_FORMAT,
        "context": (
            f"OBJECTIVE: {record['objective']}\n"
            f"URL: {record['url']}\n"
            "PREVIOUS ACTIONS:\n" + "\n".join(str(a) for a in previous)
        ),
        "observation": "CURRENT OBSERVATION:\n"
        + (record["observation"] if observation is None else observation),
        "question": f"CURRENT ACTION: {record['current_action']}\n\n"
        "What changes on the page after the current action?",
    }


def web_prompt(record: dict, observation: str | None = None) -> str:
    """Full web prompt (see ``web_prompt_parts``)."""
    return join_parts(web_prompt_parts(record, observation))
