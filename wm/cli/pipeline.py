"""The one-command quickstart: every stage of the video pipeline, then MLE vs RLVR evaluation.

``python train.py`` (stage=pipeline) composes, for each step, the same config a user would get
from ``python train.py stage=<step> <their overrides>``, so each step is exactly the standalone
stage. A step whose run folder holds ``DONE`` is skipped; an interrupted step resumes from its
``last.ckpt``; evaluations are cached in ``<run>/eval/metrics.json`` (keyed by the whole
evaluation: checkpoint and its version, data, task settings, eval settings; ``_eval_dir``), the
model-free rows in ``<run>/baselines/`` (``evaluate_baseline(cached=True)``, same key with the
tokenizer's version). The final table compares the models on the held-out episodes.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from hydra import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from wm.cli.evaluate import metrics_table
from wm.cli.fit import DONE, fit_stage, last_checkpoint
from wm.evaluation.baselines import BASELINES

log = logging.getLogger(__name__)

#: columns of the final table (those present are shown)
TABLE_KEYS = ["mae", "mse", "psnr", "ssim", "lpips", "stlpips", "repeat", "repeat_truth", "repeat_spurious",
              "reward"]


#: options of the pipeline itself, not passed on to the steps
PIPELINE_KEYS = ("stage.steps", "stage.evaluate", "stage.eval_settings", "stage.open_loop_horizon",
                 "stage.baselines")


def user_overrides() -> list[str]:
    """The command line's overrides, minus the stage selection."""
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # not inside a Hydra app (tests call run_pipeline directly)
        return []
    return [o for o in overrides if not o.lstrip("+~").startswith("stage=")]


def step_config(step: str, overrides: list[str]) -> DictConfig:
    """The config of ``python train.py stage=<step> <overrides>`` (pipeline options dropped)."""
    keep = [o for o in overrides if not o.lstrip("+~").startswith(PIPELINE_KEYS)]
    return compose(config_name="train", overrides=[*keep, f"stage={step}"])


def _eval_config(run_cfg: DictConfig, ckpt: Path | str, out_dir: Path | None, settings: dict):
    """The eval.py config for ``ckpt`` (a checkpoint, or a model-free baseline's name): the
    step's own paths, data, run name, seed and threads (whatever groups or experiments produced
    them), plus the pipeline's evaluation ``settings`` (num_samples, top_k, horizon, ...).
    ``out_dir`` None: eval.py's own choice."""
    cfg = compose(config_name="eval", overrides=[f"ckpt={ckpt}", "out_dir=null" if out_dir is None
                                                 else f"out_dir={out_dir}"])
    with open_dict(cfg):
        for key in ("paths", "data", "run_name", "seed", "num_threads"):
            cfg[key] = run_cfg[key]
        cfg["precision"] = OmegaConf.select(run_cfg, "trainer.precision", default="32-true")
        for k, v in settings.items():
            cfg[k] = v
    return cfg


def _eval_dir(run_dir: Path, folder: str, eval_cfg: DictConfig, ckpt: Path
              ) -> tuple[Path, dict | None]:
    """Where the evaluation ``eval_cfg`` of ``ckpt`` goes, and its metrics when that folder
    already holds this very evaluation (same key: checkpoint, data, task settings such as the
    decoding or the perceptual network, eval settings; same checkpoint version). ``<folder>``
    first; when it holds another evaluation (e.g. before a task setting changed), that one is
    kept and this one goes to ``<folder>-<hash of its key>``."""
    from wm.cli.evaluate import evaluation_key
    from wm.cli.run_identity import fingerprint

    key = json.loads(json.dumps(evaluation_key(eval_cfg, ckpt)))
    candidates = (run_dir / folder, run_dir / f"{folder}-{fingerprint(key)[:8]}")
    for out_dir in candidates:
        path = out_dir / "metrics.json"
        if not path.exists():
            return out_dir, None
        saved = json.loads(path.read_text())
        if saved.get("evaluation") == key:
            fresh = saved.get("ckpt_mtime") == ckpt.stat().st_mtime
            return out_dir, (saved["metrics"] if fresh else None)
    return candidates[-1], None


def _baseline_row(name: str, step: str, overrides: list[str], settings: dict) -> dict:
    """Metrics of ``eval.py ckpt=<name>`` (e.g. copy_last_frame) with the step's data and settings (one
    prediction per clip: it is deterministic), cached under ``<run>/baselines/``."""
    from wm.cli.evaluate_baseline import evaluate_baseline

    step_cfg = step_config(step, overrides)
    return evaluate_baseline(_eval_config(step_cfg, name, None, {**settings, "num_samples": 1}),
                             cached=True)


def run_pipeline(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    """Run ``cfg.stage.steps`` in order, then evaluate ``cfg.stage.evaluate``; returns the table
    rows ``{step: metrics}``. ``overrides`` (default: the command line's) go to every step."""
    from wm.cli.evaluate import evaluate

    overrides = user_overrides() if overrides is None else list(overrides)
    t0 = time.time()
    runs = Path(cfg.paths.runs_dir) / cfg.run_name
    runs.mkdir(parents=True, exist_ok=True)
    timing_file = runs / "pipeline_timing.json"
    timings = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    for i, step in enumerate(cfg.stage.steps, 1):
        step_cfg = step_config(step, overrides)
        done = Path(step_cfg.run_dir) / DONE
        if done.exists():
            print(f"[{i}/{len(cfg.stage.steps)}] {step}: done already ({done}), skipping")
            continue
        resumed = last_checkpoint(Path(step_cfg.run_dir)).exists()
        print(f"[{i}/{len(cfg.stage.steps)}] {step}: {'resuming' if resumed else 'training'} "
              f"in {step_cfg.run_dir}")
        t_step = time.time()
        fit_stage(step_cfg)
        timings[step] = timings.get(step, 0.0) + time.time() - t_step   # adds up across resumes
        timing_file.write_text(json.dumps(timings, indent=2))

    settings = dict(cfg.stage.eval_settings)
    horizon = int(cfg.stage.get("open_loop_horizon") or 1)
    variants = [("eval", settings, "prediction as trained (one response per prompt)")]
    if horizon > 1:
        variants.append((f"eval_open_loop_{horizon}", {**settings, "horizon": horizon},
                         f"open-loop prediction of {horizon} steps"))
    tables, rows, results = [], {}, {}
    for folder, variant, title in variants:
        rows = {}
        for step in cfg.stage.evaluate:
            step_cfg = step_config(step, overrides)
            ckpt = last_checkpoint(Path(step_cfg.run_dir))
            eval_cfg = _eval_config(step_cfg, ckpt, Path(step_cfg.run_dir) / folder, variant)
            out_dir, rows[step] = _eval_dir(Path(step_cfg.run_dir), folder, eval_cfg, ckpt)
            if rows[step] is None:
                print(f"evaluating {step} ({title}): {ckpt}")
                t_step = time.time()
                rows[step] = evaluate(_eval_config(step_cfg, ckpt, out_dir, variant))
                timings[f"{folder}_{step}"] = time.time() - t_step
                timing_file.write_text(json.dumps(timings, indent=2))
        named = {("RLVR (GRPO)" if k == "grpo" else k.upper()): r for k, r in rows.items()}
        if cfg.data.get("modality") == "video":  # the bar to clear and the floor, same clips
            named = {**{BASELINES[b].label: _baseline_row(b, cfg.stage.steps[-1], overrides,
                                                          variant)
                        for b in cfg.stage.get("baselines") or ()}, **named}
        keys = [k for k in TABLE_KEYS if any(k in r for r in named.values())]
        table = metrics_table(named, keys)
        tables.append(f"{title} on held-out episodes (same seeds for every model):\n\n{table}")
        results[folder] = {"title": title, "rows": named}
        if folder == "eval":
            first_rows = rows
    text = "\n\n".join(tables)
    (runs / "comparison.md").write_text(text + "\n")
    (runs / "comparison.json").write_text(json.dumps(results, indent=2))
    print("\n" + text)
    print(f"\nfinished in {(time.time() - t0) / 60:.1f} min; tables saved to {runs / 'comparison.md'}")
    print(f"reward curves: tensorboard --logdir {runs}")
    return first_rows

