"""Build and load a visual tokenizer: from the constructor config it records, or from the
tokenizer stage's checkpoint file (the one place stages, tasks, notebooks and eval load one).

Every tokenizer in ``wm.vision`` keeps its constructor arguments in ``self.config``. A checkpoint
stores ``{"_target_": "<module>.<Class>", **config}``, so later stages rebuild the tokenizer by
path only, without the tokenizer's Hydra config.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from torch import nn

from wm.utils.hub import looks_like_hub_id


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


def load_tokenizer(ckpt_path: str | Path, frozen: bool = True,
                   map_location: str = "cpu") -> nn.Module:
    """Rebuild a tokenizer from its checkpoint: the tokenizer stage's ``.ckpt``, or a released
    tokenizer (the paper's RT-1 tokenizers: a folder with ``config.json`` +
    ``diffusion_pytorch_model.safetensors``, or a hub id such as ``thuml/rt1-frame-tokenizer``;
    ``wm.vision.released``).

    ``frozen=True`` returns it in eval mode with ``requires_grad_(False)`` (as the MLE and GRPO
    stages use it). Loads with ``weights_only=True`` (no arbitrary unpickling).
    """
    from wm.utils.checkpoints import load_checkpoint_file

    path = Path(ckpt_path)
    if path.is_dir() or (not path.exists() and looks_like_hub_id(str(ckpt_path))):
        from wm.vision.released.io import load_released_tokenizer

        return load_released_tokenizer(ckpt_path, frozen=frozen, map_location=map_location)
    if not path.is_file():
        raise FileNotFoundError(
            f"tokenizer checkpoint {path} does not exist; train one with "
            "`python train.py stage=tokenizer data=<dataset>` and pass its .ckpt path"
        )
    ckpt = load_checkpoint_file(path, weights_only=True, map_location=map_location,
                                hint="train one with `python train.py stage=tokenizer "
                                "data=<dataset>` and pass its checkpoints/last.ckpt")
    if "tokenizer_config" not in ckpt:
        raise ValueError(f"{path} has no 'tokenizer_config': it was not written by the tokenizer "
                         "stage (TokenizerModule)")
    tokenizer = build_tokenizer(ckpt["tokenizer_config"])
    prefix = "tokenizer."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    tokenizer.load_state_dict(state)
    if frozen:
        tokenizer.eval().requires_grad_(False)
    return tokenizer
