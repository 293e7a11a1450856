"""Text prompts go through the model's chat template (as the reference does for its chat base
models): one user turn, generation prompt on, BOS written once by the template."""
import pytest
import torch

from wm.data.text import TextStateDataModule
from wm.language.chat import render_prompts, template_overhead
from wm.language.presets import tiny_causal_lm
from wm.tasks.text import TextStateTask


@pytest.fixture(scope="module")
def task():
    t = TextStateTask("wm.rewards.toy.toy_rewards", "key_acc", max_prompt_tokens=256,
                      max_response_tokens=48)
    t.build_policy(tiny_causal_lm)
    return t


def test_prompts_are_rendered_through_the_template(task):
    tok = task.tokenizer
    assert tok.chat_template, "the offline rig carries a chat template"
    batch = {"prompt": ["State: {\"lamp\": \"on\"}\nAction: look\n", "hi"],
             "changed": torch.tensor([False, True])}
    prompts = task.prompts(batch)
    real = prompts.ids[0][prompts.mask[0]].tolist()
    assert tok.decode(real) == ("<|bos|><|user|>State: {\"lamp\": \"on\"}\nAction: look\n"
                                "<|assistant|>")
    assert real.count(tok.bos_token_id) == 1 and real[0] == tok.bos_token_id
    short = prompts.ids[1][prompts.mask[1]].tolist()
    assert tok.decode(short) == "<|bos|><|user|>hi<|assistant|>"


def test_template_can_be_switched_off_or_required(task):
    tok = task.tokenizer
    assert render_prompts(tok, ["x"], enabled=False) == ["x"]
    saved = tok.chat_template
    try:
        tok.chat_template = None
        assert render_prompts(tok, ["x"]) == ["x"]
        with pytest.raises(ValueError, match="data.task.chat_template"):
            render_prompts(tok, ["x"], enabled=True)
    finally:
        tok.chat_template = saved


def test_datamodule_keeps_room_for_the_template(task):
    overhead = template_overhead(task.tokenizer)
    assert overhead == len(task.tokenizer("<|bos|><|user|><|assistant|>",
                                          add_special_tokens=False).input_ids) > 0
    dm = TextStateDataModule("toy", toy_train=8, toy_val=4)
    task.connect(dm)
    assert dm.max_prompt_tokens == 256 - overhead


def test_text_policy_loads_from_a_hugging_face_folder(task, tmp_path):
    """init_policy / eval.py ckpt= take a plain HF folder (the released text world models are
    DeepSeek-R1-Distill-Qwen folders with LoRA merged): same weights, same tokenizer."""
    from wm.language.presets import tiny_causal_lm

    model, tok = tiny_causal_lm()
    model.save_pretrained(tmp_path / "released")
    tok.save_pretrained(tmp_path / "released")
    other = TextStateTask("wm.rewards.toy.toy_rewards", "key_acc")
    policy = other.build_policy(None, init=str(tmp_path / "released"))
    for k, v in policy.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    assert other.tokenizer("State: x").input_ids == tok("State: x").input_ids
