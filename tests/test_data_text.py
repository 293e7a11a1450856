"""TextStateDataModule: toy world, real ByteSized32 and WebArena records, over-long handling."""
import gzip
import json

import pytest
import torch

from wm.data.text import TextStateDataModule
from wm.data.text_worlds.bytesized32 import BS32_FIELDS, bytesized32_train
from wm.data.text_worlds.records import find_file, read_jsonl
from wm.language.tiny import train_bpe_tokenizer
from wm.rewards import toy, web
from wm.textworld import game_answer, game_state


def test_toy_items_batches_and_reward():
    dm = TextStateDataModule("toy", batch_size=8, toy_train=32, toy_val=16, seed=3)
    dm.setup()
    assert dm.stats["train"]["kept"] == 32 and dm.stats["val"]["kept"] == 16
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {"prompt", "target", "record", "changed"}
    assert batch["changed"].dtype == torch.bool and batch["changed"].shape == (8,)
    for prompt, target, record, changed in zip(*batch.values()):
        assert record["action"] in prompt and json.dumps(record["state"]) in prompt
        assert changed == (record["action"] != "look")
    out = toy.toy_rewards(batch["target"], batch["record"])
    assert out["binary"].tolist() == [1.0] * 8 and out["parse_fail"].sum() == 0
    wrong = [t.replace('"count": ', '"count": 1') for t in batch["target"]]
    assert toy.toy_rewards(wrong, batch["record"])["binary"].sum() < 8
    assert toy.toy_score("nonsense", batch["record"][0]) == {"key_acc": 0.0, "binary": 0.0, "parsed": False}
    again = TextStateDataModule("toy", toy_train=32, toy_val=16, seed=3)
    again.setup()
    assert [i["record"] for i in again.val_items] == [i["record"] for i in dm.val_items]


def test_bad_arguments_and_data_errors(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        TextStateDataModule("video")
    with pytest.raises(ValueError, match="data.path"):
        TextStateDataModule("bytesized32")
    with pytest.raises(FileNotFoundError, match="test.jsonl"):
        find_file(tmp_path, "test.jsonl")
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"game": "g"}\n')
    with pytest.raises(KeyError, match=r"x.jsonl:1.*state_id"):
        read_jsonl(bad, BS32_FIELDS)
    web_file = tmp_path / "web.json"
    web_file.write_text(json.dumps([{"objective": "o"}]))
    with pytest.raises(KeyError, match=r"web.json\[0\].*url"):
        TextStateDataModule("webarena", str(web_file)).setup()


@pytest.fixture
def bs32(shared_data):
    return shared_data / "bytesized32"


@pytest.mark.real_data
def test_bytesized32_counts_split_and_changed_labels(bs32):
    dm = TextStateDataModule("bytesized32", str(bs32), batch_size=2, max_train_records=300, seed=1)
    dm.setup()
    assert dm.stats["val"]["kept"] == 2954  # the paper's test set, no tokenizer: nothing dropped
    assert dm.stats["train"]["kept"] == 300
    test_pairs = {(i["record"]["game"], i["record"]["state_id"]) for i in dm.val_items}
    assert len(test_pairs) == 2954
    assert not test_pairs & {(i["record"]["game"], i["record"]["state_id"]) for i in dm.train_items}
    with open(bs32 / "dynamic_states.json") as fh:
        dynamic = json.load(fh)
    n_changed = 0
    for item in dm.val_items:
        rec = item["record"]
        expected = rec["state_id"] in dynamic[rec["game"]]["action_change"] + dynamic[rec["game"]]["time_change"]
        assert item["changed"] == expected
        # on this data the label agrees with the objects' diff
        truth = game_state.true_transition(rec)
        assert item["changed"] == bool(truth["modified"] or truth["removed"])
        n_changed += item["changed"]
    assert n_changed == 1136
    for item in dm.val_items[:50]:
        rec = item["record"]
        assert rec["action_state"]["lastAction"] in item["prompt"]
        assert json.dumps(rec["current_state"]["objects"]) in item["prompt"]
        assert item["target"] == game_answer.format_target(rec)
    batch = next(iter(dm.train_dataloader()))
    assert len(batch["prompt"]) == 2 and batch["changed"].shape == (2,)


@pytest.mark.real_data
@pytest.mark.slow
def test_bytesized32_full_train_split_excludes_test(bs32):
    test = read_jsonl(find_file(bs32, "test.jsonl"), BS32_FIELDS)
    pairs = {(r["game"], r["state_id"]) for r in test}
    train = bytesized32_train(find_file(bs32, "all_transitions.jsonl"), pairs, None, 0)
    with gzip.open(bs32 / "all_transitions.jsonl.gz", "rt") as fh:
        n_all = sum(1 for line in fh if line.strip())
    assert n_all == 76369
    assert not pairs & {(r["game"], r["state_id"]) for r in train}
    assert len(train) == 73575  # 2,794 test pairs are reproduced in all_transitions


@pytest.mark.real_data
def test_bytesized32_overlong_prompts_are_shortened_or_dropped_and_counted(bs32):
    dm = TextStateDataModule("bytesized32", str(bs32), max_train_records=40, max_val_records=60)
    dm.setup()
    tok = train_bpe_tokenizer([i["prompt"] for i in dm.val_items[:10]], vocab_size=400)
    lengths = sorted(len(tok(i["prompt"])["input_ids"]) for i in dm.val_items)
    limit = lengths[len(lengths) // 2]  # about half of the full prompts are too long
    dm.connect(tok, max_prompt_tokens=limit, max_response_tokens=10_000)
    dm.setup()
    s = dm.stats["val"]
    assert s["records"] == 60 and s["kept"] + s["dropped_overlong"] + s["dropped_long_target"] == 60
    assert s["shortened"] > 0
    example_task = "wash the dirty dishes"
    for item in dm.val_items:
        assert len(tok(item["prompt"], add_special_tokens=False)["input_ids"]) <= limit
        assert item["target"] == game_answer.format_target(item["record"])  # never truncated
    assert sum(example_task not in i["prompt"] for i in dm.val_items) == s["shortened"]

    skip = TextStateDataModule("bytesized32", str(bs32), max_train_records=40,
                               max_val_records=60, overlong="skip")
    skip.connect(tok, max_prompt_tokens=limit, max_response_tokens=10_000)
    skip.setup()
    assert skip.stats["val"]["shortened"] == 0
    assert skip.stats["val"]["dropped_overlong"] >= s["shortened"]

    tiny_target = TextStateDataModule("bytesized32", str(bs32), max_train_records=40, max_val_records=60)
    t_limit = sorted(len(tok(i["target"])["input_ids"]) for i in dm.val_items)[30]
    tiny_target.connect(tok, max_prompt_tokens=100_000,
                        max_response_tokens=t_limit + 1)  # the budget counts the EOS
    tiny_target.setup()
    assert tiny_target.stats["val"]["dropped_long_target"] > 0
    assert all(len(tok(i["target"])["input_ids"]) <= t_limit for i in tiny_target.val_items)
    with pytest.raises(ValueError, match="every record was dropped"):
        tiny_target.connect(tok, max_prompt_tokens=100_000, max_response_tokens=3)
        tiny_target.setup()


@pytest.mark.real_data
def test_webarena_split_targets_and_observation_cut(shared_data):
    path = shared_data / "wma" / "sample_tao_annotated.json"
    dm = TextStateDataModule("webarena", str(path), batch_size=4, val_fraction=0.2)
    dm.setup()
    assert dm.stats["train"]["kept"] == 8 and dm.stats["val"]["kept"] == 2
    for item in dm.train_items + dm.val_items:
        assert item["target"] == item["record"]["next_state_tao"].strip()
        assert web.item_f1(item["target"], item["record"]["next_state_tao"])["f1"] == 1.0
        assert item["record"]["current_action"] in item["prompt"]
    tok = train_bpe_tokenizer([i["prompt"] for i in dm.train_items], vocab_size=600)
    dm.connect(tok, max_prompt_tokens=1500, max_response_tokens=100_000)
    dm.setup()
    s = dm.stats["train"]
    assert s["shortened"] > 0 and s["kept"] + s["dropped_overlong"] == 8
    for item in dm.train_items:
        assert len(tok(item["prompt"])["input_ids"]) <= 1500
        assert item["record"]["current_action"] in item["prompt"]
        if item["record"]["observation"] not in item["prompt"]:
            assert "accessibility tree is cut" in item["prompt"]
