"""Checkpoints a stage starts from (its *upstream*), and the command that makes a checkpoint.

A video MLE/GRPO stage reads the tokenizer stage's checkpoint (``data.task.tokenizer_ckpt``), a
GRPO stage the MLE stage's (``stage.module.init_policy``). Before anything is built,
:func:`check_upstream` makes sure each such file exists, else one line with the command that
trains it, and that it comes from a *finished* run: a checkpoint inside a run folder of this
project (``<run>/checkpoints/x.ckpt`` next to ``<run>/config.yaml``) whose run has no ``DONE``
is refused unless ``allow_unfinished_upstream=true`` (a tokenizer whose training stopped
half-way would silently define the world model's whole vocabulary of frames).

:func:`train_command` builds the command for a checkpoint path from the path itself (the stage
is the run folder's name, the run family its parent) and the dataset config actually selected
(``data=`` as Hydra chose it, never a placeholder or a name without a config file).
"""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from wm.utils.hub import looks_like_hub_id

CONF = Path(__file__).resolve().parents[2] / "conf"
DONE = "DONE"

#: (key the user overrides, where a composed train config holds it, stage that writes it)
UPSTREAM = (
    ("data.task.tokenizer_ckpt", "stage.module.task.tokenizer_ckpt", "tokenizer"),
    ("stage.module.init_policy", "stage.module.init_policy", "mle"),
)


class UnfinishedUpstreamError(SystemExit):
    """An upstream checkpoint comes from a run without ``DONE`` (one line to print)."""


class MissingCheckpointError(FileNotFoundError):
    """A checkpoint a stage or an evaluation needs does not exist (one line: the command)."""


def _choice(group: str) -> str | None:
    """The option Hydra selected for a config group (None outside a Hydra app)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.choices.get(group)
    except (ImportError, ValueError, AttributeError):
        return None


def _user_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError, AttributeError):
        return []


def data_choice(cfg: DictConfig) -> str:
    """``data=<name>`` of a real config file: Hydra's choice, else ``data.name`` when
    ``conf/data/<name>.yaml`` exists, else a placeholder saying what to put."""
    name = _choice("data") or str(OmegaConf.select(cfg, "data.name", default="") or "")
    return name if (CONF / "data" / f"{name}.yaml").is_file() else "<your data config>"


def run_folder(ckpt: Path) -> Path | None:
    """``<run>`` for ``<run>/checkpoints/<file>``; None when the path is not laid out so."""
    ckpt = Path(ckpt)
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None


def is_project_run(folder: Path | None) -> bool:
    """Whether a folder is a run folder written by ``wm.cli.fit`` (it has ``config.yaml``)."""
    return folder is not None and (folder / "config.yaml").is_file()


def train_command(ckpt: str | Path, cfg: DictConfig, default_stage: str = "mle") -> str:
    """The ``python train.py ...`` command that writes ``ckpt``: its stage from the run folder
    name (``runs/<family>/<stage>/checkpoints/x.ckpt``), the selected ``data=`` config, the run
    family (``experiment=`` when an experiment of that name exists, else ``run_name=``) and
    ``paths.runs_dir`` when the checkpoint lies elsewhere than the default runs folder."""
    ckpt = Path(ckpt)
    run = run_folder(ckpt)
    stage = default_stage
    if run is not None and (CONF / "stage" / f"{run.name}.yaml").is_file():
        stage = run.name
    parts = ["python train.py", f"stage={stage}"]
    data = data_choice(cfg)
    family = run.parent.name if run is not None and stage == run.name else None
    experiment = _choice("experiment")
    if family and (CONF / "experiment" / f"{family}.yaml").is_file():
        parts.append(f"experiment={family}")
    else:
        if experiment:
            parts.append(f"experiment={experiment}")
        parts.append(f"data={data}")
        if family and family != data:      # run_name defaults to the data config's name
            parts.append(f"run_name={family}")
    for o in _user_overrides():
        if o.startswith(("data.root=", "data.path=")):
            parts.append(o)
    if family and os.path.abspath(run.parent.parent) != os.path.abspath(_default_runs_dir()):
        parts.append(f"paths.runs_dir={run.parent.parent}")
    return " ".join(parts)


def _default_runs_dir() -> str:
    """``paths.runs_dir`` without an override (conf/paths/default.yaml)."""
    return os.environ.get("WM_RUNS_DIR") or os.path.join(os.environ.get("WM_ROOT", "."), "runs")


def check_upstream(cfg: DictConfig) -> None:
    """Every upstream checkpoint of ``cfg``'s stage exists and comes from a finished run (or
    ``allow_unfinished_upstream=true``); else one line naming the file, its run and the fix."""
    allow = bool(OmegaConf.select(cfg, "allow_unfinished_upstream", default=False))
    for name, key, stage in UPSTREAM:
        value = OmegaConf.select(cfg, key, default=None)
        if not value:
            continue
        path = Path(str(value))
        if not path.exists():
            if looks_like_hub_id(str(value)):
                continue                   # a released model by hub id (downloaded when built)
            raise MissingCheckpointError(
                f"{name}={path}: no such checkpoint. Train it first: "
                f"`{train_command(path, cfg, default_stage=stage)}`, or set {name} to an "
                "existing file")
        run = run_folder(path) if path.is_file() else None
        if is_project_run(run) and not (run / DONE).exists() and not allow:
            raise UnfinishedUpstreamError(
                f"{name}={path} comes from {run}, a run that has not finished (no {run / DONE}): "
                "finish it (rerun its command, which resumes) or pass "
                "`allow_unfinished_upstream=true` to use the checkpoint as it is")
