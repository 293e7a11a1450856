"""Fit one stage from a composed config: build every object by ``_target_``, then ``trainer.fit``.

Nothing here dispatches on names: the stage config says which LightningModule to build, the
data config which DataModule and Task, the model config which network.

Around the fit, a run folder is kept to one run: its upstream checkpoints must exist and come
from finished runs (:mod:`wm.cli.upstream`), one training at a time holds it
(:mod:`wm.cli.run_lock`), and a resume must have the run's identity (:mod:`wm.cli.run_identity`);
every checkpoint records that identity and its data's facts. ``DONE`` marks a finished run.

A run that ran no validation (``stage.max_steps`` below ``stage.val_check_interval``, said in
one line at start) is validated once at the end, so a finished run has its ``val/`` numbers.
"""
from __future__ import annotations

import json
import logging
import os
from contextlib import nullcontext
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from wm.cli.upstream import DONE  # noqa: F401  (re-exported: the pipeline reads it from here)

log = logging.getLogger(__name__)


def threads_for(cfg: DictConfig) -> int | None:
    """The torch thread count ``num_threads`` asks for; None = leave torch's default.

    ``auto`` (the default): 1 per process on CPU (each DDP rank is a process), torch's default on
    GPU, where the CPU only feeds the device. On a 2-core machine that runs anything else,
    torch's one-thread-per-core default makes every small matmul wait for a descheduled thread
    (docs/benchmarks.md, "threads"); tiny models are faster on one thread even on an idle box.
    """
    n = cfg.get("num_threads", "auto")
    if n in (None, "torch"):
        return None
    if n == "auto":
        trainer = cfg.get("trainer") or {}
        accelerator = str(trainer.get("accelerator", "cpu")) if hasattr(trainer, "get") else "cpu"
        return None if accelerator in ("gpu", "cuda", "mps", "tpu") else 1
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise ValueError(f"num_threads={n!r}: use auto, torch, or a positive integer") from None
    if n < 1:
        raise ValueError(f"num_threads={n}: use auto, torch, or a positive integer")
    return n


def configure_threads(cfg: DictConfig) -> None:
    """Apply ``num_threads`` (see :func:`threads_for`)."""
    n = threads_for(cfg)
    if n is not None:
        torch.set_num_threads(n)


def last_checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def resumed_last_callback(ckpt: Path):
    """A callback that keeps a resumed run saving into the ``last.ckpt`` it resumed from.

    Lightning's ModelCheckpoint writes ``last-v1.ckpt`` beside an existing ``last.ckpt`` that its
    restored state does not name as its own: after the run folder moved (it drops that state
    when its folder's path changed) or when ``last.ckpt`` is a copied step checkpoint (the fix
    :mod:`wm.cli.resume_checkpoint` gives). The next resume would then rewind to the old file.
    """
    import lightning as L

    class ResumedLast(L.Callback):
        def on_train_start(self, trainer, pl_module):   # after the callbacks' state is restored
            for cb in trainer.checkpoint_callbacks:
                last = cb.format_checkpoint_name({}, cb.CHECKPOINT_NAME_LAST) \
                    if getattr(cb, "save_last", False) and cb.dirpath else None
                if last and os.path.realpath(last) == os.path.realpath(ckpt):
                    cb.last_model_path = last

    return ResumedLast()


def build_trainer(cfg: DictConfig, extra_callbacks=(), **overrides):
    """The Lightning Trainer with the configured logger and callbacks (then ``extra_callbacks``;
    a progress bar gets :func:`wm.cli.progress.resumed_rate_callback` after it)."""
    from wm.cli.progress import resumed_rate_callback

    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    callbacks = []
    for name, cb_cfg in (cfg.get("callbacks") or {}).items():
        if name == "lr_monitor" and not logger:
            continue  # LearningRateMonitor needs a logger
        if name == "progress_bar" and not cfg.trainer.get("enable_progress_bar", True):
            continue  # Lightning refuses a progress-bar callback when bars are disabled
        callbacks.append(instantiate(cb_cfg))
        if name == "progress_bar":
            callbacks.append(resumed_rate_callback())
    callbacks.extend(extra_callbacks)
    return instantiate(cfg.trainer, logger=logger, callbacks=callbacks, **overrides)


def validation_counter():
    """A callback counting the validation loops a fit ran (``.runs``; sanity checks aside)."""
    import lightning as L

    class ValidationCounter(L.Callback):
        runs = 0

        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.runs += 1

    return ValidationCounter()


def announce_short_run(cfg: DictConfig) -> None:
    """Say in one line when ``stage.max_steps`` is below ``stage.val_check_interval``: no
    validation would run during training, so :func:`_fit` validates once at the end."""
    steps, every = cfg.stage.get("max_steps"), cfg.stage.get("val_check_interval")
    if cfg.stage.get("limit_val_batches") == 0:
        return                                          # validation is switched off
    if isinstance(steps, int) and isinstance(every, int) and 0 < steps < every:
        log.info("stage.max_steps=%d < stage.val_check_interval=%d: no validation during "
                 "training, validating once at the end (lower stage.val_check_interval to "
                 "validate during it)", steps, every)


def fit_stage(cfg: DictConfig) -> dict:
    """Train ``cfg.stage`` on ``cfg.data``; resume from ``<run_dir>/checkpoints/last.ckpt``.

    Refuses, each with one line and before anything is built: an existing run with
    ``resume=false``; a missing upstream checkpoint or one from an unfinished run
    (:func:`wm.cli.upstream.check_upstream`); a run folder held by another live training
    (:class:`wm.cli.run_lock.RunLock`); a ``last.ckpt`` that cannot be read (naming the newest
    readable checkpoint beside it, :func:`wm.cli.resume_checkpoint.check_resume_checkpoint`); a
    resume with other settings than the run's (:func:`wm.cli.run_identity.check_run_identity`).

    Returns the final logged metrics (floats) and writes them to ``<run_dir>/DONE``.
    """
    from wm.cli.progress import single_log_output
    from wm.cli.resume_checkpoint import check_resume_checkpoint
    from wm.cli.run_identity import (check_run_identity, new_run_override, run_identity,
                                     run_record_callback)
    from wm.cli.run_lock import RunLock, launcher_process
    from wm.cli.upstream import check_upstream

    single_log_output()
    configure_threads(cfg)
    run_dir = Path(cfg.run_dir)
    ckpt = last_checkpoint(run_dir)
    if ckpt.exists() and not cfg.resume:
        raise SystemExit(f"{ckpt} exists and resume=false: pass resume=true to continue that run, "
                         f"or run_dir=<new folder> to start another one (nothing was overwritten)")
    check_upstream(cfg)
    launcher = launcher_process()
    lock = RunLock(run_dir, new_run=new_run_override(cfg, run_identity(cfg))) if launcher \
        else nullcontext()
    with lock:
        check_resume_checkpoint(ckpt)         # after the lock: no training is writing it now
        identity = check_run_identity(cfg, run_dir, write=launcher,
                                      has_progress=ckpt.exists() or (run_dir / DONE).exists())
        if launcher:
            (run_dir / DONE).unlink(missing_ok=True)   # a continued run is unfinished again
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=False))
        return _fit(cfg, run_dir, ckpt, run_record_callback(cfg, identity))


def _fit(cfg: DictConfig, run_dir: Path, ckpt: Path, record) -> dict:
    """Build the DataModule, the stage's module and the Trainer; fit; export; write ``DONE``."""
    import lightning as L

    L.seed_everything(int(cfg.seed), workers=True)

    datamodule = instantiate(cfg.data.datamodule, _convert_="all")
    module = instantiate(cfg.stage.module, _convert_="all")
    resume_from = str(ckpt) if ckpt.exists() else None
    extra = [record, resumed_last_callback(ckpt)] if resume_from else [record]
    validated = validation_counter()
    trainer = build_trainer(cfg, extra_callbacks=[*extra, validated])
    if resume_from:
        log.info("resuming %s from %s", cfg.stage.name, resume_from)
    announce_short_run(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    if trainer.interrupted:
        raise SystemExit(f"{cfg.stage.name} interrupted; progress is in {ckpt}. Run the same "
                         "command again to resume.")
    logged = dict(trainer.callback_metrics)       # validate() below starts a fresh dict
    if not validated.runs and trainer.global_step > 0:   # a run shorter than its val interval
        trainer.validate(module, datamodule=datamodule, verbose=False)
    if hasattr(module, "export") and trainer.is_global_zero:
        module.export(run_dir / "export", checkpoint=ckpt if ckpt.exists() else None)
    metrics = {k: float(v) for k, v in {**logged, **trainer.callback_metrics}.items()
               if getattr(v, "numel", lambda: 1)() == 1}
    if trainer.is_global_zero:
        (run_dir / DONE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics
