"""Two Lightning messages that say nothing about a run, dropped by their text (issue #24).

Every other warning and log line still prints; these two are matched by their opening words:

- the ``💡 Tip: ...`` lines (``litlogger``, ``litmodels``): advertising for Lightning's cloud
  services, logged at INFO on every fit. A filter on Lightning's rank-zero loggers drops them.
- ``Using ModelCheckpoint with manual optimization and every_n_train_steps, but no
  pre-optimization state was saved`` (14 lines, with example ``training_step`` code): printed
  by every GRPO and tokenizer run (both optimize manually). It says that a step's checkpoint
  holds the weights after that step's update, which is what the project wants: a run resumed
  from ``step000020.ckpt`` continues with 20 updates applied. (Lightning's other branch saves
  the weights from before the update only for a module with ``saved_models`` and ``layer``
  attributes, which no stage has.) A warnings filter drops it.
"""
from __future__ import annotations

import logging
import re
import warnings

#: opening words of the warnings that are dropped (``warnings.filterwarnings`` ``message``)
WARNINGS = ("Using ModelCheckpoint with manual optimization and every_n_train_steps, but no "
            "pre-optimization state was saved",)
#: opening words of the log lines that are dropped
TIPS = ("💡 Tip: For seamless cloud",)
#: the loggers Lightning's ``rank_zero_info`` writes to (whichever package set it last)
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero",
                     "lightning.fabric.utilities.rank_zero",
                     "pytorch_lightning.utilities.rank_zero",
                     "lightning_fabric.utilities.rank_zero")


class TipFilter(logging.Filter):
    """Drops a log record whose message starts with one of :data:`TIPS`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIPS)


_TIP_FILTER = TipFilter()


def quiet_lightning() -> None:
    """Install both filters in this process (idempotent)."""
    for text in WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(text), category=UserWarning)
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _TIP_FILTER not in logger.filters:
            logger.addFilter(_TIP_FILTER)
