"""eval.py's body: evaluate a tokenizer or world-model checkpoint on the held-out split.

What is evaluated follows from the checkpoint's contents (a world-model checkpoint carries a
``wm_policy`` entry written by the MLE/GRPO stages; a tokenizer checkpoint its tokenizer
config), so one command serves every stage. A Hugging Face hub id or a released folder works too.

Nothing is scored silently on the wrong thing. Before any work: a checkpoint whose data facts
(modality, action dimension, frame size, context frames; recorded by the training in every
checkpoint, :mod:`wm.cli.run_identity`) differ from the data's is refused; a checkpoint trained on
other data (its run identity's data settings) is refused unless ``allow_other_data=true``; an
empty held-out split is refused, naming the option that makes one. Results go to a folder named
by what was evaluated, ``<run>/eval/<checkpoint>-<data>-<hash of checkpoint version, data and
settings>/``, and an ``out_dir`` that holds another evaluation's results is never overwritten.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from wm.cli.fit import configure_threads
from wm.cli.evaluate_checks import (EvaluationRefused, _empty_split_fix, _fact,
                                    _recorded_identity, check_facts, check_not_empty,
                                    check_same_data)
from wm.cli.run_identity import (checkpoint_facts, data_identity, describe_difference,
                                 differences, fingerprint)
from wm.cli.upstream import MissingCheckpointError, run_folder, train_command
from wm.evaluation.baselines import BASELINES
from wm.utils.checkpoints import load_checkpoint_file
from wm.utils.hub import looks_like_hub_id

log = logging.getLogger(__name__)

#: eval.py options that change the numbers (part of an evaluation's name)
SETTINGS = ("seed", "num_samples", "horizon", "temperature", "top_k", "max_batches", "batch_size")




def metrics_table(rows: dict[str, dict[str, float]], keys: list[str] | None = None) -> str:
    """Markdown table: one row per model, one column per metric (4 significant digits)."""
    keys = keys or sorted({k for r in rows.values() for k in r})
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, r in rows.items():
        cells = [f"{r[k]:.4g}" if k in r else "—" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluation_key(cfg: DictConfig, path: Path) -> dict:
    """What an evaluation is: the checkpoint (path), the data (its identity and task settings,
    the checkpoint's own tokenizer aside) and eval.py's settings."""
    task = OmegaConf.to_container(cfg.data.task, resolve=True) if cfg.data.get("task") else {}
    task.pop("tokenizer_ckpt", None)
    return {"ckpt": str(path.resolve()), "data": data_identity(cfg), "task": task,
            "settings": {k: OmegaConf.select(cfg, k, default=None) for k in SETTINGS}
            | _precision_setting(cfg)}


def _precision_setting(cfg: DictConfig) -> dict:
    """``{"precision": ...}`` when the evaluation samples under autocast (bf16 changes the
    numbers), else nothing (the keys of full-precision evaluations stay as they were)."""
    from wm.utils.precision import autocast_dtype

    precision = cfg.get("precision")
    return {"precision": str(precision)} if autocast_dtype(precision) is not None else {}


def default_out_dir(cfg: DictConfig, path: Path, key: dict) -> Path:
    """``<run>/eval/<checkpoint>-<data>-<hash>``: the hash covers the checkpoint's version
    (modification time), the data and the settings, so no two evaluations share a folder.
    A released folder or hub id (no run folder): ``runs/eval/<its name>/<data>-<hash>``."""
    version = path.stat().st_mtime if path.exists() else None
    tag = fingerprint({**key, "ckpt_mtime": version})[:8]
    if path.is_dir():
        return Path(cfg.paths.runs_dir) / "eval" / path.name / f"{cfg.data.name}-{tag}"
    base = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return base / "eval" / f"{path.stem}-{cfg.data.name}-{tag}"


def claim_out_dir(out_dir: Path, key: dict) -> None:
    """Refuse an ``out_dir`` whose ``metrics.json`` belongs to another evaluation (same key =
    the same evaluation again, e.g. of an updated checkpoint: its files are replaced)."""
    saved_path = out_dir / "metrics.json"
    if not saved_path.is_file():
        return
    try:
        saved = json.loads(saved_path.read_text())
    except ValueError:
        saved = {}
    other = saved.get("evaluation")
    if other is None:                        # written before evaluations had keys
        same = saved.get("ckpt") in (None, key["ckpt"], str(Path(key["ckpt"]).name)) or \
            Path(str(saved.get("ckpt"))).resolve() == Path(key["ckpt"])
        if same:
            return
        other = {"ckpt": saved.get("ckpt")}
    flat_saved, flat_key = _flatten(other), _flatten(key)
    diff = differences(flat_saved, flat_key)
    if diff:
        raise EvaluationRefused(
            f"out_dir={out_dir} holds the results of another evaluation "
            f"({describe_difference(flat_saved, flat_key, diff)}): pass another out_dir, or "
            "`out_dir=null` for a folder named by what is evaluated (nothing was overwritten)")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and k in ("data", "settings", "task") and not prefix:
            out.update(_flatten(v, f"{k}."))
        else:
            out[name] = v
    return out


def _datamodule(cfg: DictConfig):
    kwargs = {"batch_size": int(cfg.batch_size)} if cfg.get("batch_size") else {}
    if int(cfg.get("horizon") or 1) > 1:   # open-loop clips: context + horizon frames
        kwargs["future_frames"] = int(cfg.horizon)
    dm = instantiate(cfg.data.datamodule, _convert_="all", **kwargs)
    dm.prepare_data()
    dm.setup("validate")
    return dm


def evaluate(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.ckpt``; returns the summary dict and writes it under ``out_dir``."""
    from wm.cli.progress import single_log_output

    single_log_output()
    configure_threads(cfg)
    if str(cfg.ckpt) in BASELINES:
        from wm.cli.evaluate_baseline import evaluate_baseline

        return evaluate_baseline(cfg)
    path = Path(cfg.ckpt)
    if not path.exists() and looks_like_hub_id(str(cfg.ckpt)):   # a released model by hub id
        from wm.vision.released.io import resolve_checkpoint

        path = resolve_checkpoint(cfg.ckpt)
    if not path.exists():
        raise MissingCheckpointError(f"ckpt={path}: no such file. Train it first: "
                                     f"`{train_command(path, cfg)}`, or pass an existing ckpt")
    key = evaluation_key(cfg, path)
    out_dir = Path(cfg.out_dir) if cfg.get("out_dir") else default_out_dir(cfg, path, key)
    claim_out_dir(out_dir, key)
    ckpt = load_checkpoint_file(path, weights_only=False) if path.is_file() else {}
    released_tokenizer = path.is_dir() and (path / "diffusion_pytorch_model.safetensors").is_file()
    is_tokenizer = released_tokenizer or ("tokenizer_config" in ckpt and "wm_policy" not in ckpt)
    if not (is_tokenizer or "wm_policy" in ckpt or path.is_dir()):
        raise EvaluationRefused(f"ckpt={path} is neither a tokenizer nor a world-model checkpoint "
                                "of this project (no 'tokenizer_config' or 'wm_policy' entry)")
    dm = _datamodule(cfg)
    recorded = _recorded_identity(path, ckpt)
    check_facts(cfg, path, ckpt, dm, tokenizer=is_tokenizer)
    check_not_empty(cfg, dm, recorded)
    check_same_data(cfg, path, recorded)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    if is_tokenizer:
        summary = _evaluate_tokenizer(cfg, path, dm, device)
    else:
        summary = _evaluate_world_model(cfg, path, ckpt, dm, device, out_dir)
    if summary.get("num_predictions", 1) == 0:
        raise EvaluationRefused(f"ckpt={path}: nothing was evaluated (num_predictions 0); "
                                + _empty_split_fix(cfg, recorded) + " (no metrics were written)")

    result = {"ckpt": str(path), "ckpt_mtime": path.stat().st_mtime,
              "data": cfg.data.name, "seed": int(cfg.seed), "horizon": int(cfg.get("horizon") or 1),
              "num_samples": int(cfg.get("num_samples", 1)), "metrics": summary,
              "evaluation": key}
    _write_result(out_dir, result, checkpoint_label(path, str(cfg.ckpt)))
    return summary


def checkpoint_label(path: Path, given: str | None = None) -> str:
    """The table row's name: ``<family>/<stage> <file>`` for a run's
    ``<family>/<stage>/checkpoints/<file>.ckpt`` (``x/grpo step000100``), ``<folder>/<file>`` for
    another checkpoint file or a model folder (an export), and a hub id as given (``given``:
    ``cfg.ckpt``; not its cache path)."""
    if given and looks_like_hub_id(given) and not Path(given).exists():
        return given
    run = run_folder(path)
    if run is not None:
        return f"{run.parent.name}/{run.name} {path.stem}".lstrip("/")
    return f"{path.parent.name}/{path.stem}".lstrip("/")


#: the count each summary carries (world model, tokenizer) and what it counts
COUNTS = {"num_predictions": "held-out predictions", "frames": "held-out frames"}


def _write_result(out_dir: Path, result: dict, label: str) -> None:
    """metrics.json, and metrics.md (printed too): the table with the count N as its first
    column and ``N = <n> <what>`` under it, so a number is never read without its sample size."""
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    metrics = result["metrics"]
    count = next((k for k in COUNTS if k in metrics), None)
    keys = sorted(metrics) if count is None else [count] + sorted(set(metrics) - {count})
    table = metrics_table({label: metrics}, keys)
    if count is not None:
        table += f"\n\nN = {metrics[count]:.0f} {COUNTS[count]} ({count})"
    (out_dir / "metrics.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {out_dir / 'metrics.json'}")


def _evaluate_tokenizer(cfg, path: Path, dm, device) -> dict:
    from wm.evaluation.recon import reconstruction_metrics
    from wm.vision.registry import load_tokenizer

    tokenizer = load_tokenizer(path).to(device).eval()
    perceptual = instantiate(cfg.data.task.get("perceptual")) if cfg.data.get("task") else None
    return reconstruction_metrics(tokenizer, dm.val_dataloader(), perceptual=perceptual,
                                  n_context=int(cfg.data.context_frames),
                                  max_batches=cfg.get("max_batches"))


def _evaluate_world_model(cfg, path: Path, ckpt: dict, dm, device, out_dir: Path) -> dict:
    from wm.evaluation.prediction import evaluate_policy

    task_kwargs = (ckpt.get("wm_policy") or {}).get("task_kwargs", {})
    task = instantiate(cfg.data.task, _convert_="all", **task_kwargs)
    task.connect(dm)
    want = checkpoint_facts(ckpt).get("vocab_size") if ckpt else None
    have = getattr(getattr(task, "vocab", None), "vocab_size", None)
    if want is not None and have is not None and want != have:
        raise EvaluationRefused(
            f"ckpt={path} was trained with {_fact('vocab_size', want)} but its tokenizer and "
            f"data.task layout give {have} (data.task.layout, data.task.action_bins, "
            "data.task.visual_order): evaluate it with the settings it was trained with")
    policy = task.build_policy(None, init=str(path))
    if getattr(task, "tokenizer", None) is not None:
        # a text task has its tokenizer only now: connect again, so the held-out records get
        # the training run's length filter (counted in the log), not every record unchecked
        task.connect(dm)
    task.to(device)
    policy.to(device)
    from wm.utils.precision import autocast, fp32_logits

    fp32_logits(policy)          # as in training: float32 logits under autocast
    with autocast(cfg.get("precision"), device):     # precision=bf16-mixed: bf16 sampling
        summary, first = evaluate_policy(
            task, policy, dm.val_dataloader(), num_samples=int(cfg.num_samples),
            temperature=float(cfg.temperature), top_k=cfg.top_k, seed=int(cfg.seed),
            max_batches=cfg.max_batches, device=device, horizon=int(cfg.get("horizon") or 1))
    if first is not None and hasattr(task, "save_samples"):
        for f in task.save_samples(*first, out_dir=out_dir, rows=int(cfg.num_strips),
                                   group_size=int(cfg.num_samples)):
            log.info("wrote %s", f)
    return summary
