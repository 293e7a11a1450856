"""Text-game rewards: answer extraction, merge, per-item comparison, rewards on real records."""
import copy
import gzip
import json
import math
from functools import lru_cache

import pytest

from wm.rewards.text_game import (
    binary_reward,
    max_task_specific_reward,
    paper_task_specific_reward,
    task_specific_reward,
    text_game_rewards,
)
from wm.textworld.game_answer import MARKER, extract_answer, format_target
from wm.textworld.lenient_json import extract_json_object
from wm.textworld.game_state import compare_states, merge_prediction, true_transition


@lru_cache(maxsize=1)
def _records(path: str) -> tuple:
    with gzip.open(path, "rt") as fh:
        return tuple(json.loads(line) for line in fh)


@pytest.fixture
def records(shared_data):
    return _records(str(shared_data / "bytesized32" / "test.jsonl.gz"))


def _answer(obj) -> str:
    return f"{MARKER} {json.dumps(obj)}"


# ----------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ('The final answer is: {"a": 1}', {"a": 1}),
        ('x {"a": 0} The final answer is: {"a": 1} then {"a": 2}', {"a": 1}),
        ('The final answer is: {"a": 0}\nThe final answer is: {"a": 1}', {"a": 1}),
        ('The final answer is: ```json\n{"a": [1, 2,],}\n```', {"a": [1, 2]}),
        ("The final answer is: {'a': True, 'b': None, 'c': 'it\\'s'}",
         {"a": True, "b": None, "c": "it's"}),
        ('The final answer is: {"a": {"b": [1, 2', {"a": {"b": [1, 2]}}),
        ('The final answer is: {"a": {"b": 1}}}}', {"a": {"b": 1}}),
        ('Here:\n```json\n{"a": 1}\n```\nand prose', {"a": 1}),
        ('first {"a": 0} and finally {"a": 1}.', {"a": 1}),
        ('<think>The final answer is: {"a": 0}</think>The final answer is: {"a": 1}', {"a": 1}),
        ('reasoning without an opening tag {"a": 0}</think>{"a": 1}', {"a": 1}),
    ],
)
def test_extract_answer(text, expected):
    # the lenient extraction the answer parser builds on (any object; the answer-key check is
    # tested below)
    obj, info = extract_json_object(text, MARKER)
    assert info["parsed"] and obj == expected


@pytest.mark.parametrize(
    "text",
    ["", "no json here", "<think>never closed {\"a\": 1}", '</think>', "The final answer is: [1, 2]",
     "The final answer is: {modified: ]", None],
)
def test_extract_answer_unparseable_never_raises(text):
    obj, info = extract_json_object(text, MARKER)
    assert obj is None and info["parsed"] is False and info["error"]


def test_think_text_is_not_scored_even_if_it_is_the_only_json():
    obj, info = extract_json_object('<think>{"a": 1}</think> I am done.', MARKER)
    assert obj is None and not info["parsed"]


# ----------------------------------------------------------------------------- merge / compare


def _state():
    return {"objects": [
        {"name": "lamp", "uuid": 1, "type": "Lamp", "properties": {"on": False, "w": 1}, "contains": []},
        {"name": "box", "uuid": 2, "type": "Box", "properties": {"open": False}, "contains": ["lamp"]},
        {"name": "key", "uuid": 3, "type": "Key", "properties": {}, "contains": []},
    ]}


def _by_uuid(objs):
    return {o["uuid"]: o for o in objs}


def test_merge_prediction_applies_modified_removed_score_and_ignores_junk():
    state = _state()
    new_lamp = {**state["objects"][0], "properties": {"on": True, "w": 1}}
    pred = {"modified": [new_lamp, "junk", {"no_uuid": 1}], "removed": ["3", [1]],
            "score": {"score": 1}}
    objects, score = merge_prediction(state, pred)
    assert sorted(objects) == [1, 2]
    assert objects[1]["properties"]["on"] is True
    assert score == {"score": 1}
    assert state["objects"][0]["properties"]["on"] is False  # input untouched
    assert merge_prediction(state, {"modified": "x", "removed": 5, "score": 3}) == (
        _by_uuid(state["objects"]), {})


def test_compare_states_hand_computed():
    cur = _by_uuid(_state()["objects"])
    true = copy.deepcopy(cur)
    true[1]["properties"]["on"] = True          # changed item 1
    true[2]["contains"] = []                    # changed item 2
    del true[3]                                 # removed object: its 'contains' item changed
    true_score = {"score": 1, "gameOver": False, "gameWon": False}
    # prediction: gets the lamp right, forgets the box change, keeps the key; score 2/3 right
    pred = copy.deepcopy(cur)
    pred[1]["properties"]["on"] = True
    r = compare_states(pred, true, {"score": 1, "gameOver": False, "gameWon": 0}, true_score, cur)
    # items: union = lamp.on, lamp.w, lamp.contains, box.open, box.contains, key.contains = 6
    # right: lamp.on, lamp.w, lamp.contains, box.open = 4
    assert r["n_items"] == 6 and r["item_acc"] == pytest.approx(4 / 6)
    assert r["n_changed"] == 3 and r["changed_acc"] == pytest.approx(1 / 3)
    assert r["score_acc"] == pytest.approx(2 / 3)  # gameWon: 0 is not False
    assert r["acc_all"] == pytest.approx(6 / 9)
    assert r["exact"] is False
    same = compare_states(true, true, true_score, true_score, cur)
    assert same["exact"] and same["item_acc"] == 1 and same["changed_acc"] == 1
    nothing = compare_states(cur, cur, true_score, true_score, cur)
    assert nothing["changed_acc"] is None and nothing["exact"]


def test_contains_is_a_multiset_and_values_are_type_strict():
    cur = _by_uuid(_state()["objects"])
    true = copy.deepcopy(cur)
    true[2]["contains"] = ["a", "b"]
    pred = copy.deepcopy(true)
    pred[2]["contains"] = ["b", "a"]
    s = {"score": 0, "gameOver": False, "gameWon": False}
    assert compare_states(pred, true, s, s, cur)["exact"]
    pred[1]["properties"]["w"] = 1.0  # 1 == 1.0 is fine
    assert compare_states(pred, true, s, s, cur)["exact"]
    pred[1]["properties"]["on"] = 0   # 0 is not False
    assert not compare_states(pred, true, s, s, cur)["exact"]


def test_bad_record_names_the_missing_field():
    with pytest.raises(KeyError, match="tick_state"):
        binary_reward(_answer({}), {"current_state": _state()})


# ----------------------------------------------------------------------------- real records


@pytest.mark.real_data
def test_true_target_scores_maximum_on_every_real_record(records):
    assert len(records) == 2954
    n_changed = 0
    for r in records:
        target = format_target(r)
        assert target.startswith(MARKER)
        assert binary_reward(target, r) == 1.0
        best = max_task_specific_reward(r)
        assert task_specific_reward(target, r) == pytest.approx(best)
        assert paper_task_specific_reward(target, r) == pytest.approx(best)
        n_changed += best > 1
    assert 0 < n_changed < len(records)


def _changed_records(records, n=40):
    return [r for r in records if true_transition(r)["modified"]][:n]


@pytest.mark.real_data
def test_one_wrong_property_lowers_the_score(records):
    rs = _changed_records(records)
    assert rs
    for r in rs:
        answer = true_transition(r)
        obj = answer["modified"][0]
        key = next(iter(obj["properties"]), None)
        if key is None:
            continue
        value = obj["properties"][key]
        obj["properties"][key] = "WRONG" if value != "WRONG" else "RIGHT"
        text = _answer(answer)
        assert binary_reward(text, r) == 0.0
        assert task_specific_reward(text, r) < max_task_specific_reward(r)
        assert 0 < task_specific_reward(text, r)


@pytest.mark.real_data
def test_dropping_a_modified_object_lowers_the_score(records):
    for r in _changed_records(records):
        answer = true_transition(r)
        answer["modified"] = answer["modified"][1:]
        text = _answer(answer)
        assert binary_reward(text, r) == 0.0
        assert task_specific_reward(text, r) < max_task_specific_reward(r) - 0.2


@pytest.mark.real_data
def test_wrong_score_lowers_only_the_score_terms(records):
    r = _changed_records(records, 1)[0]
    answer = true_transition(r)
    answer["score"]["gameOver"] = not answer["score"]["gameOver"]
    s = task_specific_reward(_answer(answer), r)
    assert binary_reward(_answer(answer), r) == 0
    assert s == pytest.approx(max_task_specific_reward(r) - 0.2 - 0.01 / 3)


@pytest.mark.real_data
def test_broken_json_scores_zero_and_is_flagged(records):
    rs = list(records[:20])
    good = [format_target(r) for r in rs]
    broken = [MARKER + " {modified: ]" for _ in rs]
    truncated = [t[: len(t) // 2] for t in good]  # repaired where possible, never raises
    out = text_game_rewards(good + broken + truncated, rs * 3)
    assert out["parse_fail"][:20].sum() == 0 and out["parse_fail"][20:40].sum() == 20
    assert (out["binary"][20:40] == 0).all() and (out["task_specific"][20:40] == 0).all()
    assert out["task_specific"].shape == (60,)
    assert (out["task_specific"][40:] <= out["task_specific"][:20] + 1e-6).all()
    for k in ("binary", "task_specific", "task_specific_paper", "item_acc", "score_acc", "exact"):
        assert not out[k].isnan().any(), k
    with pytest.raises(ValueError, match="records"):
        text_game_rewards(good, rs[:3])


@pytest.mark.real_data
def test_only_the_text_after_think_is_scored(records):
    r = _changed_records(records, 1)[0]
    wrong = true_transition(r)
    wrong["modified"] = []
    good, bad = format_target(r), _answer(wrong)
    best = max_task_specific_reward(r)
    assert task_specific_reward(f"<think>{bad}</think>{good}", r) == pytest.approx(best)
    assert task_specific_reward(f"<think>{good}</think>{bad}", r) < best - 0.2
    assert binary_reward(f"{good}</think>{bad}", r) == 0.0
    assert binary_reward(f"<think>{good}", r) == 0.0
    out = text_game_rewards([f"<think>{good}"], [r])
    assert out["parse_fail"][0] == 1 and not math.isnan(out["changed_acc"][0])
