"""Issue #24 items 2-3: a short run still validates, and a tiny held-out split says so.

- A run whose ``stage.max_steps`` is below its ``stage.val_check_interval`` used to finish with
  no validation number and no word about it: it now says so at start (naming the option) and
  validates once at the end, so ``DONE`` carries the ``val/`` metrics.
- A held-out split of fewer than ``MIN_HELD_OUT`` clips/records logs one warning with the
  number and the option that enlarges it; eval.py's table states N first and in words.
"""
from __future__ import annotations

import json
import logging

from stage_fixtures import (compose_train, cpu_overrides, save_tiny_tokenizer,
                            tiny_video_overrides, write_video_dataset)


def test_a_run_shorter_than_its_val_interval_validates_at_the_end(tmp_path, caplog):
    from wm.cli.fit import fit_stage

    root, tok = tmp_path / "squares", tmp_path / "tok.ckpt"
    write_video_dataset(root), save_tiny_tokenizer(tok)
    cfg = compose_train(["stage=mle"] + tiny_video_overrides(root, tok)
                        + cpu_overrides(tmp_path / "runs", tmp_path / "data")
                        + ["stage.max_steps=2", "stage.val_check_interval=500"])
    with caplog.at_level(logging.INFO, logger="wm.cli.fit"):
        metrics = fit_stage(cfg)
    said = [r.getMessage() for r in caplog.records if "stage.val_check_interval" in r.getMessage()]
    assert len(said) == 1 and "max_steps=2" in said[0] and "at the end" in said[0], said
    val = [k for k in metrics if k.startswith("val")]
    assert val, f"no validation metric after a 2-step run: {sorted(metrics)}"
    done = json.loads((tmp_path / "runs" / "pusht" / "mle" / "DONE").read_text())
    assert set(val) <= set(done)
    assert "train/loss" in metrics and "train/loss" in done     # the training metrics stay


def test_a_grpo_run_shorter_than_its_val_interval_validates_at_the_end(tmp_path):
    """GRPO counts its interval in rollout batches: 2 batches of 2 optimizer steps, interval 3
    (max_steps=4 > 3: no start line, yet no validation would run)."""
    from wm.cli.fit import fit_stage

    root, tok = tmp_path / "squares", tmp_path / "tok.ckpt"
    write_video_dataset(root), save_tiny_tokenizer(tok)
    cfg = compose_train(["stage=grpo"] + tiny_video_overrides(root, tok)
                        + cpu_overrides(tmp_path / "runs", tmp_path / "data")
                        + ["stage.module.init_policy=null", "stage.module.group_size=4",
                           "stage.module.mini_batch_size=1", "stage.module.micro_batch_size=4",
                           "stage.module.log_images_every_n_steps=0", "stage.max_steps=4",
                           "stage.val_check_interval=3"])
    metrics = fit_stage(cfg)
    assert [k for k in metrics if k.startswith("val")], sorted(metrics)
    assert metrics["grpo/optimizer_steps"] == 2.0, sorted(metrics)   # training metrics stay


def _warnings(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == logger and r.levelno >= logging.WARNING and "held-out" in r.getMessage()]


def test_a_tiny_video_held_out_split_is_announced(tmp_path, caplog):
    from wm.data.video import VideoDataModule

    root = write_video_dataset(tmp_path / "squares", episodes=8)
    small = VideoDataModule(str(root), 2, 1, val_every=4, val_clips_per_episode=2)
    with caplog.at_level(logging.WARNING, logger="wm.data.video"):
        small.setup("fit")
    (msg,) = _warnings(caplog, "wm.data.video")
    assert "4 held-out clips" in msg and "data.datamodule.val_every" in msg, msg
    assert "data.datamodule.val_clips_per_episode" in msg, msg
    caplog.clear()
    big = VideoDataModule(str(root), 2, 1, val_every=2, val_clips_per_episode=8)
    with caplog.at_level(logging.WARNING, logger="wm.data.video"):
        big.setup("fit")
    assert len(big.val_set) >= 32 and not _warnings(caplog, "wm.data.video")


def test_a_tiny_text_held_out_split_is_announced(caplog):
    from wm.data.text import TextStateDataModule

    dm = TextStateDataModule("toy", toy_train=16, toy_val=40, max_val_records=8)
    with caplog.at_level(logging.WARNING, logger="wm.data.text"):
        dm.setup()
    (msg,) = _warnings(caplog, "wm.data.text")
    assert "8 held-out records" in msg and "data.datamodule.max_val_records" in msg, msg
    caplog.clear()
    dm = TextStateDataModule("toy", toy_train=16, toy_val=40)
    with caplog.at_level(logging.WARNING, logger="wm.data.text"):
        dm.setup()
    assert not _warnings(caplog, "wm.data.text")


def test_the_eval_table_states_n(tmp_path, capsys):
    from wm.cli.evaluate import _write_result

    _write_result(tmp_path, {"metrics": {"mae": 0.02, "num_predictions": 4.0, "lpips": 0.1}}, "x")
    table = (tmp_path / "metrics.md").read_text()
    assert table.splitlines()[0].startswith("| model | num_predictions |"), table
    assert "N = 4 held-out predictions" in table and "N = 4" in capsys.readouterr().out
    _write_result(tmp_path, {"metrics": {"mae": 0.02, "frames": 12.0}}, "tok")
    table = (tmp_path / "metrics.md").read_text()
    assert table.splitlines()[0].startswith("| model | frames |"), table
    assert "N = 12 held-out frames" in table
