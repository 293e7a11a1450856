"""Language-model factories for configs, and rebuilding a policy from a stage checkpoint.

``conf/model/lm_*.yaml`` point at a factory returning ``(model, tokenizer)``:
:func:`wm.language.model.load_causal_lm` for real models by name or path, and
:func:`tiny_causal_lm` for the offline rig (its byte-level BPE tokenizer is trained on a fixed
built-in corpus, so the same config always gives the same tokenizer).

A stage checkpoint stores what :func:`rebuild_from_checkpoint` needs: the base model's name or
config, the tokenizer files, the LoRA settings; the weights are in the Lightning state dict.
"""
from __future__ import annotations

import tempfile
from pathlib import Path


def builtin_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: toy-world prompts/answers and JSON punctuation."""
    from wm.textworld.toy import toy_prompt, toy_records, toy_target

    recs = toy_records(64, seed=1234)
    extra = ['{"modified": [], "removed": [], "score": {"score": 0, "gameOver": false, '
             '"gameWon": false}}', "New items:\nDeleted items:\nUpdated items:\nNone"]
    return [toy_prompt(r) + " " + toy_target(r) for r in recs] + extra


def tiny_causal_lm(vocab_size: int = 512, hidden: int = 64, layers: int = 2, heads: int = 4,
                   lora: dict | None = None, seed: int = 0):
    """``(model, tokenizer)``: a tiny random Qwen2 with a BPE tokenizer trained on the fly."""
    from wm.language.model import apply_lora
    from wm.language.tiny import build_tiny_qwen2, train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(builtin_corpus(), vocab_size=vocab_size)
    model = build_tiny_qwen2(tokenizer, hidden=hidden, layers=layers, heads=heads, seed=seed)
    return (apply_lora(model, lora) if lora else model), tokenizer


def lora_settings(factory) -> dict | None:
    """The ``lora`` keyword of a (partial) factory, if any."""
    return (getattr(factory, "keywords", None) or {}).get("lora")


def tokenizer_files(tokenizer) -> dict[str, str]:
    """The tokenizer's saved files as {name: text}, to embed in a checkpoint."""
    with tempfile.TemporaryDirectory() as d:
        tokenizer.save_pretrained(d)
        return {p.name: p.read_text() for p in Path(d).iterdir() if p.is_file()}


def checkpoint_entry(model, tokenizer, lora: dict | None) -> dict:
    """What a stage checkpoint stores to rebuild this policy (weights excluded)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {"config": base.config.to_dict(), "tokenizer_files": tokenizer_files(tokenizer),
            "lora": lora, "name_or_path": getattr(base.config, "_name_or_path", "") or None}


def rebuild_from_checkpoint(path: str | Path):
    """``(model, tokenizer)`` with the weights of a text MLE/GRPO stage checkpoint."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from wm.language.model import apply_lora
    from wm.utils.checkpoints import load_checkpoint_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"language-model checkpoint not found: {path}. Produce it with "
                                "`python train.py stage=mle data=<text data> model=<lm preset>`")
    ckpt = load_checkpoint_file(path, weights_only=False, hint="produce one with `python train.py "
                                "stage=mle data=<text data> model=<lm preset>`")
    saved = ckpt.get("wm_policy")
    if not saved or "tokenizer_files" not in saved:
        raise ValueError(f"{path} is not a language world-model checkpoint of this project")
    with tempfile.TemporaryDirectory() as d:
        for name, text in saved["tokenizer_files"].items():
            (Path(d) / name).write_text(text)
        tokenizer = AutoTokenizer.from_pretrained(d)
    config = AutoConfig.for_model(**saved["config"])
    model = AutoModelForCausalLM.from_config(config)
    if saved.get("lora"):
        model = apply_lora(model, saved["lora"])
    state = {k[len("policy."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("policy.")}
    model.load_state_dict(state)
    return model, tokenizer
