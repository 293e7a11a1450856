"""The language pipeline end to end on the tiny preset, on CPU: SFT (stage=mle) -> GRPO
(stage=grpo, init_policy = the SFT run's last.ckpt) -> ``wm.cli.evaluate.evaluate``.

Runs on the toy text world (always), on real ByteSized32 and WebArena records (``real_data``,
skipped when ../shared/data is absent), with LoRA (reference = adapters disabled, SFT adapter
merged before the fresh RL adapter, Hugging Face export), and checks that completions reach
TensorBoard as text. Every config is the real one from ``conf/``, shrunk by overrides.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from wm.cli.evaluate import evaluate
from wm.cli.fit import fit_stage, last_checkpoint
from wm.language.presets import rebuild_from_checkpoint

CONF = Path(__file__).resolve().parents[1] / "conf"
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu",
         "num_threads=1"]
LORA = "model.policy.lora={r: 4, alpha: 8, dropout: 0.0}"


def make_cfg(config: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=config, overrides=overrides)


def run(runs: Path, stage: str, data: list[str], extra: list[str]):
    """Fit one stage; returns (cfg, final metrics)."""
    cfg = make_cfg("train", [f"stage={stage}", f"paths.runs_dir={runs}", *QUIET, *data, *extra])
    return cfg, fit_stage(cfg)


def run_eval(ckpt: Path, data: list[str], out: Path, max_batches: int = 1) -> dict:
    cfg = make_cfg("eval", [f"ckpt={ckpt}", f"out_dir={out}", f"max_batches={max_batches}",
                            "num_threads=1", *data])
    return evaluate(cfg)


def policy_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return {k[len("policy."):]: v for k, v in state.items() if k.startswith("policy.")}


def logits_of(model, tokenizer, text: str = 'State: {"lamp": "on", "count": 3}\nAction: look\n'):
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def check_eval(summary: dict, out: Path, n: int, extra_keys=()) -> None:
    for key in ("acc_all", "parse_fail", "reward", *extra_keys):
        assert key in summary and summary[key] == summary[key], key  # present, not NaN
    assert summary["num_predictions"] == n
    assert 0.0 <= summary["reward"] <= 1.0
    assert json.loads((out / "metrics.json").read_text())["metrics"]["reward"] == summary["reward"]
    assert (out / "samples.md").read_text().startswith("| # | completion | reward |")


def tensorboard_text_tags(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in run_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"tensors": 0})
        acc.Reload()
        tags |= set(acc.Tags().get("tensors", []))
    return tags


# ------------------------------------------------------------------------------------- toy
TOY = ["data=toy_text", "data.datamodule.world.toy_train=32", "data.datamodule.world.toy_val=8"]


def test_toy_pipeline_full_finetune_with_tensorboard(tmp_path):
    """SFT -> GRPO -> eval with full fine-tuning: a frozen deepcopy is the KL reference, the
    GRPO stage starts from the SFT weights, completions are logged as TensorBoard text, the
    HF export reloads to the same logits, and eval writes its tables."""
    data = [*TOY, "data.datamodule.batch_size=4", "data.grpo_group_size=4", "logger=tensorboard",
            "stage.module.log_images_every_n_steps=1", "stage.limit_val_batches=1"]
    _, mle = run(tmp_path, "mle", data, ["stage.max_steps=6", "stage.val_check_interval=3"])
    sft_ckpt = last_checkpoint(tmp_path / "toy_text" / "mle")
    assert sft_ckpt.is_file() and "val/loss" in mle and "train/loss" in mle
    assert "wm_policy" in torch.load(sft_ckpt, map_location="cpu", weights_only=False)

    grpo_args = ["stage.max_steps=2", "stage.val_check_interval=1",
                 "data.datamodule.batch_size=2"]
    cfg = make_cfg("train", ["stage=grpo", f"paths.runs_dir={tmp_path}", *QUIET, *data,
                             *grpo_args])
    assert Path(cfg.stage.module.init_policy) == sft_ckpt       # the default wiring
    module = instantiate(cfg.stage.module, _convert_="all")
    sft = policy_weights(sft_ckpt)
    for name, p in module.policy.state_dict().items():          # starts from the SFT weights
        torch.testing.assert_close(p, sft[name], rtol=0, atol=0)
    assert module.reference is not None and module.reference is not module.policy
    assert not any(p.requires_grad for p in module.reference.parameters())
    del module

    grpo = fit_stage(cfg)
    grpo_dir = tmp_path / "toy_text" / "grpo"
    assert grpo["grpo/optimizer_steps"] == 1.0 and "val/reward" in grpo
    assert "grpo/reward/reward/mean" in grpo and "grpo/frac_reward_zero_std" in grpo

    # completions reach TensorBoard as text, from both stages
    assert "val/samples/text_summary" in tensorboard_text_tags(tmp_path / "toy_text" / "mle")
    assert {"grpo/samples/text_summary", "val/samples/text_summary"} <= \
        tensorboard_text_tags(grpo_dir)

    # HF export of a full fine-tune: merged only, same logits as the checkpoint's policy
    from transformers import AutoModelForCausalLM, AutoTokenizer

    export = grpo_dir / "export"
    assert (export / "merged" / "config.json").is_file() and not (export / "adapter").exists()
    hf = AutoModelForCausalLM.from_pretrained(export / "merged")
    hf_tok = AutoTokenizer.from_pretrained(export / "merged")
    model, tok = rebuild_from_checkpoint(last_checkpoint(grpo_dir))
    torch.testing.assert_close(logits_of(hf, hf_tok), logits_of(model, tok))

    summary = run_eval(last_checkpoint(grpo_dir), TOY, tmp_path / "eval")
    check_eval(summary, tmp_path / "eval", n=8, extra_keys=("key_acc", "binary"))


def test_toy_pipeline_lora(tmp_path):
    """LoRA: GRPO keeps no copy (reference = adapters disabled = the SFT model, because the SFT
    adapter is merged before a fresh RL adapter); the exports (adapter + merged) reload with
    ``from_pretrained`` and compute the trained policy."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = [*TOY, LORA, "data.datamodule.batch_size=8", "data.grpo_group_size=4",
            "stage.limit_val_batches=0", "model.lr.mle=1e-2"]
    run(tmp_path, "mle", data, ["stage.max_steps=10"])
    mle_dir, grpo_dir = tmp_path / "toy_text" / "mle", tmp_path / "toy_text" / "grpo"
    assert {"adapter", "merged"} <= {p.name for p in (mle_dir / "export").iterdir()}
    assert any(".lora_A." in k for k in policy_weights(last_checkpoint(mle_dir)))

    sft_model, tok = rebuild_from_checkpoint(last_checkpoint(mle_dir))
    assert isinstance(sft_model, PeftModel)
    sft_logits = logits_of(sft_model, tok)
    # the SFT export: merged == checkpoint policy; adapter on the base model == policy too
    torch.testing.assert_close(
        logits_of(AutoModelForCausalLM.from_pretrained(mle_dir / "export" / "merged"), tok),
        sft_logits)

    # LoRA on a random tiny base learns too little in a few SFT steps to give any reward
    # variance; the entropy bonus gives the fresh adapter a gradient regardless of rewards.
    grpo_args = ["stage.max_steps=3", "data.datamodule.batch_size=4", "model.lr.grpo=1e-2",
                 "stage.module.loss.entropy_coef=0.01"]
    cfg = make_cfg("train", ["stage=grpo", f"paths.runs_dir={tmp_path}", *QUIET, *data,
                             *grpo_args])
    module = instantiate(cfg.stage.module, _convert_="all")
    assert module.reference is None                            # no deepcopy with LoRA
    assert isinstance(module.policy, PeftModel)
    assert list(module.policy.peft_config) == ["default"]      # one (fresh) adapter
    fresh = {k: v for k, v in module.policy.state_dict().items() if "lora_B" in k}
    assert fresh and all(v.abs().max() == 0 for v in fresh.values())  # fresh: B = 0
    with module._reference_policy() as ref:                    # reference == SFT model
        torch.testing.assert_close(logits_of(ref, tok), sft_logits)
    torch.testing.assert_close(logits_of(module.policy, tok), sft_logits)  # B = 0: same
    del module

    grpo = fit_stage(cfg)
    assert grpo["grpo/optimizer_steps"] == 1.0 and grpo["grpo/kl"] > 0  # moved off the ref
    rl_model, _ = rebuild_from_checkpoint(last_checkpoint(grpo_dir))
    assert isinstance(rl_model, PeftModel)
    rl_logits = logits_of(rl_model, tok)
    with rl_model.disable_adapter():                           # the base is still the SFT model
        torch.testing.assert_close(logits_of(rl_model, tok), sft_logits)
    assert (rl_logits - sft_logits).abs().max() > 1e-4         # the RL adapter was trained

    # GRPO export: merged reloads to the policy; the RL adapter sits on the merged SFT model
    export = grpo_dir / "export"
    merged = AutoModelForCausalLM.from_pretrained(export / "merged")
    assert not isinstance(merged, PeftModel)
    torch.testing.assert_close(logits_of(merged, AutoTokenizer.from_pretrained(export / "merged")),
                               rl_logits)
    base = AutoModelForCausalLM.from_pretrained(mle_dir / "export" / "merged")
    adapted = PeftModel.from_pretrained(base, export / "adapter")
    torch.testing.assert_close(logits_of(adapted, tok), rl_logits, rtol=1e-4, atol=1e-5)
    # ... and the plain call loads it on that model too (export/base: its adapter_config names it)
    from peft import AutoPeftModelForCausalLM

    plain = AutoPeftModelForCausalLM.from_pretrained(export / "adapter")
    torch.testing.assert_close(logits_of(plain, tok), rl_logits, rtol=1e-4, atol=1e-5)

    summary = run_eval(last_checkpoint(grpo_dir), [*TOY, LORA], tmp_path / "eval")
    check_eval(summary, tmp_path / "eval", n=8, extra_keys=("key_acc",))


# ------------------------------------------------------------------------------- real data
@pytest.mark.slow
@pytest.mark.real_data
def test_bytesized32_pipeline(tmp_path, shared_data):
    """Real ByteSized32 records through SFT -> GRPO -> eval with the tiny model."""
    data = ["data=bytesized32", "model=lm_tiny", f"data.path={shared_data / 'bytesized32'}",
            "data.datamodule.max_train_records=8", "data.datamodule.max_val_records=4",
            "data.datamodule.batch_size=2", "data.task.max_prompt_tokens=4096",
            "data.task.max_response_tokens=64", "data.grpo_group_size=3"]
    _, mle = run(tmp_path, "mle", data, ["stage.max_steps=2", "stage.val_check_interval=2",
                                         "stage.limit_val_batches=1"])
    assert mle["val/loss"] > 0 and "val/acc_all" in mle
    _, grpo = run(tmp_path, "grpo", data, ["stage.max_steps=1", "stage.limit_val_batches=0"])
    assert grpo["grpo/optimizer_steps"] == 1.0
    assert "grpo/reward/task_specific/mean" in grpo and "grpo/reward/binary/mean" in grpo
    run_dir = tmp_path / "bytesized32" / "grpo"
    assert (run_dir / "export" / "merged" / "config.json").is_file()
    summary = run_eval(last_checkpoint(run_dir), data, tmp_path / "eval")
    check_eval(summary, tmp_path / "eval", n=2, extra_keys=("task_specific", "binary"))


@pytest.mark.slow
@pytest.mark.real_data
def test_webarena_pipeline(tmp_path, shared_data):
    """Real WebArena (WMA) samples through SFT -> GRPO -> eval with the tiny model. Their
    targets are 5.6k-10k tokens for the tiny tokenizer, so the response budget is large and
    only the shortest record is kept; prompts are shortened to 1536 tokens (tree lines cut)."""
    path = shared_data / "wma" / "sample_tao_annotated.json"
    data = ["data=webarena", "model=lm_tiny", f"data.path={path}",
            f"data.datamodule.world.val_path={path}", "data.datamodule.batch_size=1",
            "data.task.max_prompt_tokens=1536", "data.task.max_response_tokens=5700",
            "data.grpo_group_size=2"]
    _, mle = run(tmp_path, "mle", data, ["stage.max_steps=1", "stage.limit_val_batches=0"])
    assert mle["train/loss"] > 0
    _, grpo = run(tmp_path, "grpo", data, ["stage.max_steps=1", "stage.limit_val_batches=0"])
    assert "grpo/reward/f1/mean" in grpo and grpo["grpo/optimizer_steps"] == 1.0
    run_dir = tmp_path / "webarena" / "grpo"
    summary = run_eval(last_checkpoint(run_dir), data, tmp_path / "eval")
    check_eval(summary, tmp_path / "eval", n=1, extra_keys=("f1",))
