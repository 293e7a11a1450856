"""The prompt of a user's own object world (``wm.textworld.object_state``, ``data=text_jsonl``).

Follows the text-game prompt of ``wm.language.prompts`` (RLVR-World Sec. 4.1, ByteSized32
"full" setting with state differences): instructions, answer format, an optional description
of the world, an optional in-context example with its expected answer, the current state and
the action, then the question. Built from named parts (``join_parts``) so the DataModule can
drop the example first when a prompt is too long. Wording is ours.

The state is shown as the object list the answer is written in (``[{"uuid": <name>,
"properties": {...}}, ...]``, compact JSON), so the model copies objects in the answer's form.
Departure from the text-game prompt: no score, no UUID base (objects are named by the user).
"""
from __future__ import annotations

import json

from wm.language.prompts import join_parts
from wm.textworld.game_answer import MARKER
from wm.textworld.object_state import object_target

OBJECT_WORLD_INSTRUCTIONS = (
    "You are a simulator of a world made of objects. Each object has a name (its 'uuid') and "
    "properties. Given the current state of the world in JSON and an action, decide the new "
    "state after the action."
)

OBJECT_WORLD_FORMAT = (
    "Your answer must be a JSON object with two keys: 'modified' and 'removed'. 'modified' is a "
    "list of the full new states of all objects that are added or changed (an empty list if "
    "none). 'removed' is a list of the uuids of the objects that are removed (an empty list if "
    f"none). Clearly indicate your answer by starting it with '{MARKER}'."
)


def _state_block(record: dict) -> str:
    return (f"Here is the current state:\n{json.dumps(record['current_state']['objects'])}\n"
            f"The action to take is:\n{record['action']}")


def object_prompt_parts(record: dict, example: dict | None = None,
                        description: str | None = None) -> dict[str, str]:
    """Ordered named parts: instructions, format, description, example, state, question.

    ``record``/``example`` are records of ``wm.textworld.object_state.object_record``;
    ``description`` is free text about the world (``data.datamodule.world.description``).
    """
    parts = {"instructions": OBJECT_WORLD_INSTRUCTIONS, "format": OBJECT_WORLD_FORMAT,
             "description": f"About this world:\n{description.strip()}" if description else "",
             "example": ""}
    if example is not None:
        parts["example"] = ("Here is an example.\n" + _state_block(example)
                            + f"\nThe expected response is:\n{object_target(example)}")
    parts["state"] = _state_block(record)
    parts["question"] = f"What is the new state? Remember to start your answer with '{MARKER}'."
    return parts


def object_prompt(record: dict, example: dict | None = None,
                  description: str | None = None) -> str:
    """The full prompt (see ``object_prompt_parts``)."""
    return join_parts(object_prompt_parts(record, example, description))
