"""A training prints no Lightning advertising and no Lightning example code (issue #24, item 10).

Before: every run printed Lightning's "💡 Tip: ... litlogger" line, and every GRPO (and
tokenizer) run a 14-line warning with example ``training_step`` code (ModelCheckpoint with
manual optimization). ``wm.cli.quiet`` drops exactly those, by message; other warnings and
Lightning's other INFO lines still print.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANUAL_OPT = ("Using ModelCheckpoint with manual optimization and every_n_train_steps, but no "
              "pre-optimization state was saved. The checkpoint will contain the model state "
              "AFTER optimization. Example:\ndef training_step(self, batch, batch_idx):\n")


def test_a_fit_prints_no_tip_and_no_example_code(tmp_path):
    common = ["data=toy_text", "model=lm_tiny", f"paths.runs_dir={tmp_path / 'runs'}",
              f"hydra.run.dir={tmp_path / 'hydra'}", "trainer.enable_progress_bar=false",
              "num_threads=1"]
    grpo = ["stage.max_steps=2", "stage.checkpoint_every_n_steps=1", "stage.limit_val_batches=0",
            "data.datamodule.batch_size=2", "data.grpo_group_size=2"]
    text = ""
    for stage, extra in (("mle", ["stage.max_steps=1"]), ("grpo", grpo)):
        out = subprocess.run([sys.executable, "train.py", f"stage={stage}", *common, *extra],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        text += out.stdout + out.stderr
    assert (tmp_path / "runs" / "toy_text" / "grpo" / "checkpoints" / "last.ckpt").exists()
    for noise in ("litlogger", "litmodels", "💡", "def training_step", "saved_models",
                  "manual optimization"):
        assert noise not in text, (noise, text[-4000:])
    assert text.count("GPU available") == 2         # Lightning's real INFO lines still print


def test_only_the_named_messages_are_dropped():
    from wm.cli.quiet import quiet_lightning

    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_lightning()
        quiet_lightning()                            # twice: still one filter
        warnings.warn(MANUAL_OPT, UserWarning)
        warnings.warn("Found 33 module(s) in eval mode at the start of training.", UserWarning)
    assert [str(w.message)[:5] for w in seen] == ["Found"]
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        log.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing "
                 "[litlogger](https://pypi.org/project/litlogger/) to enable LitLogger")
        log.info("💡 Tip: For seamless cloud uploads and versioning, try installing "
                 "[litmodels](https://pypi.org/project/litmodels/)")
        log.info("GPU available: False, used: False")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert [r.getMessage() for r in records] == ["GPU available: False, used: False"]
    assert sum(type(f).__name__ == "TipFilter" for f in log.filters) == 1
