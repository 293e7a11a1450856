"""A run's identity: the settings that define what a run folder holds, fingerprinted into it.

A run folder (``run_dir``, by default ``runs/<run_name>/<stage>``) is found by name, so the same
``data=`` name with another ``data.root`` would otherwise "resume" the other dataset's run. Here
the settings that make a run what it is (stage, data source and files, held-out split, tokenizer
checkpoint, sequence layout, model, starting checkpoint; see :data:`RUN_KEYS`) are written to
``<run_dir>/identity.json`` when the run starts and into every checkpoint it saves (``wm_run``,
with the data's facts: action dimension, frame size, vocabulary). Resuming with other settings,
or evaluating on other data, refuses with one line that shows the entries that differ
(:mod:`wm.cli.run_diff`) and the overrides that start a new run (``run_name=...``, with the
upstream checkpoints named explicitly where their default paths follow ``run_name``). Step
counts, learning rates, batch sizes and logging are not part of the identity: a run may be
resumed with more steps or another schedule.

Paths are compared as absolute paths, written relative to ``paths.runs_dir`` / ``paths.data_dir``
(``<runs>/pusht/tokenizer/...``) so that a moved runs or data folder still resumes.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from wm.cli.run_diff import describe_difference, differences  # noqa: F401  (re-exported)
from wm.utils.hub import looks_like_hub_id

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity.json"

#: (name shown to the user = the key to override, where a composed train config holds it).
#: Stage-specific entries are absent from other stages' configs and then left out.
RUN_KEYS: tuple[tuple[str, str], ...] = (
    ("stage.name", "stage.name"),
    ("data.name", "data.name"),
    ("data.modality", "data.modality"),
    ("data.root", "data.root"),
    ("data.path", "data.path"),
    ("data.source", "data.source"),
    ("data.resolution", "data.resolution"),
    ("data.context_frames", "data.context_frames"),
    ("data.future_frames", "data.future_frames"),
    ("data.datamodule.world", "data.datamodule.world"),
    ("data.datamodule.val_every", "data.datamodule.val_every"),
    ("data.task.tokenizer_ckpt", "stage.module.task.tokenizer_ckpt"),
    ("data.task.layout", "stage.module.task.layout"),
    ("data.task.visual_order", "stage.module.task.visual_order"),
    ("data.task.n_prompt_future", "stage.module.task.n_prompt_future"),
    ("data.task.final_action", "stage.module.task.final_action"),
    ("data.task.action_bins", "stage.module.task.action_bins"),
    ("data.task.action_ranges", "stage.module.task.action_ranges"),
    ("data.task.decoding", "stage.module.task.decoding"),
    ("data.task.delta_threshold", "stage.module.task.delta_threshold"),
    ("data.task.delta_dilate", "stage.module.task.delta_dilate"),
    ("data.task.reward", "stage.module.task.reward"),
    ("data.task.perceptual", "stage.module.task.perceptual"),
    ("vision.tokenizer", "stage.module.tokenizer"),
    ("model.policy", "stage.module.model"),
    ("stage.module.init_policy", "stage.module.init_policy"),
)

#: what a run optimises but an evaluation may choose freely (how frames are decoded, what is
#: scored): part of a run's identity, not of the data an evaluation compares
SCORING_KEYS = ("data.task.decoding", "data.task.delta_threshold", "data.task.delta_dilate",
                "data.task.reward", "data.task.perceptual")

#: the entries that describe the data a checkpoint was trained on (what eval.py compares); the
#: tokenizer checkpoint is not among them (an evaluation uses the checkpoint's own)
DATA_KEYS = tuple(name for name, _ in RUN_KEYS
                  if name.startswith("data.") and name != "data.task.tokenizer_ckpt"
                  and name not in SCORING_KEYS)

#: leaf names whose string values are file-system paths (normalised before comparing)
PATH_FIELDS = {"root", "path", "val_path", "tokenizer_ckpt", "init_policy", "action_ranges",
               "rules_path", "corpus_files"}


class RunIdentityError(SystemExit):
    """A run folder holds a run of other settings (the message is the one line to print)."""


def _path_value(value: str, roots: dict[str, str]) -> str:
    """An absolute path, written as ``<runs>/...`` or ``<data>/...`` when under those folders;
    a hub id (``owner/name`` that is not a local path) stays as it is."""
    if not value or (looks_like_hub_id(value) and not Path(value).exists()):
        return value
    path = os.path.abspath(os.path.expanduser(value))
    for tag, root in roots.items():
        if root and (path == root or path.startswith(root + os.sep)):
            return f"<{tag}>" + path[len(root):]
    return path


#: settings that change memory or speed, never the maths (equal gradients, tests/test_bf16.py):
#: not part of a run's identity, so switching them resumes the same run
COMPUTE_ONLY = {"gradient_checkpointing"}


def _normalise(value: Any, roots: dict[str, str], key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _normalise(v, roots, k) for k, v in sorted(value.items())
                if k not in COMPUTE_ONLY}
    if isinstance(value, list):
        return [_normalise(v, roots, key) for v in value]
    if isinstance(value, str) and key in PATH_FIELDS:
        return _path_value(value, roots)
    return value


def _roots(cfg: DictConfig) -> dict[str, str]:
    paths = cfg.get("paths") or {}
    out = {}
    for tag, key in (("runs", "runs_dir"), ("data", "data_dir")):
        value = OmegaConf.select(cfg, f"paths.{key}", default=None) if paths else None
        if value:
            out[tag] = os.path.abspath(os.path.expanduser(str(value)))
    return out


def _select(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    """(present, plain resolved value) of ``key``; absent when the config has no such key."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    if not isinstance(node, DictConfig) or leaf not in node:
        return False, None
    value = OmegaConf.select(cfg, key, default=None)
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return True, value


def _identity(cfg: DictConfig, entries) -> dict[str, Any]:
    roots, out = _roots(cfg), {}
    for name, key in entries:
        present, value = _select(cfg, key)
        if present:
            out[name] = _normalise(value, roots, name.rsplit(".", 1)[-1])
    return out


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """The settings of :data:`RUN_KEYS` of a composed train config, resolved and normalised."""
    return _identity(cfg, RUN_KEYS)


def data_identity(cfg: DictConfig) -> dict[str, Any]:
    """The data-side settings (:data:`DATA_KEYS`) of a train or eval config."""
    return _identity(cfg, [(name, name) for name in DATA_KEYS])


def fingerprint(identity: dict) -> str:
    """A short hash of an identity (or any JSON-able dict), stable across runs and machines."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def new_run_override(cfg: DictConfig, identity: dict) -> str:
    """The overrides that start a new run for these settings: ``run_name=<name>_<hash>`` (or a
    new ``run_dir`` when the command set ``run_dir`` itself), plus the path of each upstream
    checkpoint whose default follows ``run_name`` (``data.task.tokenizer_ckpt=<runs>/<name>/
    tokenizer/...``): without it the new name would look for an upstream run that does not
    exist (issue #24, item 6); with it the new run reads what this command reads."""
    tag = fingerprint(identity)[:6]
    run_dir = Path(str(cfg.run_dir))
    default = Path(str(cfg.paths.runs_dir)) / str(cfg.run_name) / str(cfg.stage.name)
    if os.path.abspath(run_dir) != os.path.abspath(default):
        key, value = "run_dir", f"{run_dir}_{tag}"
    else:
        key, value = "run_name", f"{cfg.run_name}_{tag}"
    return " ".join([f"{key}={shlex.quote(value)}"] + _upstream_pins(cfg, key, value))


def _upstream_pins(cfg: DictConfig, key: str, value: str) -> list[str]:
    """``<option>=<path>`` for each upstream checkpoint (:data:`wm.cli.upstream.UPSTREAM`) whose
    resolved path changes when ``key`` is set to ``value``."""
    from wm.cli.upstream import UPSTREAM

    moved = copy.deepcopy(cfg)
    with open_dict(moved):
        OmegaConf.update(moved, key, value, merge=False)
    pins = []
    for name, where, _ in UPSTREAM:
        now = OmegaConf.select(cfg, where, default=None)
        if now and str(now) != str(OmegaConf.select(moved, where, default=None)):
            pins.append(f"{name}={shlex.quote(str(now))}")
    return pins


def read_identity(run_dir: Path) -> dict | None:
    path = Path(run_dir) / IDENTITY_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["identity"]
    except (ValueError, KeyError, TypeError):
        raise RunIdentityError(f"{path} is not a readable run identity (it should hold "
                               "{\"identity\": {...}}); restore it, or delete it to record this "
                               "command's settings for the run") from None


def write_identity(run_dir: Path, identity: dict) -> Path:
    path = Path(run_dir) / IDENTITY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"identity": identity, "fingerprint": fingerprint(identity),
            "written": time.strftime("%Y-%m-%d %H:%M:%S"), "command": sys.argv}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
    return path


def check_run_identity(cfg: DictConfig, run_dir: Path, has_progress: bool,
                       write: bool = True) -> dict:
    """Refuse to continue a run folder that holds a run of other settings; else (``write``:
    the launching process, not extra ranks) (re)write its ``identity.json``. ``has_progress``:
    the folder holds a checkpoint or ``DONE`` (a folder without one holds nothing to mix up, and
    takes this command's settings). Returns the identity."""
    identity = run_identity(cfg)
    recorded = read_identity(run_dir) if has_progress else None
    if recorded is None and has_progress:
        recorded = _legacy_identity(run_dir)
    if recorded is not None:
        diff = differences(recorded, identity)
        if diff:
            raise RunIdentityError(
                f"{run_dir} holds a run of other settings: "
                f"{describe_difference(recorded, identity, diff)}; continuing it would mix the "
                f"two. Start a new run with `{new_run_override(cfg, identity)}`, or use the "
                "run's own settings")
    elif has_progress:
        log.warning("%s holds a run without %s or config.yaml: recording this command's "
                    "settings as its identity", run_dir, IDENTITY_FILE)
    if write and (recorded != identity or not (Path(run_dir) / IDENTITY_FILE).is_file()):
        write_identity(run_dir, identity)
    return identity


def _legacy_identity(run_dir: Path) -> dict | None:
    """The identity of a run made before ``identity.json`` existed, from its ``config.yaml``."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return None
    try:
        identity = run_identity(OmegaConf.load(path))
    except Exception as err:  # noqa: BLE001 (an unresolvable old config: no identity)
        log.warning("could not read the settings of %s (%s)", path, str(err).splitlines()[0])
        return None
    log.info("%s has no %s (made before run identities): its identity is taken from %s",
             run_dir, IDENTITY_FILE, path)
    return identity


# ------------------------------------------------------------------------ checkpoint facts
def data_facts(cfg: DictConfig, datamodule=None, module=None) -> dict[str, Any]:
    """What a checkpoint needs of its data: modality, action dimension, frame size (H, W),
    context frames, vocabulary size; each where known."""
    facts: dict[str, Any] = {}
    data = cfg.get("data") or {}
    if data.get("modality"):
        facts["modality"] = str(data.modality)
    if data.get("resolution") is not None and data.get("modality") == "video":
        facts["frame_size"] = [int(r) for r in data.resolution]
    if data.get("context_frames") is not None:
        facts["context_frames"] = int(data.context_frames)
    if datamodule is not None:
        try:
            dim = getattr(datamodule, "action_dim", None)
        except Exception:  # noqa: BLE001 (no dataset yet: the fact is simply unknown)
            dim = None
        if dim is not None:
            facts["action_dim"] = int(dim)
    policy = getattr(module, "policy", None)
    vocab = getattr(getattr(policy, "config", None), "vocab_size", None)
    if vocab is not None:
        facts["vocab_size"] = int(vocab)
    return facts


def checkpoint_facts(ckpt: dict) -> dict[str, Any]:
    """The data facts a checkpoint was trained with: its ``wm_run`` entry, else (checkpoints
    written before it) what its DataModule hyper-parameters and dataset index tell."""
    run = ckpt.get("wm_run") or {}
    if run.get("facts"):
        return dict(run["facts"])
    facts: dict[str, Any] = {}
    hp = ckpt.get("datamodule_hyper_parameters") or {}
    if hp.get("resolution") is not None:
        facts["frame_size"] = [int(r) for r in hp["resolution"]]
    if hp.get("context_frames") is not None:
        facts["context_frames"] = int(hp["context_frames"])
    index = Path(str(hp.get("root", ""))) / "index.json" if hp.get("root") else None
    if index is not None and index.is_file():
        try:
            facts["action_dim"] = int(json.loads(index.read_text())["action_dim"])
        except (ValueError, KeyError, TypeError, OSError):
            pass
    saved = (ckpt.get("wm_policy") or {}).get("config") or {}
    if saved.get("vocab_size") is not None:
        facts["vocab_size"] = int(saved["vocab_size"])
    return facts


def run_record_callback(cfg: DictConfig, identity: dict):
    """A Lightning callback that stores ``{"identity", "facts"}`` in every checkpoint it saves
    (``checkpoint["wm_run"]``), so a checkpoint copied out of its run folder still says what it
    was trained on."""
    import lightning as L

    class RunRecord(L.Callback):
        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            checkpoint["wm_run"] = {"identity": identity,
                                    "facts": data_facts(cfg, trainer.datamodule, pl_module)}

    return RunRecord()
