"""The Hugging Face export of a text policy loads, by the ordinary calls, into the policy that
was trained (issue #27): ``AutoPeftModelForCausalLM.from_pretrained(export/adapter)`` and
``AutoModelForCausalLM.from_pretrained(export/merged)``, after SFT with LoRA and after GRPO
with a fresh LoRA on top of the merged SFT adapter (whose base is no longer any named model).

No Lightning run: the SFT policy's LoRA weights are set at random (as training would move
them) and written as a stage checkpoint, which GRPO's ``build_policy`` reads like any other.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

from wm.language.presets import tiny_causal_lm
from wm.tasks.text import TextStateTask

LORA = {"r": 4, "alpha": 8, "dropout": 0.0}
TEXT = 'State: {"lamp": "on", "count": 3}\nAction: look\n'


def task() -> TextStateTask:
    return TextStateTask("wm.rewards.toy.toy_rewards", "key_acc", max_response_tokens=48)


def train_lora(policy, seed: int) -> None:
    """Stand-in for training: random LoRA weights (B = 0 at init would make the adapter a no-op)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def logits_of(model, tokenizer, text: str = TEXT) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits  # (1, T, V)


def stage_checkpoint(task_, policy, path: Path) -> Path:
    """What a Lightning stage checkpoint holds for the text policy (see wm/stages/checkpointing)."""
    state = {f"policy.{k}": v for k, v in policy.state_dict().items()}
    torch.save({"wm_policy": task_.policy_checkpoint(policy), "state_dict": state}, path)
    return path


def assert_loads_as(export: dict, expected: torch.Tensor, tokenizer) -> None:
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(export["merged"])
    torch.testing.assert_close(logits_of(merged, tokenizer), expected, rtol=0, atol=1e-5)
    adapter = AutoPeftModelForCausalLM.from_pretrained(export["adapter"])
    torch.testing.assert_close(logits_of(adapter, tokenizer), expected, rtol=0, atol=1e-5)
    # transformers' own adapter loading (eval.py ckpt=<export/adapter> goes this way)
    attached = AutoModelForCausalLM.from_pretrained(export["adapter"])
    torch.testing.assert_close(logits_of(attached, tokenizer), expected, rtol=0, atol=1e-5)


def pretrained_folder(path: Path) -> Path:
    """A tiny model saved as a Hugging Face folder: a named base, like a hub model."""
    model, tok = tiny_causal_lm()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("base", ["from_config", "pretrained_folder"])
def test_sft_then_grpo_exports_load_into_the_trained_policy(tmp_path, base):
    """The GRPO adapter was trained on the merged SFT model: loaded on the SFT run's base it
    would drop the SFT stage (the issue's 0.83 logit gap)."""
    from wm.language.model import load_causal_lm

    factory = functools.partial(tiny_causal_lm, lora=LORA) if base == "from_config" else \
        functools.partial(load_causal_lm, str(pretrained_folder(tmp_path / "pretrained")),
                          lora=LORA)
    sft_task = task()
    sft = sft_task.build_policy(factory)
    train_lora(sft, seed=1)
    tok = sft_task.tokenizer
    sft_logits = logits_of(sft, tok)
    assert_loads_as(sft_task.export(sft, tmp_path / "sft"), sft_logits, tok)
    ckpt = stage_checkpoint(sft_task, sft, tmp_path / "sft.ckpt")

    grpo_task = task()
    grpo = grpo_task.build_policy(factory, init=str(ckpt))  # SFT merged, fresh LoRA on top
    train_lora(grpo, seed=2)
    grpo_logits = logits_of(grpo, tok)
    assert (grpo_logits - sft_logits).abs().max() > 1e-2      # the RL adapter moved the policy
    export = grpo_task.export(grpo, tmp_path / "grpo")
    assert_loads_as(export, grpo_logits, tok)

    # the adapter's base is the merged SFT model, written beside it and named by the manifest
    config = json.loads((export["adapter"] / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]) == export["base"].resolve()
    manifest = json.loads((tmp_path / "grpo" / "manifest.json").read_text())
    assert set(manifest["artifacts"]) == {"adapter", "base", "merged"}


def test_adapter_on_an_unchanged_named_base_points_at_it(tmp_path):
    """A LoRA policy on a pretrained folder as it is: the adapter names that folder (absolute),
    no copy of the base is written."""
    from wm.language.model import load_causal_lm

    factory = functools.partial(load_causal_lm, str(pretrained_folder(tmp_path / "pretrained")),
                                lora=LORA)
    t = task()
    policy = t.build_policy(factory)
    tok = t.tokenizer
    train_lora(policy, seed=3)
    export = t.export(policy, tmp_path / "export")
    assert "base" not in export and not (tmp_path / "export" / "base").exists()
    config = json.loads((export["adapter"] / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]) == (tmp_path / "pretrained").resolve()
    assert_loads_as(export, logits_of(policy, tok), tok)
