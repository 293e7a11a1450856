"""Load and save the paper's released tokenizers as diffusers-style folders; resolve a folder or
Hugging Face hub id (``thuml/rt1-frame-tokenizer``, ``thuml/rt1-compressive-tokenizer``) to one.

A folder holds ``config.json`` (``_class_name`` plus the constructor keys, as the reference's
``save_pretrained`` writes them) and ``diffusion_pytorch_model.safetensors`` (the released
parameter names), see shared/CHECKPOINTS.md. Loading is strict; every failure is one line that
names the file. Folders written by :func:`save_released` load in the reference code too.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import re
from pathlib import Path

import torch
from torch import nn

from wm.vision.released.compressive_fsq import ReleasedCompressiveTokenizer
from wm.vision.released.frame_fsq import ReleasedFrameTokenizer

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
DEFAULT_DIFFUSERS_VERSION = "0.27.0"  # the reference's vid_wm/requirements.txt
ARCHITECTURES: dict[str, type[nn.Module]] = {
    "CNNFSQModel256": ReleasedFrameTokenizer,
    "CompressiveVQModelFSQ": ReleasedCompressiveTokenizer,
}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_TRUE = {"1", "ON", "YES", "TRUE"}


def _one_line(err: BaseException | str) -> str:
    return " ".join(str(err).split())


def resolve_checkpoint(name_or_path: str | os.PathLike, *, revision: str | None = None,
                       cache_dir: str | os.PathLike | None = None) -> Path:
    """A local folder as is; otherwise a Hugging Face hub id fetched (or found in the cache) with
    ``huggingface_hub.snapshot_download`` (only ``config.json`` and the safetensors file)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{path} is a file: pass the folder that holds {CONFIG_NAME} and "
                         f"{WEIGHTS_NAME}")
    name = str(name_or_path)
    if not _HUB_ID.fullmatch(name):
        raise FileNotFoundError(f"{name}: no such folder, and not a Hugging Face hub id such as "
                                "'thuml/rt1-frame-tokenizer'")
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError as err:  # pragma: no cover - huggingface_hub ships with transformers
        raise ImportError(f"resolving the hub id {name!r} needs huggingface_hub; "
                          "pass a local folder instead") from err
    try:
        return Path(snapshot_download(name, revision=revision, cache_dir=cache_dir,
                                      allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))
    except Exception as err:  # offline, unknown repo, network: all end the same way for users
        offline = (os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE
                   or bool(getattr(constants, "HF_HUB_OFFLINE", False)))
        why = ("HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache" if offline
               else f"{type(err).__name__}: {_one_line(err)}")
        raise FileNotFoundError(
            f"released checkpoint {name!r} is not a local folder and could not be fetched from "
            f"the Hugging Face hub ({why}); download it where the hub is reachable with "
            f"`huggingface-cli download {name} --local-dir <folder>` and pass that folder"
        ) from err


def read_config(folder: str | os.PathLike) -> dict:
    """``config.json`` of a released folder as a dict (one-line errors naming the file)."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a released tokenizer folder holds "
                                f"{CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {_one_line(err)}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


def architecture_of(config: dict, source: str | os.PathLike = CONFIG_NAME) -> type[nn.Module]:
    """Which released class a config describes: by ``_class_name``, else by its keys
    (``dyn_fsq_levels`` -> compressive, ``fsq_levels`` -> per-frame)."""
    name = config.get("_class_name")
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    if "dyn_fsq_levels" in config or "vq_fsq_levels" in config:
        return ReleasedCompressiveTokenizer
    if "fsq_levels" in config:
        return ReleasedFrameTokenizer
    raise ValueError(f"{source}: _class_name={name!r} is neither of {sorted(ARCHITECTURES)} and "
                     "the keys name no FSQ levels (fsq_levels / dyn_fsq_levels)")


def build_from_config(config: dict, source: str | os.PathLike = CONFIG_NAME) -> nn.Module:
    """Instantiate (random init) the class a released config describes; unknown keys are logged
    and ignored, missing ones take the reference constructor's defaults (as diffusers does)."""
    cls = architecture_of(config, source)
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in config.items() if k in params}
    ignored = sorted(k for k in config if k not in params and not k.startswith("_"))
    if ignored:
        log.warning("%s: ignoring keys %s unknown to %s", source, ignored, cls.__name__)
    try:
        model = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: cannot build {cls.__name__}: {_one_line(err)}") from err
    model.diffusers_version = str(config.get("_diffusers_version", DEFAULT_DIFFUSERS_VERSION))
    return model


def _load_weights(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a released tokenizer folder holds "
                                f"{CONFIG_NAME} and {WEIGHTS_NAME}")
    from safetensors.torch import load_file
    try:
        state = load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError or OSError
        raise ValueError(f"{path} is not a readable safetensors file: {_one_line(err)}") from err
    own = model.state_dict()
    missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    shapes = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
              for k in sorted(own.keys() & state.keys()) if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(v)} {what} (e.g. {', '.join(v[:3])})" for what, v in
                 (("missing", missing), ("unexpected", unexpected),
                  ("with another shape (file vs model)", shapes)) if v]
        raise ValueError(f"{path} does not match the {type(model).__name__} its {CONFIG_NAME} "
                         f"describes: parameters {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def load_released_tokenizer(name_or_path: str | os.PathLike, *, frozen: bool = True,
                            map_location: str | torch.device = "cpu") -> nn.Module:
    """A released tokenizer (folder or hub id) as :class:`ReleasedFrameTokenizer` or
    :class:`ReleasedCompressiveTokenizer`; ``frozen`` -> eval mode, no gradients."""
    folder = resolve_checkpoint(name_or_path)
    model = build_from_config(read_config(folder), folder / CONFIG_NAME)
    _load_weights(model, folder / WEIGHTS_NAME)
    model.to(map_location)
    if frozen:
        model.eval().requires_grad_(False)
    return model


def save_released(model: nn.Module, folder: str | os.PathLike) -> Path:
    """Write ``config.json`` (released keys) and the safetensors file; returns the folder."""
    classes = tuple(ARCHITECTURES.values())
    if not isinstance(model, classes):
        raise TypeError(f"save_released takes a {' or '.join(c.__name__ for c in classes)}, "
                        f"got {type(model).__name__}")
    from safetensors.torch import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": model.reference_class,
              "_diffusers_version": getattr(model, "diffusers_version", DEFAULT_DIFFUSERS_VERSION),
              **model.config}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    return folder
