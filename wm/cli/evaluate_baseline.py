"""``python eval.py ckpt=copy_last_frame``: score a model-free baseline like a checkpoint.

The baseline (``wm.evaluation.baselines``) goes through the same ``evaluate_policy`` as a world
model, on the same held-out clips with the same metrics and reward, so its row in a table reads
directly against the models' (issue #16: the quickstart's "copy last frame" row). Results are
written like a model's evaluation, under ``<runs>/<run>/baselines/``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from wm.cli.evaluate import (_datamodule, _write_result, check_not_empty, claim_out_dir,
                             evaluation_key)
from wm.cli.run_identity import fingerprint


def evaluate_baseline(cfg: DictConfig, cached: bool = False) -> dict:
    """``ckpt=copy_last_frame``: the model-free baseline, scored by the same code as a model
    (``evaluate_policy``) on the same held-out clips; one prediction per clip (it is
    deterministic), results in ``<runs>/<run>/baselines/<name>-<data>-<hash>/`` (the hash
    covers data, task and eval settings and the tokenizer checkpoint's version). ``cached``:
    return that folder's metrics when it holds this very evaluation (the pipeline's reruns)."""
    from wm.evaluation.baselines import build_baseline
    from wm.evaluation.prediction import evaluate_policy

    name = str(cfg.ckpt)
    key = evaluation_key(cfg, Path(name))
    tokenizer = Path(str(cfg.data.task.get("tokenizer_ckpt", "")))
    key.update(ckpt=name, tokenizer_mtime=tokenizer.stat().st_mtime if tokenizer.is_file() else None)
    out_dir = Path(cfg.out_dir) if cfg.get("out_dir") else (
        Path(cfg.paths.runs_dir) / cfg.run_name / "baselines"
        / f"{name}-{cfg.data.name}-{fingerprint(key)[:8]}")
    claim_out_dir(out_dir, key)
    saved = out_dir / "metrics.json"
    if cached and saved.is_file():     # the same evaluation done before (claim_out_dir checked)
        result = json.loads(saved.read_text())
        if result.get("evaluation") == json.loads(json.dumps(key)):
            return result["metrics"]
    dm = _datamodule(cfg)
    check_not_empty(cfg, dm)
    task = instantiate(cfg.data.task, _convert_="all")
    task.connect(dm)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task.to(device)
    summary, _ = evaluate_policy(task, build_baseline(name), dm.val_dataloader(), num_samples=1,
                                 seed=int(cfg.seed), max_batches=cfg.max_batches, device=device,
                                 horizon=int(cfg.get("horizon") or 1))
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"ckpt": name, "data": cfg.data.name, "seed": int(cfg.seed),
              "horizon": int(cfg.get("horizon") or 1), "num_samples": 1, "metrics": summary,
              "evaluation": key}
    _write_result(out_dir, result, name)
    return summary

