"""prompt_style="reference": the reference's exact prompts and answer form for ByteSized32 and WMA.

How the expected texts were checked (the reference: thuml/RLVR-World; its ByteSized32 pipeline
runs inside cognitiveailab/GPT-simulator @ 0d5a741):

- ByteSized32: ``lang_wm/data_process/text_game/process_jsonl.py`` was run *unchanged* (only
  ``no_rule`` and the output path set; tiktoken/pandas/datasets stubbed to capture the rows) in a
  GPT-simulator layout holding ``../shared/data/bytesized32`` (its ``test.jsonl`` is byte-equal to
  upstream ``data/test.zip``, its ``examples.json`` to upstream ``data/examples.json``), upstream
  ``scripts/evaluate.py``, ``experiments/games.json`` and ``rules/human_written_rules``. Our
  prompts equalled the reference's user message byte for byte for all 2,954 test records, with
  rules (``no_rule=False``, the released models' setting) and without (``no_rule=True``). The
  SHA-256 of three of those reference messages are pinned below (no rules: the rule files are not
  in ../shared/data; with rules: only when ``WM_BS32_RULES`` names the upstream rules folder), and
  the structure is checked fragment by fragment against the reference's string literals.
- WMA: the reference template is the ``template`` of ``lang_wm/webagent/agent/prompts/jsons/
  state_prediction/rlvr_world_model_prompt.json``; its SHA-256 is pinned below. The filled task
  block equals the ``input`` of ``../shared/data/wma/sample_formatted_description_with_tao_
  dataset.json`` (formatted by the WMA pipeline) for all 10 records, as text.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import pytest

from wm.language.reference_prompts import (
    BS32_SUFFIX, WEB_CLOSING, WEB_INSTRUCTIONS, WEB_TASK, bytesized32_reference_prompt,
    load_reference_rules, object_rule_text, previous_actions_text, reference_examples,
    web_reference_prompt, web_task_block)
from wm.textworld.game_answer import (
    MARKER, extract_answer, format_target, reference_state, reference_state_difference)
from wm.textworld.game_state import compare_states, merge_prediction, objects_by_uuid

CONF = Path(__file__).resolve().parents[1] / "conf"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# test.jsonl index -> (game, state_id, sha256 without rules, sha256 with rules) of the reference's
# user message (process_jsonl.py output, see the module docstring)
REFERENCE_BS32 = {
    0: ("lit-lightbulb", 250,  # nothing changes
        "69de2708f1ec76ca4b1480c80605e7868d6b25c536b4dc102c01a2f14b709321",
        "3025889adf4e1f9ccfa7a5359c475cb127ddb4a19db71486040ff52b7be95724"),
    60: ("volume-container", 2211,  # an object is added
         "2af4f177540f164eeb17f9383ad7a2429580d74be99836d9e2970bf8f1c78b67",
         "01f0103e997ea49358440392bc4a7e5ab63a9393bc91fe272841aef664afefab"),
    1882: ("make-campfire", 692,  # an object is removed and the score changes
           "fb816d39bbe0b63dabb34059cfd45acaba06a9e9f4f11137e199cbd7f2b4aff2",
           "e6e7a22afa312c1adde042faac4c1eb600faa8bbbce0adbef155bd1ff3384b1a"),
}
# sha256 of rlvr_world_model_prompt.json["template"] (placeholders unfilled)
REFERENCE_WEB_TEMPLATE = "a16c682696583afd2a301573fa11ee6480522739d478fb22822e07c0c57296e1"

# the dishwasher action example's expected response, as the reference prints it (hand-checked
# against examples.json["full"]["action"]: the plate moves from the agent into the cup)
ACTION_EXAMPLE_RESPONSE = (
    "{'modified': [{'name': 'agent (ID: 0)', 'uuid': 0, 'type': 'Agent', 'properties': "
    "{'isContainer': True, 'isMoveable': True, 'isOpenable': False, 'isOpen': True, "
    "'containerPrefix': 'in'}, 'contains': ['mug (ID: 6)', 'knife (ID: 7)']}, {'name': 'cup (ID: "
    "4)', 'uuid': 4, 'type': 'Dish', 'properties': {'isContainer': True, 'isMoveable': True, "
    "'isOpenable': False, 'isOpen': True, 'containerPrefix': 'in', 'dishType': 'cup', 'isDirty': "
    "True, 'foodMessName': 'peanut butter'}, 'contains': ['plate (ID: 5)']}], 'removed': [], "
    "'score': {}}")


@pytest.fixture(scope="module")
def bs32():
    from conftest import SHARED_DATA

    folder = SHARED_DATA / "bytesized32"
    if not folder.is_dir():
        pytest.skip(f"real data not found at {folder}")
    with open(folder / "examples.json") as fh:
        examples = json.load(fh)
    with open(folder / "dynamic_states.json") as fh:
        dynamic = json.load(fh)
    with gzip.open(folder / "test.jsonl.gz", "rt") as fh:
        records = [json.loads(line) for line in fh]
    return {"folder": folder, "examples": examples, "dynamic": dynamic, "records": records}


# ------------------------------------------------------------------------------- ByteSized32

@pytest.mark.real_data
def test_bytesized32_reference_prompt_equals_the_reference_run(bs32):
    action, tick = reference_examples(bs32["examples"], bs32["dynamic"])
    assert tick is not None and action["game"] == "dishwasher"  # both examples are shown
    for index, (game, state_id, sha_plain, _) in REFERENCE_BS32.items():
        record = bs32["records"][index]
        assert (record["game"], record["state_id"]) == (game, state_id)
        assert _sha(bytesized32_reference_prompt(record, action, tick)) == sha_plain, index


@pytest.mark.real_data
def test_bytesized32_reference_prompt_structure(bs32):
    """The reference's literals, in order, with its quirks (a missing newline, trailing spaces,
    Python-dict states with the score appended, ``The action to take is: `` on one line in the
    examples but on two lines for the task)."""
    action, tick = reference_examples(bs32["examples"], bs32["dynamic"])
    record = bs32["records"][0]
    prompt = bytesized32_reference_prompt(record, action, tick)
    assert prompt.startswith(
        "You are a simulator of a text game. Read the task description of a text game. Given the "
        "current game state in JSON, you need to decide the new game state after taking an action "
        "including the game score.\nYou may need to create new objects when you predict the new "
        "game state. You should assign the uuid of new objects starting from the UUID base given "
        "in the instructions.Your response should be in the JSON format.")
    order = [
        "whether the game is won. \nNote that while game states can be changed by actions, some "
        "game states may change over the time, which is described in the tick function of each "
        "object class. \nHere are two examples of both cases. Both examples are from the same "
        "example game.\nExample game task description:\nYour task is to wash the dirty dishes.\n"
        "In the first example, the game state is changed by an action:\nHere is the game state:\n"
        "{'game_state': [{'name': 'kitchen (ID: 1)', 'uuid': 1, 'type': 'World',",
        "{'score': -1, 'gameOver': False, 'gameWon': False}]}\n\nThe current game UUID base is 12\n"
        "The action to take is: put plate (ID: 5) in dirty cup (ID: 4)\nThe expected response is:\n"
        + ACTION_EXAMPLE_RESPONSE + "\n\nIn the second example from the same example game, the "
        "game state is changed over the time.",
        "\nThe current game UUID base is 13\nThe action to take is: eat dishwasher (ID: 2) with "
        "dirty plate (ID: 5)\nThe expected response is:\n{'modified': [{'name': 'dishwasher (ID: "
        "2)'",
        "'removed': [12], 'score': {'score': 3, 'gameOver': True, 'gameWon': True}}\n\n"
        "Here is the game that you need to simulate:\nTask Description:\nYour task is to lit the "
        "light bulb.\nHere is the game state:\n{'game_state': [{'name': 'room (ID: 1)', 'uuid': 1,",
    ]
    pos = 0
    for fragment in order:
        found = prompt.find(fragment, pos)
        assert found >= 0, fragment[:80]
        pos = found + len(fragment)
    assert prompt.endswith(
        "{'score': 0, 'gameOver': False, 'gameWon': False}]}\n\nThe current game UUID base is 7\n"
        "The action to take is:\ntake yourself\n" + BS32_SUFFIX)
    assert BS32_SUFFIX == ("\nPlease make sure to clearly indicate your answer by starting with "
                           "'The final answer is:'.\n")
    assert "Here are the descriptions" not in prompt  # no rules given: the no_rule variant
    # with only the action example (an example game without time-only changes)
    one = bytesized32_reference_prompt(record, action, None)
    assert "two examples" not in one and "In the first example" not in one
    assert "Example game task description:\nYour task is to wash the dirty dishes.\nHere is the " \
           "game state:\n{'game_state'" in one


def test_bytesized32_rule_sections_and_object_rule_cut():
    """Rules go after each task description, objects/actions/score, stripped; the object rules
    lose the part after their last ``==========`` (upstream ``preprocess_obj_desc``)."""
    def state(uid, score):
        return {"objects": [{"name": f"o (ID: {uid})", "uuid": uid, "type": "T",
                             "properties": {"x": 1}, "contains": []}],
                "taskDesc": f"task {uid}", "max_UUID": uid + 1, "lastAction": "look"}
    example = {"game": "ex", "current_state": state(1, 0), "tick_state": state(1, 0),
               "current_score_state": {"score": 0, "gameOver": False, "gameWon": False},
               "next_score_state": {"score": 0, "gameOver": False, "gameWon": False}}
    record = {**example, "game": "g", "current_state": state(2, 0), "tick_state": state(2, 0)}
    rules = {"object": {"ex": " A\n==========\nB\n==========\nDROPPED", "g": "C==========D"},
             "action": {"ex": " act-ex \n", "g": "act-g"}, "score": {"ex": "sc-ex", "g": " sc-g "}}
    assert object_rule_text("A==========B==========C") == "AB"
    prompt = bytesized32_reference_prompt(record, example, None, rules)
    assert ("Example game task description:\ntask 1\n"
            "Here are the descriptions of all game objects properties in the example game:\n"
            "A\n\nB\n"
            "Here are the descriptions of all game actions in the example game:\nact-ex\n"
            "Here is a description of the score function of the example game:\nsc-ex\n"
            "Here is the game state:\n") in prompt
    assert ("Task Description:\ntask 2\n"
            "Here are the descriptions of all game objects properties:\nC\n"
            "Here are the descriptions of all game actions:\nact-g\n"
            "Here is a description of the game score function:\nsc-g\n"
            "Here is the game state:\n") in prompt
    assert "DROPPED" not in prompt and "D\n" not in prompt.split("task 2")[1].split("actions")[0]
    with pytest.raises(KeyError, match="score_rules.json has no entry for game 'g'"):
        bytesized32_reference_prompt(record, example, None, {**rules, "score": {"ex": "s"}})


@pytest.mark.real_data
def test_bytesized32_reference_prompt_with_the_upstream_rules(bs32):
    folder = os.environ.get("WM_BS32_RULES")
    if not folder:
        pytest.skip("set WM_BS32_RULES to GPT-simulator's rules/human_written_rules folder")
    rules = load_reference_rules(folder)
    action, tick = reference_examples(bs32["examples"], bs32["dynamic"])
    for index, (_, _, _, sha_rules) in REFERENCE_BS32.items():
        prompt = bytesized32_reference_prompt(bs32["records"][index], action, tick, rules)
        assert _sha(prompt) == sha_rules, index


def test_rules_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"object_rules\.json not found.*rules_path"):
        load_reference_rules(tmp_path)


# ----------------------------------------------------------------------------- the answer

@pytest.mark.real_data
def test_reference_answer_form(bs32):
    action = bs32["examples"]["full"]["action"]
    assert format_target(action, style="reference") == f"{MARKER} {ACTION_EXAMPLE_RESPONSE}"
    assert format_target(action) == format_target(action, style="ours")
    assert format_target(action).startswith(f'{MARKER} {{"modified": [{{"name": "agent (ID: 0)"')
    # "use match (ID: 3) on firewood (ID: 5)": the match is used up and the game is won
    removed = format_target(bs32["records"][1882], style="reference")
    assert removed.endswith("'removed': [3], 'score': {'score': 1, 'gameOver': True, "
                            "'gameWon': True}}")
    # "pour water in graduated cylinder (ID: 8) into cup (ID: 5)": water (ID: 10) is added,
    # written as the object itself ...
    record = bs32["records"][60]
    added = format_target(record, style="reference")
    assert "{'name': 'water (ID: 10)', 'uuid': 10," in added and "{10: {" not in added
    # ... where upstream's make_game_state_partial writes the whole {uuid: object} dict
    cur = reference_state(record["current_state"], record["current_score_state"])
    nxt = reference_state(record["tick_state"], record["next_score_state"])
    assert reference_state_difference(cur, nxt)["modified"][-1][10]["name"] == "water (ID: 10)"
    with pytest.raises(ValueError, match="style='json'"):
        format_target(action, style="json")


@pytest.mark.real_data
def test_reference_answers_read_back_exactly(bs32):
    """Our answer parser reads the Python-dict form; applied to the state it gives the true next
    state for every test record."""
    for record in bs32["records"]:
        obj, info = extract_answer(format_target(record, style="reference"))
        assert obj is not None, info
        objects, score = merge_prediction(record["current_state"], obj,
                                          record["current_score_state"])
        result = compare_states(objects, objects_by_uuid(record["tick_state"]), score,
                                record["next_score_state"],
                                objects_by_uuid(record["current_state"]))
        assert result["exact"], (record["game"], record["state_id"])


def test_reference_difference_quirks():
    """Upstream compares with Python equality over the current object's keys only."""
    def st(props, contains=(), score=0):
        return {"game_state": [{"uuid": 1, "properties": props, "contains": list(contains)},
                               {"score": score, "gameOver": False, "gameWon": False}]}
    same = {"modified": [], "removed": [], "score": {}}
    assert reference_state_difference(st({"a": 1}), st({"a": True})) == same
    assert reference_state_difference(st({"a": 1}), st({"a": 1, "b": 2})) == same
    assert reference_state_difference(st({}, ["x", "y"]), st({}, ["y", "x"])) == same
    changed = reference_state_difference(st({"a": 1}), st({"a": 2}, score=1))
    assert changed["modified"][0]["properties"] == {"a": 2} and changed["score"]["score"] == 1


# ------------------------------------------------------------------------------------ WMA

def test_web_reference_template_is_the_reference_file():
    template = WEB_INSTRUCTIONS + WEB_TASK + WEB_CLOSING
    assert _sha(template) == REFERENCE_WEB_TEMPLATE
    assert template.count("{") == template.count("}") == 5
    assert ("[1220] textbox '\\ue60c' focused: True required: False\n\n\nNow, let's start"
            in template)
    assert "track your progress. \nThe current action:" in template


@pytest.mark.real_data
def test_web_reference_prompt_matches_the_wma_formatted_records(shared_data):
    """The task block equals the WMA pipeline's ``input`` for all 10 records (same order)."""
    wma = shared_data / "wma"
    records = json.loads((wma / "sample_tao_annotated.json").read_text())
    formatted = json.loads((wma / "sample_formatted_description_with_tao_dataset.json").read_text())
    formatted = formatted["train"] + formatted["validation"]
    assert len(records) == len(formatted) == 10
    for record, row in zip(records, formatted):
        assert web_task_block(record) == row["input"]
        prompt = web_reference_prompt(record)
        assert prompt == WEB_INSTRUCTIONS + row["input"] + WEB_CLOSING
    hand = web_reference_prompt(records[2])  # hand-checked: task 1, step 1
    assert ("Here's the task for you:\nURL: http://ec2-3-23-128-184.us-east-2.compute.amazonaws."
            "com:7780/admin/admin/dashboard/\n OBJECTIVE: ") in hand
    assert "\n PREVIOUS ACTION: ['None', \"click [12] where [12] is link '\\\\ue60b SALES'\"]\n " \
           "CURRENT OBSERVATION: Tab 0 (current): " in hand
    assert hand.endswith("\n \n Please give the result directly in the format of the next state "
                         "prediction.")
    assert previous_actions_text(["None", "click [1]"], "lines") == "None\nclick [1]"
    assert previous_actions_text([], "lines") == "None"
    with pytest.raises(ValueError, match="form 'json'"):
        previous_actions_text([], "json")


# ------------------------------------------------------------------------- the DataModule

def _datamodule(overrides):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return instantiate(cfg.data.datamodule, _convert_="all")


@pytest.mark.real_data
def test_datamodule_reference_style_from_conf(bs32, shared_data):
    dm = _datamodule(["data=bytesized32", f"data.path={bs32['folder']}",
                      "data.datamodule.world.prompt_style=reference",
                      "data.datamodule.max_train_records=8", "data.datamodule.max_val_records=8"])
    dm.setup()
    action, tick = reference_examples(bs32["examples"], bs32["dynamic"])
    for item in dm.val_items + dm.train_items:
        assert item["prompt"] == bytesized32_reference_prompt(item["record"], action, tick)
        assert item["target"] == format_target(item["record"], style="reference")
    default = _datamodule(["data=bytesized32", f"data.path={bs32['folder']}",
                           "data.datamodule.max_train_records=2",
                           "data.datamodule.max_val_records=2"])
    default.setup()
    assert not default.val_items[0]["prompt"].startswith("You are a simulator of a text game. Read "
                                                         "the task description of a text game. "
                                                         "Given the current game state in JSON, "
                                                         "you need to decide the new game state "
                                                         "after taking an action including")
    web = _datamodule(["data=webarena",
                       f"data.path={shared_data / 'wma/sample_tao_annotated.json'}",
                       "data.datamodule.world.prompt_style=reference"])
    web.setup()
    for item in web.val_items + web.train_items:
        assert item["prompt"] == web_reference_prompt(item["record"])
        assert item["target"] == item["record"]["next_state_tao"].strip()


PROMPT_STYLE_ERROR = r"prompt_style='exact'.*data\.datamodule\.world\.prompt_style"


def test_prompt_style_errors(tmp_path):
    from wm.data.text_worlds.bytesized32 import ByteSized32World
    from wm.data.text_worlds.webarena import WebArenaWorld

    with pytest.raises(ValueError, match=PROMPT_STYLE_ERROR):
        ByteSized32World(str(tmp_path), prompt_style="exact")
    with pytest.raises(ValueError, match=PROMPT_STYLE_ERROR):
        WebArenaWorld(str(tmp_path / "x.json"), prompt_style="exact")
