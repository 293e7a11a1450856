"""eval.py's body: evaluate a tokenizer or world-model checkpoint on the held-out split.

What is evaluated follows from the checkpoint's contents (a world-model checkpoint carries a
``wm_policy`` entry written by the MLE/GRPO stages; a tokenizer checkpoint its tokenizer
config), so one command serves every stage.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from wm.cli.fit import configure_threads
from wm.utils.checkpoints import load_checkpoint_file
from wm.vision.registry import looks_like_hub_id

log = logging.getLogger(__name__)


def metrics_table(rows: dict[str, dict[str, float]], keys: list[str] | None = None) -> str:
    """Markdown table: one row per model, one column per metric (4 significant digits)."""
    keys = keys or sorted({k for r in rows.values() for k in r})
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, r in rows.items():
        cells = [f"{r[k]:.4g}" if k in r else "—" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def default_out_dir(ckpt: Path) -> Path:
    """``runs/<data>/<stage>/checkpoints/x.ckpt`` -> ``runs/<data>/<stage>/eval``."""
    return ckpt.parent.parent / "eval" if ckpt.parent.name == "checkpoints" else ckpt.parent / "eval"


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
    configure_threads(cfg)
    path = Path(cfg.ckpt)
    if not path.exists() and looks_like_hub_id(str(cfg.ckpt)):   # a released model by hub id
        from wm.vision.released.io import resolve_checkpoint

        path = resolve_checkpoint(cfg.ckpt)
    if not path.exists():
        raise SystemExit(f"ckpt={path}: no such file. Train it first, e.g. "
                         f"`python train.py stage=mle data={cfg.data.name}`")
    if cfg.get("out_dir"):
        out_dir = Path(cfg.out_dir)
    elif path.is_dir():   # a released / exported folder (maybe in the hub cache): under runs/
        out_dir = Path(cfg.paths.runs_dir) / "eval" / path.name
    else:
        out_dir = default_out_dir(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ckpt = load_checkpoint_file(path, weights_only=False) if path.is_file() else {}
    dm = _datamodule(cfg)

    released_tokenizer = path.is_dir() and (path / "diffusion_pytorch_model.safetensors").is_file()
    if released_tokenizer:
        summary = _evaluate_tokenizer(cfg, path, dm, device)
    elif "wm_policy" in ckpt or path.is_dir():
        summary = _evaluate_world_model(cfg, path, ckpt, dm, device, out_dir)
    elif "tokenizer_config" in ckpt:
        summary = _evaluate_tokenizer(cfg, path, dm, device)
    else:
        raise SystemExit(f"ckpt={path} is neither a tokenizer nor a world-model checkpoint of "
                         "this project (no 'tokenizer_config' or 'wm_policy' entry)")

    result = {"ckpt": str(path), "ckpt_mtime": path.stat().st_mtime,
              "data": cfg.data.name, "seed": int(cfg.seed), "horizon": int(cfg.get("horizon") or 1),
              "num_samples": int(cfg.get("num_samples", 1)), "metrics": summary}
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    table = metrics_table({path.parent.parent.name or str(path): summary})
    (out_dir / "metrics.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {out_dir / 'metrics.json'}")
    return summary


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
    policy = task.build_policy(None, init=str(path))
    task.to(device)
    policy.to(device)
    summary, first = evaluate_policy(
        task, policy, dm.val_dataloader(), num_samples=int(cfg.num_samples),
        temperature=float(cfg.temperature), top_k=cfg.top_k, seed=int(cfg.seed),
        max_batches=cfg.max_batches, device=device, horizon=int(cfg.get("horizon") or 1))
    if first is not None and hasattr(task, "save_samples"):
        for f in task.save_samples(*first, out_dir=out_dir, rows=int(cfg.num_strips),
                                   group_size=int(cfg.num_samples)):
            log.info("wrote %s", f)
    return summary
