"""Language-model factories for configs, and rebuilding a policy from a stage checkpoint.

``conf/model/lm_*.yaml`` point at a factory returning ``(model, tokenizer)``:
:func:`wm.language.model.load_causal_lm` for real models by name or path, and
:func:`tiny_causal_lm` for the offline rig (its byte-level BPE tokenizer is trained on a fixed
built-in corpus plus, optionally, the text of data files (``corpus_files``), so the same config
and files always give the same tokenizer).

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


#: at most this many characters of ``corpus_files`` train the tiny tokenizer (a large record file
#: would otherwise take minutes; BPE merges saturate long before)
CORPUS_CHARS = 2_000_000


def _strings(value) -> list[str]:
    """Every string inside a JSON value (records: their field values), in order."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def corpus_texts(files: list[str] | None, max_chars: int = CORPUS_CHARS) -> list[str]:
    """The text of data files for the tiny tokenizer: every string of a ``.json`` file (e.g. a list
    of WebArena records), every line of other files; the first ``max_chars`` characters in all."""
    import json

    texts, total = [], 0
    for name in files or []:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"model.policy.corpus_files: {path} is not a file (the tiny "
                                    "tokenizer is trained on the data's own text: set data.path "
                                    "to the dataset's file, or model.policy.corpus_files=null)")
        raw = path.read_text(encoding="utf-8")
        for text in (_strings(json.loads(raw)) if path.suffix == ".json" else raw.splitlines()):
            if total >= max_chars:
                return texts
            texts.append(text[: max_chars - total])
            total += len(texts[-1])
    return texts


def tiny_causal_lm(vocab_size: int = 512, hidden: int = 64, layers: int = 2, heads: int = 4,
                   lora: dict | None = None, seed: int = 0, corpus_files: list[str] | None = None,
                   gradient_checkpointing: bool = False, trainable_layers: int | None = None):
    """``(model, tokenizer)``: a tiny random Qwen2 with a BPE tokenizer trained on the fly on
    :func:`builtin_corpus` plus the text of ``corpus_files`` (:func:`corpus_texts`). A dataset's
    own text gives its tokenizer merges for that text's words: WebArena pages take ~3 characters
    per token instead of ~1 with the built-in corpus alone, so prompts and targets fit
    (``conf/data_model/webarena_lm_tiny.yaml``). ``gradient_checkpointing``,
    ``trainable_layers``: as in :func:`wm.language.model.load_causal_lm`."""
    from wm.language.model import apply_lora, set_gradient_checkpointing, set_trainable_layers
    from wm.language.tiny import build_tiny_qwen2, train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(builtin_corpus() + corpus_texts(corpus_files),
                                    vocab_size=vocab_size)
    model = build_tiny_qwen2(tokenizer, hidden=hidden, layers=layers, heads=heads, seed=seed)
    set_gradient_checkpointing(model, gradient_checkpointing)
    model = apply_lora(model, lora) if lora else model
    return set_trainable_layers(model, trainable_layers), tokenizer


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
