"""Causal language model loading with LoRA, saving, and the KL reference without a second copy.

Paper: RLVR-World (NeurIPS 2025), Sec. 4.1-4.2 and appendix: DeepSeek-R1-Distill-Qwen-1.5B/7B,
SFT with LoRA (r=32, alpha=16, all linear layers, dropout 0.05), then RL. The KL reference of
GRPO is the base model; with LoRA it is the same network with the adapters switched off
(``reference_logits_context``), so no second copy of the weights is held. Departure: when the
policy is trained with LoRA the reference is the *base* model, not the SFT checkpoint, unless
the SFT adapter was merged before RL (``save_hf`` writes a merged copy for that).

Export (``save_hf``): every folder loads into the trained policy by the plain Hugging Face call;
an adapter whose base is no named model's weights (an earlier adapter merged into them, or a
model built from a config) gets those weights saved beside it as ``base`` and named by its
``adapter_config.json``.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

DEFAULT_MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
DEFAULT_LORA = {"r": 32, "alpha": 16, "target_modules": "all-linear", "dropout": 0.05}
_DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
           "fp16": "float16", "float16": "float16"}


def _torch_dtype(dtype: str):
    import torch

    if dtype == "auto":
        return "auto"
    if dtype not in _DTYPES:
        raise ValueError(f"load_causal_lm: dtype={dtype!r}; use one of 'auto', {sorted(_DTYPES)}")
    return getattr(torch, _DTYPES[dtype])


def load_causal_lm(
    name_or_path: str = DEFAULT_MODEL,
    lora: dict | None = None,
    dtype: str = "auto",
    device_map=None,
    gradient_checkpointing: bool = False,
    trainable_layers: int | None = None,
):
    """Load ``(model, tokenizer)`` with transformers; wrap the model in a peft LoRA if ``lora``.

    ``lora`` keys (defaults from the paper): ``r`` (32), ``alpha`` (16), ``target_modules``
    ("all-linear"), ``dropout`` (0.05). ``dtype``: "auto" | "bf16" | "fp32" | "fp16".
    ``gradient_checkpointing``: recompute activations in backward (``set_gradient_checkpointing``).
    ``trainable_layers``: train only the top K decoder layers (``set_trainable_layers``).
    Raises ``OSError`` naming the model and how to point at a local copy when it cannot be found.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _torch_dtype(dtype)  # a bad dtype fails before any download
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=torch_dtype, device_map=device_map
        )
    except (OSError, ValueError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
        raise OSError(
            f"could not load the language model {name_or_path!r}: {err}\n"
            "Point the model config at a local folder holding the Hugging Face files "
            "(config.json, weights, tokenizer), or download it once with network access and set "
            f"HF_HOME (now {os.environ.get('HF_HOME', '~/.cache/huggingface')!r}) to that cache"
            + (" (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set)." if offline else ".")
        ) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if lora is not None:
        model = apply_lora(model, lora)
    set_trainable_layers(model, trainable_layers)
    return set_gradient_checkpointing(model, gradient_checkpointing), tokenizer


def decoder_layers(model) -> list:
    """The decoder layers of a Hugging Face causal LM (Llama/Qwen2 ``model.layers``), bottom first."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(f"trainable_layers: {type(base).__name__} has no model.layers; use "
                         "trainable_layers=null for this model")
    return list(layers)


def set_trainable_layers(model, k: int | None):
    """Train only the top ``k`` decoder layers (and the final norm); None = leave as it is.

    Everything else stops taking gradients (embeddings and a tied LM head included); with LoRA,
    only adapters inside the top ``k`` layers stay trainable. Parameters are only ever switched
    off, never on, so frozen base weights under LoRA stay frozen. Backward then ends at the lowest
    trainable layer: the layers below run forward only (on 2 CPU cores, SmolLM2-135M with k=8 of
    30 layers: one 900-token SFT step in ~1/3 of the full-model time; docs/stages.md). Returns
    ``model``. Departure from the paper (all layers, LoRA everywhere): a CPU-budget knob, off in
    every paper preset."""
    if k is None:
        return model
    layers = decoder_layers(model)
    if not 1 <= int(k) <= len(layers):
        raise ValueError(f"model.policy.trainable_layers={k}: the model has {len(layers)} decoder "
                         f"layers; use 1..{len(layers)}, or null to train all")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    keep = {id(p) for layer in layers[len(layers) - int(k):] for p in layer.parameters()}
    norm = getattr(getattr(base, "model", None), "norm", None)
    keep |= {id(p) for p in (norm.parameters() if norm is not None else ())}
    for p in model.parameters():
        if id(p) not in keep:
            p.requires_grad_(False)
    return model


def set_gradient_checkpointing(model, enabled: bool):
    """Activation (gradient) checkpointing of a Hugging Face causal LM's decoder layers, on or
    off; returns ``model``. Each layer's activations are recomputed in the backward pass instead
    of kept (about a third more compute, memory of one layer's activations per layer).

    Non-reentrant checkpointing (``use_reentrant=False``), so a LoRA model whose frozen
    embeddings give inputs without ``requires_grad`` still gets its adapters' gradients (the
    reentrant variant needs ``enable_input_require_grads``); the gradients equal those without
    checkpointing (tests/test_bf16.py). Active only in ``train()`` mode. Hugging Face drops
    ``past_key_values`` inside checkpointed layers; GRPO's shared-prefix pass keeps its cache by
    checkpointing only the response pass, which reads the cache and does not write it
    (``wm.rollout.forward``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if enabled:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif getattr(base, "is_gradient_checkpointing", False):
        base.gradient_checkpointing_disable()
    return model


def gradient_checkpointing_setting(factory) -> bool:
    """The ``gradient_checkpointing`` keyword of a (partial) model factory (False if absent):
    the stages re-apply it to a policy loaded from a checkpoint, which the factory did not build."""
    return bool((getattr(factory, "keywords", None) or {}).get("gradient_checkpointing", False))


def apply_factory_settings(model, factory):
    """Re-apply a (partial) factory's training settings to a policy it may not have built (one
    loaded from a checkpoint): ``gradient_checkpointing`` and ``trainable_layers``."""
    keywords = getattr(factory, "keywords", None) or {}
    set_trainable_layers(model, keywords.get("trainable_layers"))
    return set_gradient_checkpointing(model, gradient_checkpointing_setting(factory))


def apply_lora(model, lora: dict | None = None):
    """Wrap ``model`` in a peft LoRA (see ``load_causal_lm`` for the keys)."""
    from peft import LoraConfig, get_peft_model

    cfg = {**DEFAULT_LORA, **(lora or {})}
    unknown = set(cfg) - set(DEFAULT_LORA)
    if unknown:
        raise ValueError(f"lora: unknown keys {sorted(unknown)}; allowed {sorted(DEFAULT_LORA)}")
    config = LoraConfig(
        r=cfg["r"],
        lora_alpha=cfg["alpha"],
        target_modules=cfg["target_modules"],
        lora_dropout=cfg["dropout"],
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def is_lora(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


@contextlib.contextmanager
def reference_logits_context(model):
    """Inside the block, ``model`` computes the base model (LoRA adapters disabled).

    For a model without adapters this is a no-op, so the caller must hold a separate frozen
    reference in that case (``is_lora`` tells which).
    """
    if is_lora(model):
        with model.disable_adapter():
            yield model
    else:
        yield model


def pretrained_source(model) -> str | None:
    """The hub id or local folder ``model``'s (base) weights were loaded from, or None (a model
    built from a config has no name; an unnamed one cannot be reloaded)."""
    from wm.utils.hub import looks_like_hub_id

    base = model.get_base_model() if is_lora(model) else model
    name = str(getattr(base, "name_or_path", "") or "")
    if name and Path(name).is_dir():
        return str(Path(name).resolve())
    return name if looks_like_hub_id(name) else None


def save_hf(model, tokenizer, out_dir: str | os.PathLike, base: str | None = None
            ) -> dict[str, Path]:
    """Write the policy ``model`` as Hugging Face folders under ``out_dir``, each with the
    tokenizer, and ``out_dir/manifest.json`` saying how each loads. The live ``model`` is left
    as it is (copies are merged / unloaded). Returns the written folders:

    - ``merged``: a plain model with the adapters merged in (``AutoModelForCausalLM``).
    - ``adapter`` (LoRA only): the LoRA weights; its ``adapter_config.json`` names as
      ``base_model_name_or_path`` the weights under them, so ``AutoPeftModelForCausalLM`` (or
      ``AutoModelForCausalLM``) ``.from_pretrained(adapter)`` is the policy: ``base``, a hub id or
      folder holding exactly those weights (the model LoRA was added to, unchanged), or, when
      ``base`` is None, ``base`` below.
    - ``base`` (LoRA with ``base=None``): the weights under the adapter, adapters off (e.g. the
      SFT model after its adapter was merged, or a model built from a config). Not the policy.

    Local paths are written absolute: peft and transformers read the field as given, relative to
    the caller's working directory, so an export moved elsewhere loads with
    ``PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(<export>/base), <export>/adapter)``.
    """
    import copy

    out = Path(out_dir)
    paths: dict[str, Path] = {}
    if is_lora(model):
        if base is None:
            paths["base"] = out / "base"
            _save_pretrained(copy.deepcopy(model).unload(), tokenizer, paths["base"])
            base = str(paths["base"])
        base = str(Path(base).resolve()) if Path(base).is_dir() else base
        paths["adapter"] = out / "adapter"
        _save_pretrained(model, tokenizer, paths["adapter"])
        _name_adapter_base(paths["adapter"], base)
        merged = copy.deepcopy(model).merge_and_unload()
    else:
        merged = model
    paths["merged"] = out / "merged"
    _save_pretrained(merged, tokenizer, paths["merged"])
    _write_manifest(out, paths, base)
    return paths


def _save_pretrained(model, tokenizer, folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _name_adapter_base(adapter: Path, base: str) -> None:
    """Point a saved adapter's ``base_model_name_or_path`` at ``base``."""
    import json

    config_path = adapter / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _write_manifest(out: Path, paths: dict[str, Path], base: str | None) -> None:
    """``out/manifest.json``: each exported folder, what it holds and the call that loads it."""
    import json

    what = {
        "merged": ("the trained policy as a plain model (LoRA adapters, if any, merged in)",
                   "transformers.AutoModelForCausalLM.from_pretrained('{}')"),
        "adapter": (f"the trained policy's LoRA weights on the base {base}",
                    "peft.AutoPeftModelForCausalLM.from_pretrained('{}')"),
        "base": ("the weights under the adapter (adapters off), NOT the trained policy; "
                 "adapter/adapter_config.json names it by absolute path: after moving the "
                 "export, load the adapter with peft.PeftModel.from_pretrained(base model, "
                 "adapter folder)", "transformers.AutoModelForCausalLM.from_pretrained('{}')"),
    }
    artifacts = {name: {"path": path.name, "holds": what[name][0],
                        "load": what[name][1].format(path.resolve())}
                 for name, path in paths.items()}
    (out / "manifest.json").write_text(json.dumps({"artifacts": artifacts}, indent=2) + "\n")
