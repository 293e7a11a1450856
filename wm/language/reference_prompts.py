"""The reference's text prompts, reproduced exactly (``prompt_style="reference"`` of the two
language worlds), so that the paper's released text world models see the prompts they were
trained on.

ByteSized32 follows ``lang_wm/data_process/text_game/process_jsonl.py`` (test prompts) and
``process_jsonl_train.py`` (train prompts; the same text) of thuml/RLVR-World, run as its README
says inside cognitiveailab/GPT-simulator, whose ``scripts/evaluate.py`` supplies
``make_game_state`` / ``make_game_state_partial``. The settings are the ones in those files:
``data_type="full"``, ``partial=True``, ``no_rule=False``; the chat message is the prompt plus
``"\nPlease make sure to clearly indicate your answer by starting with 'The final answer is:'.\n"``.
WMA follows ``lang_wm/webagent/agent/prompts/jsons/state_prediction/rlvr_world_model_prompt.json``
(the world model's template, empty system message, no few-shot turns), filled with the input
block of the WMA training data (``PREVIOUS ACTION`` is the Python list of previous actions, as in
``sample_formatted_description_with_tao_dataset.json``).

Facts of the reference reproduced on purpose (they are what the released models saw):

- States are written with Python's ``str()`` of the reference's dict, not JSON: single quotes,
  ``True``/``False``/``None``; the state is ``{'game_state': [objects..., score]}`` with the score
  dict appended as the last entry.
- The in-context examples are the dishwasher game's ``examples.json["full"]`` records: the action
  example, then the tick example when the example game has a state changed by time only (it
  does). Their expected responses are ``make_game_state_partial`` of the two states: changed
  objects in the current state's order (a property compared only over the current object's keys,
  ``contains`` compared sorted), removed uuids, then added objects, and the score ``{}`` unless a
  key changed. Upstream writes an *added* object as the whole ``{uuid: object}`` dict of the next
  state (a bug); the examples add nothing, so this never shows in a prompt, but
  ``reference_state_difference`` reproduces it (``upstream_added_bug=True``).
- The object rules are cut as upstream cuts them: the text is split on ``==========`` and the
  part after the last separator is dropped.
- The reference's prompt misses a newline after "...given in the instructions." and has spaces
  before some newlines; kept.

Rules: the game rules (``rules/human_written_rules/{object,action,score}_rules.json`` of
GPT-simulator) are not in ``../shared/data``. ``load_reference_rules(folder)`` reads them; without
them the prompt is the reference's ``no_rule=True`` variant (no rule sections), which is *not*
what the released models were trained on.

Answer: the reference SFT target is DeepSeek-R1's reasoning followed by its answer (data not
reproducible here); the only answer text the reference itself writes is the examples' "expected
response", the Python ``str()`` of the state difference (``wm.textworld.game_answer``:
``reference_state_difference``, ``format_target(style="reference")``). The WMA answer
(``New items: / Deleted items: / Updated items:``) is the same in both styles.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wm.textworld.game_answer import MARKER, reference_state, reference_state_difference

# ------------------------------------------------------------------------------- ByteSized32

BS32_INTRO = (
    "You are a simulator of a text game. Read the task description of a text game. Given the "
    "current game state in JSON, you need to decide the new game state after taking an action "
    "including the game score.\n"
    "You may need to create new objects when you predict the new game state. You should assign "
    "the uuid of new objects starting from the UUID base given in the instructions."
    "Your response should be in the JSON format. It should have three keys: 'modified', "
    "'removed', and 'score'. The 'modified' key stores a list of all the object states that are "
    "added or changed after taking the action. Keep it an empty list if no object is added or "
    "modified. The 'removed' key stores a list of uuids of the objects that are removed. Keep it "
    "an empty list if no object is removed. The 'score' key stores a JSON with three keys: "
    "'score', 'gameOver', and 'gameWon'. 'score' stores the current game score, 'gameOver' "
    "stores a bool value on whether the game is over, and 'gameWon' stores a bool value on "
    "whether the game is won. \n"
    "Note that while game states can be changed by actions, some game states may change over the "
    "time, which is described in the tick function of each object class. \n"
)
BS32_TWO_EXAMPLES = ("Here are two examples of both cases. Both examples are from the same "
                     "example game.\n")
BS32_FIRST_EXAMPLE = "In the first example, the game state is changed by an action:\n"
BS32_SECOND_EXAMPLE = (
    "In the second example from the same example game, the game state is changed over the time. "
    "Note that while in this example the game state is changed by time only, it is possible that "
    "a game state is changed by both an action and time.\n"
)
BS32_SUFFIX = f"\nPlease make sure to clearly indicate your answer by starting with '{MARKER}'.\n"
RULE_KINDS = ("object", "action", "score")
RULE_FILES = {kind: f"{kind}_rules.json" for kind in RULE_KINDS}
# (rule kind, heading in the example part, heading in the task part)
_RULE_HEADINGS = (
    ("object", "Here are the descriptions of all game objects properties in the example game:\n",
     "Here are the descriptions of all game objects properties:\n"),
    ("action", "Here are the descriptions of all game actions in the example game:\n",
     "Here are the descriptions of all game actions:\n"),
    ("score", "Here is a description of the score function of the example game:\n",
     "Here is a description of the game score function:\n"),
)


def object_rule_text(text: str) -> str:
    """Object rules as upstream uses them: split on ``==========``, the last part dropped."""
    return "".join(text.split("==========")[:-1])


def load_reference_rules(folder: str | Path) -> dict[str, dict[str, str]]:
    """``{"object"|"action"|"score": {game: text}}`` from GPT-simulator's
    ``rules/human_written_rules`` folder (object_rules.json, action_rules.json, score_rules.json).
    """
    folder = Path(folder)
    rules = {}
    for kind, name in RULE_FILES.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(
                f"ByteSized32 rules: {path} not found (rules_path must be GPT-simulator's "
                "rules/human_written_rules folder with object_rules.json, action_rules.json, "
                "score_rules.json)")
        with open(path) as fh:
            rules[kind] = json.load(fh)
    return rules


def reference_examples(examples: dict, dynamic_states: dict) -> tuple[dict, dict | None]:
    """``(action_example, tick_example | None)`` from examples.json and dynamic_states.json: the
    tick example is shown when the example game has a state changed by time only."""
    try:
        action, tick = examples["full"]["action"], examples["full"]["tick"]
    except (KeyError, TypeError):
        raise KeyError("examples.json: expected ['full']['action'] and ['full']['tick'] (the "
                       "upstream ByteSized32 examples file)") from None
    game = action.get("game")
    if game not in dynamic_states:
        raise KeyError(f"dynamic_states.json: no entry for the example game {game!r}")
    changes = dynamic_states[game]
    action_change = changes.get("action_change", ())
    time_only = [s for s in changes.get("time_change", ()) if s not in action_change]
    return action, (tick if time_only else None)


def _rules_of(rules: dict | None, game: str) -> dict[str, str] | None:
    if not rules:
        return None
    out = {}
    for kind in RULE_KINDS:
        table = rules.get(kind) or {}
        if game not in table:
            raise KeyError(f"ByteSized32 rules: {RULE_FILES[kind]} has no entry for game {game!r}")
        out[kind] = object_rule_text(table[game]) if kind == "object" else table[game]
    return out


def _rules_block(rules: dict[str, str] | None, example: bool) -> str:
    if rules is None:
        return ""
    return "".join((ex_head if example else head) + rules[kind].strip() + "\n"
                   for kind, ex_head, head in _RULE_HEADINGS)


def _example_block(example: dict) -> str:
    state = reference_state(example["current_state"], example["current_score_state"])
    target = reference_state(example["tick_state"], example["next_score_state"])
    return (f"Here is the game state:\n{state}\n\n"
            f"The current game UUID base is {example['current_state']['max_UUID']}\n"
            f"The action to take is: {example['tick_state']['lastAction']}\n"
            f"The expected response is:\n{reference_state_difference(state, target)}\n\n")


def bytesized32_reference_prompt(record: dict, action_example: dict,
                                 tick_example: dict | None = None,
                                 rules: dict | None = None) -> str:
    """The reference's user message for a ByteSized32 record ("full", state difference).

    ``action_example`` / ``tick_example``: see ``reference_examples``; ``rules``: from
    ``load_reference_rules`` (None: the ``no_rule=True`` variant, without rule sections).
    """
    for field in ("current_state", "tick_state", "current_score_state", "next_score_state"):
        if field not in record:
            raise KeyError(f"ByteSized32 record is missing field {field!r} (see docs/data.md, "
                           '"ByteSized32 and WebArena (text worlds)")')
    parts = [BS32_INTRO]
    if tick_example is not None:
        parts.append(BS32_TWO_EXAMPLES)
    parts.append(f"Example game task description:\n{action_example['current_state']['taskDesc']}\n")
    parts.append(_rules_block(_rules_of(rules, action_example.get("game")), example=True))
    if tick_example is not None:
        parts.append(BS32_FIRST_EXAMPLE)
    parts.append(_example_block(action_example))
    if tick_example is not None:
        parts += [BS32_SECOND_EXAMPLE, _example_block(tick_example)]
    current = record["current_state"]
    parts += [
        "Here is the game that you need to simulate:\n",
        f"Task Description:\n{current['taskDesc']}\n",
        _rules_block(_rules_of(rules, record.get("game")), example=False),
        f"Here is the game state:\n{reference_state(current, record['current_score_state'])}\n\n",
        f"The current game UUID base is {current['max_UUID']}\n",
        f"The action to take is:\n{record['tick_state']['lastAction']}\n",
        BS32_SUFFIX,
    ]
    return "".join(parts)


# ------------------------------------------------------------------------------------ WMA

WEB_INSTRUCTIONS = (
    'You are an intelligent agent that predict next state from given current action, with your '
    'own logical reasoning. You will be given web-based tasks.\n\n'
    "Here's the information you'll have:\n"
    "The user's objective: This is the task you're trying to complete.\n"
    "The current web page's accessibility tree: This is a simplified representation of the "
    'webpage, providing key information.\n'
    "The current web page's URL: This is the page you're currently navigating.\n"
    'The previous action: This is the action you just performed. It may be helpful to track your '
    'progress. \n'
    "The current action: This is the current action that you will perform to achieve the user's "
    "objective in the current web page's accessibility tree. \n\n"
    'The format of previous actions and current action can fall into several categories:\n'
    '\nPage Operation Actions:\n'
    '```click [id]```: This action clicks on an element with a specific id on the webpage.\n'
    '```type [id] [content]```: Use this to type the content into the field with id. By default, '
    'the "Enter" key is pressed after typing unless press_enter_after is set to 0, i.e., ```type '
    '[id] [content] [0]```.\n```hover [id]```: Hover over an element with id.\n'
    '```press [key_comb]```: Simulates the pressing of a key combination on the keyboard (e.g., '
    'Ctrl+v).\n```scroll [down]``` or ```scroll [up]```: Scroll the page up or down.\n'
    '\nTab Management Actions:\n```new_tab```: Open a new, empty browser tab.\n'
    "```tab_focus [tab_index]```: Switch the browser's focus to a specific tab using its index.\n"
    '```close_tab```: Close the currently active tab.\n\nURL Navigation Actions:\n'
    '```goto [url]```: Navigate to a specific URL.\n'
    '```go_back```: Navigate to the previously viewed page.\n'
    "```go_forward```: Navigate to the next page (if a previous 'go_back' action was performed)\n"
    '\nCompletion Action:\n'
    '```stop [answer]```: Issue this action when you believe the task is complete. If the '
    'objective is to find a text-based answer, provide the answer in the bracket\n'
    '\nTo be successful, it is very important to understand the effect of current action on the '
    'next state of the webpage. You need to verify whether the current action is successful to '
    'make an intended effect on the webpage.\n\n'
    'Follow the following rules for reasoning on next state prediction.\n'
    '1. Please generate your answer with your logical REASONING.\n'
    '2. You must generate a prediction DIRECTLY for the next state based on given generated '
    'action. \n'
    '3. Generate the state prediction in the correct format. Refer to the format instruction '
    'below for your reference.\nFormat Description:\n\n'
    'The output is divided into three sections:\nNew items:\nDeleted items:\n'
    'Updated items:\n\n'
    "Each section is separated by an empty line. If a section has no items, simply write 'None' "
    'after the section title.\n\nEach item entry must follow this structure:\n'
    "[ID] type 'content' [additional attributes]\n\nDetails:\n"
    '- [ID]: A numeric identifier enclosed in square brackets (e.g., [71]). This uniquely '
    'identifies the item.\n'
    '- type: A string representing the item type, such as generic, link, menu, gridcell, '
    'menubar, img, button, StaticText, heading, textbox, main, tablist, tab, tabpanel, table, '
    'row, columnheader, contentinfo, RootWebArea, etc.\n'
    "- 'content': A string enclosed in single quotes that shows the item's content (for example, "
    "'Sales', 'Dashboard'). This can be empty, shown as ''.\n"
    '- [additional attributes]: Optional key-value pairs that come after the content. They are '
    'formatted as `key: value` and separated by a space. Common attributes include:\n'
    '- required: False (or True)\n- orientation: vertical (or horizontal)\n'
    '- hasPopup: menu\n- expanded: True (or False)\n- selected: True (or False)\n'
    '- controls: <identifier>\n- focused: True, etc.\n\nExamples:\n\n1. Simple Item Example:\n'
    "[1022] gridcell '23' required: False\n- ID: 1022\n- Type: gridcell\n"
    "- Content: '23'\n- Attribute: required is False\n\n2. Item with Additional Attributes:\n"
    "[1122] tab 'The information in this tab has been changed. This tab contains invalid data. "
    "Please resolve this before saving. Loading... Bestsellers' expanded: True selected: True "
    'controls: grid_tab_ordered_products_content\n- ID: 1122\n- Type: tab\n'
    '-  Content : A detailed description inside single quotes.\n'
    '- Attributes: expanded is True, selected is True, controls is '
    'grid_tab_ordered_products_content\n\n3. Overall Response Example:\n'
    "\nNew items:\n[1273] StaticText 'Vortex Running Shoes'\n[1272] button 'Search'\n"
    '\nDeleted items:\nNone\n\nUpdated items:\n'
    "[1220] textbox '\\ue60c' focused: True required: False\n\n\n"
    "Now, let's start the task. Here's the task for you:\n"
)
WEB_TASK = ("URL: {url}\n OBJECTIVE: {objective}\n PREVIOUS ACTION: {previous_action}\n CURRENT "
            "OBSERVATION: {observation}\n CURRENT ACTION: {current_action}")
WEB_CLOSING = "\n \n Please give the result directly in the format of the next state prediction."
PREVIOUS_FORMS = ("list", "lines")


def previous_actions_text(previous: Any, form: str = "list") -> str:
    """``PREVIOUS ACTION`` as the WMA training data writes it (``"list"``: Python ``str()`` of the
    list, e.g. ``['None']``) or as the reference's agent fills it at inference (``"lines"``: one
    action per line, ``None`` when there is none)."""
    if form not in PREVIOUS_FORMS:
        raise ValueError(f"previous actions form {form!r}: use one of {PREVIOUS_FORMS}")
    if previous is None:
        previous = []
    elif isinstance(previous, str):
        previous = [previous]
    if form == "list":
        return str(list(previous))
    return "\n".join(str(a) for a in previous) if previous else "None"


def web_task_block(record: dict, observation: str | None = None,
                   previous_form: str = "list") -> str:
    """The ``URL: ... CURRENT ACTION: ...`` block (the ``input`` of the WMA training data)."""
    for field in ("objective", "url", "current_action", "observation"):
        if field not in record:
            raise KeyError(f"WebArena record is missing field {field!r} (see docs/data.md, "
                           '"ByteSized32 and WebArena (text worlds)")')
    values = {
        "url": record["url"], "objective": record["objective"],
        "previous_action": previous_actions_text(record.get("previous_actions"), previous_form),
        "observation": record["observation"] if observation is None else observation,
        "current_action": record["current_action"],
    }
    # one pass over the template: a value containing "{observation}" is never re-filled
    out, rest = [], WEB_TASK
    for key, value in values.items():
        head, _, rest = rest.partition("{" + key + "}")
        out += [head, str(value)]
    return "".join(out) + rest


def web_reference_prompt(record: dict, observation: str | None = None,
                         previous_form: str = "list") -> str:
    """The reference world model's user message for a WMA record (rlvr_world_model_prompt.json)."""
    return WEB_INSTRUCTIONS + web_task_block(record, observation, previous_form) + WEB_CLOSING
