"""data=text_jsonl: a user's own JSON-lines text world (docs/data.md "Bring your own text world").

Loading and splitting the shipped example (examples/text_world/light_and_door.jsonl), errors
that name file:line and the field, the ByteSized32 rewards on its transitions, the prompts, the
configs, and the documented commands (check -> SFT -> GRPO -> eval.py) end to end at a tiny
budget with model=lm_tiny.
"""
from __future__ import annotations

import importlib.util
import json
import math
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from wm.data.episodes import DataError
from wm.data.text import TextStateDataModule
from wm.data.text_worlds.jsonl import JsonlTextWorld, main as check_file
from wm.rewards.text_game import max_task_specific_reward, text_game_rewards
from wm.textworld.game_answer import MARKER
from wm.textworld.object_state import object_answer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "text_world" / "light_and_door.jsonl"
GOOD = {"state": {"lamp": {"on": False}}, "action": "switch on the lamp",
        "next_state": {"lamp": {"on": True}}}


def write(path: Path, lines: list) -> Path:
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n"
                            for ln in lines))
    return path


def raw_lines() -> list[dict]:
    return [json.loads(ln) for ln in EXAMPLE.read_text().splitlines() if ln.strip()]


# ------------------------------------------------------------------------------ loading
def test_the_example_is_what_its_generator_writes():
    spec = importlib.util.spec_from_file_location("make_example",
                                                  EXAMPLE.with_name("make_light_and_door.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert EXAMPLE.read_text() == "".join(json.dumps(t) + "\n" for t in gen.transitions())
    assert all(gen.step(t["state"], t["action"]) == t["next_state"] for t in raw_lines())


def test_the_documented_line_is_a_line_of_the_example():
    section = (ROOT / "docs" / "data.md").read_text().split("## Bring your own text world\n")[1]
    line = section.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert line in EXAMPLE.read_text().splitlines()


def test_the_example_loads_and_splits():
    train, test = JsonlTextWorld(str(EXAMPLE)).load(seed=0, max_train_records=None)
    raw = {r["id"]: r for r in raw_lines()}
    assert (len(train), len(test)) == (32, 8)                  # val_fraction 0.2 of 40
    assert sorted(r["id"] for r in train + test) == sorted(raw)
    world = JsonlTextWorld(str(EXAMPLE))
    for rec in train + test:
        line = raw[rec["id"]]
        assert rec["action"] == line["action"] and rec["where"].startswith(f"{EXAMPLE}:")
        assert [o["uuid"] for o in rec["current_state"]["objects"]] == list(line["state"])
        assert world.changed(rec) == (line["state"] != line["next_state"])
    assert 0 < sum(map(world.changed, train + test)) < 40
    # the split is drawn by split_seed, not by the run's seed
    again, _ = JsonlTextWorld(str(EXAMPLE)).load(seed=5, max_train_records=None)
    assert [r["id"] for r in again] == [r["id"] for r in train]
    other, _ = JsonlTextWorld(str(EXAMPLE), split_seed=1).load(0, None)
    assert {r["id"] for r in other} != {r["id"] for r in train}


def test_a_split_field_decides_the_split(tmp_path):
    lines = [{**GOOD, "id": i, "split": "test" if i % 3 == 0 else "train"} for i in range(6)]
    train, test = JsonlTextWorld(str(write(tmp_path / "s.jsonl", lines))).load(0, None)
    assert [r["id"] for r in test] == [0, 3] and [r["id"] for r in train] == [1, 2, 4, 5]


# ------------------------------------------------------------------------------- errors
STATE_2 = {"lamp": {"on": True}}
BAD_LINES = [
    ("{not json", r"bad.jsonl:2: not valid JSON"),
    ("[1, 2]", r"bad.jsonl:2: expected a JSON object .* got list"),
    ({"state": {}, "action": "a"}, r"bad.jsonl:2: missing field\(s\) \['next_state'\]"),
    ({**GOOD, "nextstate": {}}, r"bad.jsonl:2: unknown field\(s\) \['nextstate'\]"),
    ({**GOOD, "state": [STATE_2]}, r"bad.jsonl:2: field 'state' must be a JSON object"),
    ({**GOOD, "next_state": {"lamp": "on"}},
     r"bad.jsonl:2: field 'next_state.lamp' must be a JSON object of properties"),
    ({**GOOD, "action": " "}, r"bad.jsonl:2: field 'action' must be a non-empty string"),
    ({**GOOD, "split": "dev"}, r"bad.jsonl:2: field 'split' is 'dev'"),
    ({**GOOD, "id": [1]}, r"bad.jsonl:2: field 'id' must be a string or an integer"),
    ({**GOOD, "state": {"1": {}, "01": {}}}, r"bad.jsonl:2: field 'state': object names .*uuid"),
    ({**GOOD, "id": "a"}, r"bad.jsonl:2: field 'id' 'a' is also on line 1"),
    ({**GOOD, "split": "test"}, r"bad.jsonl:1: no field 'split', but .*bad.jsonl:2 has one"),
]


@pytest.mark.parametrize("line, message", BAD_LINES)
def test_a_bad_line_names_the_file_the_line_and_the_field(tmp_path, line, message):
    path = write(tmp_path / "bad.jsonl", [{**GOOD, "id": "a"}, line])
    with pytest.raises(DataError, match=message):
        JsonlTextWorld(str(path)).load(0, None)


def test_file_level_errors(tmp_path):
    with pytest.raises(DataError, match=r"data.path=.*nope.jsonl: no such file"):
        JsonlTextWorld(str(tmp_path / "nope.jsonl")).load(0, None)
    with pytest.raises(DataError, match="holds no transitions"):
        JsonlTextWorld(str(write(tmp_path / "empty.jsonl", ["", " "]))).load(0, None)
    with pytest.raises(DataError, match="one transition cannot be split"):
        JsonlTextWorld(str(write(tmp_path / "one.jsonl", [GOOD]))).load(0, None)
    with pytest.raises(DataError, match='no line has "split": "test"'):
        JsonlTextWorld(str(write(tmp_path / "t.jsonl", [{**GOOD, "split": "train"}] * 2))
                       ).load(0, None)
    with pytest.raises(ValueError, match=r"data.datamodule.world.val_fraction=1.0"):
        JsonlTextWorld(str(EXAMPLE), val_fraction=1.0)
    with pytest.raises(ValueError, match="data.path"):
        TextStateDataModule("text_jsonl")


def test_errors_are_one_line_on_the_command_line(tmp_path):
    from wm.cli.config_check import one_line_errors

    path = write(tmp_path / "bad.jsonl", [GOOD, {**GOOD, "action": 3}])
    dm = TextStateDataModule(JsonlTextWorld(str(path)))
    with pytest.raises(SystemExit) as err, one_line_errors():
        dm.setup()
    assert "\n" not in str(err.value.code) and "bad.jsonl:2: field 'action'" in str(err.value.code)
    with pytest.raises(SystemExit, match=r"bad.jsonl:2: field 'action'"):
        check_file([str(path)])


# ------------------------------------------------------------------------------ rewards
def example_records() -> list[dict]:
    train, test = JsonlTextWorld(str(EXAMPLE)).load(0, None)
    return train + test


def wrong_answer(record: dict) -> str:
    """The right answer with one item wrong: a changed object's property value, a removal
    forgotten, or (nothing changed) an object changed that did not."""
    answer = object_answer(record)
    if answer["modified"]:
        obj = answer["modified"][0]
        obj["properties"] = {k: "wrong" for k in obj["properties"]} or {"extra": 1}
    elif answer["removed"]:
        answer["removed"] = []
    else:
        obj = record["current_state"]["objects"][0]
        answer["modified"] = [{"uuid": obj["uuid"], "properties": {"extra": 1}}]
    return f"{MARKER} {json.dumps(answer)}"


def test_rewards_on_the_example():
    records = example_records()
    world = JsonlTextWorld(str(EXAMPLE))
    right = text_game_rewards([world.target(r) for r in records], records)
    assert right["binary"].tolist() == [1.0] * len(records)
    assert right["parse_fail"].sum() == 0 and right["item_acc"].min() == 1.0
    best = [max_task_specific_reward(r) for r in records]
    assert right["task_specific"].tolist() == pytest.approx(best)
    for k, rec in enumerate(records):     # changed_acc is defined exactly where the line changes
        assert math.isnan(right["changed_acc"][k]) != world.changed(rec)

    wrong = text_game_rewards([wrong_answer(r) for r in records], records)
    assert wrong["binary"].tolist() == [0.0] * len(records)
    assert (wrong["task_specific"] < right["task_specific"]).all()
    assert wrong["parse_fail"].sum() == 0

    junk = text_game_rewards(["no answer here", f"{MARKER} [1, 2]"], records[:2])
    assert junk["task_specific"].tolist() == [0.0, 0.0] and junk["binary"].tolist() == [0.0, 0.0]
    assert junk["parse_fail"].tolist() == [1.0, 1.0]

    # the world has no score: "score": {} is still right, a made-up score is not
    target = world.target(records[0])[:-1]
    assert text_game_rewards([target + ', "score": {}}'], records[:1])["binary"].item() == 1.0
    made_up = target + ', "score": {"score": 1}}'
    assert text_game_rewards([made_up], records[:1])["binary"].item() == 0.0


# ------------------------------------------------------------------------------ prompts
def test_prompts_show_the_state_and_action_and_drop_the_example_first():
    world = JsonlTextWorld(str(EXAMPLE), description="A hall with a lamp and a door.")
    train, test = world.load(0, None)
    example = next(r for r in train if world.changed(r))
    full, short = list(world.prompt_candidates(test[0], True, bool))
    assert "About this world:\nA hall with a lamp and a door." in full
    assert "Here is an example." in full and "Here is an example." not in short
    assert world.target(example) in full and world.target(test[0]) not in short
    state = json.dumps(test[0]["current_state"]["objects"])
    for prompt in (full, short):
        assert f"{state}\nThe action to take is:\n{test[0]['action']}" in prompt
    assert len(list(world.prompt_candidates(test[0], False, bool))) == 1
    own = list(world.prompt_candidates(example, True, bool))    # never its own answer
    assert len(own) == 1 and "Here is an example." not in own[0]
    plain = JsonlTextWorld(str(EXAMPLE), in_context_example=False)
    plain.load(0, None)
    assert list(plain.prompt_candidates(test[0], True, bool)) == [short.replace(
        "About this world:\nA hall with a lamp and a door.\n\n", "")]


def test_the_datamodule_shortens_over_long_prompts():
    from wm.language.tiny import train_bpe_tokenizer

    world = JsonlTextWorld(str(EXAMPLE))
    dm = TextStateDataModule(world, batch_size=4)
    _, test = world.load(0, None)
    tok = train_bpe_tokenizer([EXAMPLE.read_text()], vocab_size=300)
    longest_short = max(len(tok(list(world.prompt_candidates(r, True, bool))[-1]).input_ids)
                        for r in test)
    dm.connect(tok, max_prompt_tokens=longest_short, max_response_tokens=128)
    dm.setup()
    assert dm.stats["val"]["kept"] == 8 and dm.stats["val"]["shortened"] == 8
    batch = next(iter(dm.val_dataloader()))
    assert batch["changed"].tolist() == [world.changed(r) for r in batch["record"]]


# ------------------------------------------------------------------------------ configs
def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


@pytest.mark.parametrize("stage", ["mle", "grpo"])
def test_the_config_composes_and_builds(stage, monkeypatch):
    monkeypatch.chdir(ROOT)                       # data.path defaults to the example, from here
    cfg = compose_cfg("train", [f"stage={stage}", "data=text_jsonl"])
    assert cfg.model.name == "lm_deepseek_1p5b" and cfg.data.task.max_response_tokens == 1024
    assert cfg.data.task.reward == "wm.rewards.text_game.text_game_rewards"
    if stage == "grpo":
        assert cfg.stage.module.group_size == cfg.data.grpo_group_size == 5
    dm = instantiate(cfg.data.datamodule, _convert_="all")
    assert isinstance(dm.world, JsonlTextWorld) and dm.world.in_context_example
    dm.setup()
    assert dm.stats["train"]["kept"] == 32 and dm.stats["val"]["kept"] == 8
    tiny = compose_cfg("train", [f"stage={stage}", "data=text_jsonl", "model=lm_tiny"])
    assert list(tiny.model.policy.corpus_files) == [tiny.data.path]   # data_model preset
    assert tiny.data.task.max_response_tokens == 128
    assert not tiny.data.datamodule.world.in_context_example
    ev = compose_cfg("eval", ["ckpt=x.ckpt", "data=text_jsonl", "model=lm_tiny"])
    assert ev.data.datamodule.world == tiny.data.datamodule.world


# ------------------------------------------------------------------- documented commands
def documented_commands() -> list[list[str]]:
    """The commands of docs/data.md's "Bring your own text world" code block, as argv lists."""
    text = (ROOT / "docs" / "data.md").read_text()
    section = text.split("## Bring your own text world\n", 1)[1].split("\n## ", 1)[0]
    blocks, inside = [], None
    for line in section.splitlines():
        if line.startswith("```") and inside is None:      # a fence opens a block ...
            inside = []
        elif line.startswith("```"):                          # ... and the next one closes it
            blocks.append("\n".join(inside))
            inside = None
        elif inside is not None:
            inside.append(line)
    joined = "\n".join(b for b in blocks if "python " in b).replace("\\\n", " ")
    return [shlex.split(ln) for ln in joined.splitlines() if ln.startswith("python ")]


def test_the_documented_commands_run_end_to_end(tmp_path, monkeypatch, capsys):
    """check -> SFT -> GRPO -> eval.py, as docs/data.md writes them, at a tiny budget."""
    from wm.cli.evaluate import evaluate
    from wm.cli.fit import fit_stage, last_checkpoint

    monkeypatch.chdir(ROOT)
    commands = documented_commands()
    assert [c[1] for c in commands] == ["-m", "train.py", "train.py", "eval.py"], commands
    assert commands[0][2] == "wm.data.text_worlds.jsonl"
    check_file(commands[0][3:])
    assert "train: 32 transitions" in capsys.readouterr().out

    quiet = [f"paths.runs_dir={tmp_path}", "logger=none", "trainer.enable_progress_bar=false",
             "trainer.accelerator=cpu", "num_threads=1", "data.datamodule.batch_size=2",
             "stage.limit_val_batches=1", "data.task.max_response_tokens=48"]
    mle_args, grpo_args, eval_args = commands[1][2:], commands[2][2:], commands[3][2:]
    assert "model=lm_tiny" in mle_args and "stage=mle" in mle_args and "stage=grpo" in grpo_args
    mle = fit_stage(compose_cfg("train", [*mle_args, *quiet, "stage.max_steps=2",
                                          "stage.val_check_interval=2"]))
    assert mle["train/loss"] > 0 and "val/acc_all" in mle
    grpo = fit_stage(compose_cfg("train", [*grpo_args, *quiet, "stage.max_steps=1",
                                           "data.grpo_group_size=2"]))
    assert grpo["grpo/optimizer_steps"] == 1.0 and "grpo/reward/task_specific/mean" in grpo
    ckpt = next(a for a in eval_args if a.startswith("ckpt=")).split("=", 1)[1]
    assert ckpt.startswith("runs/")
    assert last_checkpoint(tmp_path / ckpt[len("runs/"):].split("/")[0] / "grpo").is_file()
    summary = evaluate(compose_cfg("eval", [
        *[a for a in eval_args if not a.startswith("ckpt=")], f"ckpt={tmp_path / ckpt[5:]}",
        f"out_dir={tmp_path / 'eval'}", "num_threads=1", "data.task.max_response_tokens=48"]))
    assert summary["num_predictions"] == 8
    for key in ("acc_all", "acc_changed", "task_specific", "binary", "parse_fail"):
        assert key in summary and summary[key] == summary[key], key
