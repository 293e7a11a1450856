"""Prompt templates: the text-game and web prompts carry everything the model needs."""
import gzip
import json

import pytest

from wm.language.prompts import (
    example_record,
    text_game_prompt,
    text_game_prompt_parts,
    web_prompt,
)
from wm.textworld.game_answer import MARKER, format_target


@pytest.fixture
def bs32(shared_data):
    folder = shared_data / "bytesized32"
    with gzip.open(folder / "test.jsonl.gz", "rt") as fh:
        record = json.loads(fh.readline())
    with open(folder / "examples.json") as fh:
        return record, json.load(fh)


@pytest.mark.real_data
def test_text_game_prompt_contents(bs32):
    record, examples = bs32
    prompt = text_game_prompt(record, examples)
    assert prompt.startswith("You are a simulator of a text game")
    assert record["action_state"]["lastAction"] in prompt
    assert json.dumps(record["current_state"]["objects"]) in prompt
    assert record["current_state"]["taskDesc"] in prompt
    ex = example_record(examples)
    assert ex["current_state"]["taskDesc"] in prompt  # the in-context example game
    assert format_target(ex) in prompt                 # ... with its expected answer
    assert format_target(record) not in prompt         # never the answer to the question
    assert MARKER in prompt and "'modified'" in prompt and "'removed'" in prompt
    assert prompt.index("dishwasher") < prompt.index("Here is the game that you need to simulate")


@pytest.mark.real_data
def test_text_game_prompt_without_example_and_with_rules(bs32):
    record, examples = bs32
    parts = text_game_prompt_parts(record, None, rules={"object": "Wires connect things."})
    assert parts["example"] == ""
    prompt = text_game_prompt(record, None, rules={"object": "Wires connect things."})
    assert "Wires connect things." in prompt and "dishwasher" not in prompt
    assert len(prompt) < len(text_game_prompt(record, examples))
    with pytest.raises(KeyError, match="action_state"):
        text_game_prompt({"current_state": {}}, None)
    with pytest.raises(KeyError, match="examples.json"):
        example_record({"full": {}})


@pytest.mark.real_data
def test_web_prompt_contents(shared_data):
    with open(shared_data / "wma" / "sample_tao_annotated.json") as fh:
        record = json.load(fh)[1]
    prompt = web_prompt(record)
    for text in (record["objective"], record["url"], record["current_action"],
                 record["observation"], "New items:", "Deleted items:", "Updated items:"):
        assert text in prompt
    for action in record["previous_actions"]:
        assert action in prompt
    assert record["next_state_tao"] not in prompt
    short = web_prompt(record, observation="[1] RootWebArea 'x'")
    assert record["observation"] not in short and "[1] RootWebArea 'x'" in short
    with pytest.raises(KeyError, match="objective"):
        web_prompt({"url": "u"})
