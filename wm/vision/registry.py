"""Rebuild a tokenizer from the constructor config it records (used by checkpoints).

Every tokenizer in ``wm.vision`` keeps its constructor arguments in ``self.config``. A checkpoint
stores ``{"_target_": "<module>.<Class>", **config}``, so later stages rebuild the tokenizer by
path only, without the tokenizer's Hydra config.
"""
from __future__ import annotations

import importlib

from torch import nn


def tokenizer_config(tokenizer: nn.Module) -> dict:
    """``{"_target_": dotted class path, **constructor kwargs}`` of a ``wm.vision`` tokenizer."""
    config = getattr(tokenizer, "config", None)
    if not isinstance(config, dict):
        raise TypeError(
            f"{type(tokenizer).__name__} has no `config` dict of constructor arguments; "
            "tokenizers used by the tokenizer stage must record one "
            "(see wm.vision.fsq_vqgan.FrameTokenizer)"
        )
    cls = type(tokenizer)
    return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **config}


def build_tokenizer(config: dict) -> nn.Module:
    """Inverse of :func:`tokenizer_config`."""
    config = dict(config)
    target = config.pop("_target_", None)
    if not target or "." not in target:
        raise ValueError(f"tokenizer config needs a '_target_' class path, got {target!r}")
    module, _, name = target.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**config)
