"""eval.py's refusals, each one line before any work: a checkpoint whose recorded data facts
differ from the data's, a checkpoint trained on other data (unless ``allow_other_data=true``),
an empty held-out split (naming the option and value that make one)."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from wm.cli.run_identity import (checkpoint_facts, data_facts, data_identity,
                                 describe_difference, differences, read_identity)
from wm.cli.upstream import run_folder


class EvaluationRefused(SystemExit):
    """An evaluation that would score the wrong thing or nothing (one line to print)."""


# ------------------------------------------------------------------------ refusals (one line)
def _data_where(cfg: DictConfig) -> str:
    for k in ("root", "path"):
        if cfg.data.get(k):
            return f"data={cfg.data.name} (data.{k}={cfg.data[k]})"
    return f"data={cfg.data.name}"


FACT_TEXT = {"modality": "{} data", "action_dim": "{}-d actions", "frame_size": "{} frames",
             "context_frames": "{} context frames", "vocab_size": "a {}-id vocabulary"}
FACT_OPTION = {"modality": "data", "action_dim": "data.root", "frame_size": "data.resolution",
               "context_frames": "data.context_frames", "vocab_size": "data.task.tokenizer_ckpt"}


def _fact(key: str, value) -> str:
    if key == "frame_size":
        value = "x".join(str(v) for v in value)
    return FACT_TEXT[key].format(value)


def check_facts(cfg: DictConfig, path: Path, ckpt: dict, dm, tokenizer: bool) -> None:
    """Refuse a checkpoint whose recorded data facts differ from the data's (before any work)."""
    want = checkpoint_facts(ckpt) if ckpt else {}
    have = data_facts(cfg, dm)
    keys = ("modality", "frame_size") if tokenizer else \
        ("modality", "action_dim", "frame_size", "context_frames")
    for k in keys:
        if k in want and k in have and want[k] != have[k]:
            recorded = ((ckpt.get("wm_run") or {}).get("identity") or {})
            own = next((f" (its data: {n}={recorded[n]})" for n in ("data.root", "data.path")
                        if recorded.get(n)), "")
            raise EvaluationRefused(
                f"ckpt={path} was trained on {_fact(k, want[k])} but {_data_where(cfg)} has "
                f"{_fact(k, have[k])} ({FACT_OPTION[k]}): evaluate it on data like its own{own}; "
                "nothing was evaluated")


def _recorded_identity(path: Path, ckpt: dict) -> dict | None:
    run = (ckpt.get("wm_run") or {}).get("identity")
    if run:
        return run
    folder = run_folder(path) if path.is_file() else None
    return read_identity(folder) if folder is not None else None


def check_same_data(cfg: DictConfig, path: Path, recorded: dict | None) -> None:
    """Refuse to score a checkpoint on other data than its run's (``recorded``: its run
    identity), unless ``allow_other_data=true``."""
    if not recorded or cfg.get("allow_other_data"):
        return
    current = data_identity(cfg)
    diff = differences(recorded, current, keys=[k for k in current if k in recorded])
    if diff:
        raise EvaluationRefused(
            f"ckpt={path} was trained on other data: "
            f"{describe_difference(recorded, current, diff)}; "
            "evaluate it with its run's data settings, or pass `allow_other_data=true` to score "
            "it on this data on purpose (results are named by the data)")


def _empty_split_fix(cfg: DictConfig, recorded: dict | None = None) -> str:
    """What makes the held-out split non-empty: the option and a value (the training's when
    the run recorded one)."""
    dmc = cfg.data.get("datamodule") or {}
    world = dmc.get("world") or {}
    if cfg.get("max_batches") == 0:
        return "max_batches=0 evaluates nothing: pass `max_batches=null` (the whole split)"
    if "val_every" in dmc:
        trained = (recorded or {}).get("data.datamodule.val_every")
        every = trained if isinstance(trained, int) and trained > 0 else 10
        source = "the value the model was trained with" if every == trained else \
            "use the value the model was trained with"
        return (f"data.datamodule.val_every={dmc.val_every} holds out no episode of "
                f"{_data_where(cfg)}: pass `data.datamodule.val_every={every}` (episode i is held "
                f"out when i % {every} == 0; {source})")
    if "val_fraction" in world:
        return (f"{_data_where(cfg)} has no held-out record: pass "
                "`data.datamodule.world.val_fraction=0.2` or data.datamodule.world.val_path=<file>")
    if "toy_val" in world:
        return "the toy world has no held-out record: pass `data.datamodule.world.toy_val=32`"
    return f"the held-out split of {_data_where(cfg)} is empty: give it examples"


def check_not_empty(cfg: DictConfig, dm, recorded: dict | None = None) -> None:
    """Refuse an evaluation with nothing to evaluate (an empty held-out split)."""
    loader = dm.val_dataloader()
    empty = cfg.get("max_batches") == 0
    try:
        empty = empty or len(loader) == 0
    except TypeError:
        pass                             # a stream without a length: counted after the run
    if empty:
        raise EvaluationRefused(f"ckpt={cfg.ckpt}: nothing to evaluate; "
                                f"{_empty_split_fix(cfg, recorded)}")
