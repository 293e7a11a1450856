"""Console output of a training: each log line once, and a true rate on a resumed run's bar.

- :func:`single_log_output`: the ``lightning`` package adds its own console handler
  (``INFO: ...``) to its logger and still passes every record on to the root logger, where
  Hydra's handler prints it again (``[time][lightning...][INFO] - ...``): every INFO line
  appeared twice. When the root logger has a handler, Lightning's own is removed, so each line
  is printed once, in Hydra's format, and still reaches Hydra's log file. It also drops
  Lightning's cloud tips and its manual-optimization example warning (:mod:`wm.cli.quiet`).
- :class:`ResumedRate`: Lightning's TQDM bar restarts a resumed epoch at the restored batch count
  with ``initial=0``, so tqdm's average rate ``(n - initial) / elapsed`` counts the restored
  steps as if they had just been run (a run resumed at step 1000 shows 1000 it/s). This callback,
  placed after the bar, sets the bar's ``initial`` (and its clock) to the restored count at the
  first batch: the rate counts only the steps of this process.
"""
from __future__ import annotations

import logging

from wm.cli.quiet import quiet_lightning

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
                     "lightning_fabric")


def single_log_output() -> None:
    """Drop Lightning's console handlers when the root logger prints (see the module docstring)."""
    import lightning  # noqa: F401  (adds its handler at import: import first, then remove)

    quiet_lightning()
    if not logging.getLogger().handlers:
        return                       # nothing else prints: keep Lightning's own output
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:   # the library's console handler only
                logger.removeHandler(handler)
        logger.propagate = True


def resumed_rate_callback():
    """A callback that makes the train bar's rate count only this process's steps."""
    import lightning as L

    class ResumedRate(L.Callback):
        def __init__(self):
            self.first = True

        def on_train_start(self, trainer, pl_module) -> None:
            self.first = True

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.first = True

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if not self.first:
                return
            self.first = False
            bar_cb = trainer.progress_bar_callback
            bar = getattr(bar_cb, "train_progress_bar", None) if bar_cb is not None else None
            if bar is None or getattr(bar, "disable", True) or batch_idx <= bar.initial:
                return
            # resumed at batch ``batch_idx`` of this epoch: those batches ran in another process
            bar.initial = bar.n = bar.last_print_n = int(batch_idx)
            bar.start_t = bar.last_print_t = bar._time()
            bar.refresh()

    return ResumedRate()
