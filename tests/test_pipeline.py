"""The quickstart pipeline: every step runs, finished steps are skipped on a rerun, and an
interrupted step (a last.ckpt without DONE) resumes instead of restarting."""
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from wm.cli.pipeline import run_pipeline

CONF = Path(__file__).resolve().parents[1] / "conf"


def _overrides(tmp: Path, steps: int) -> list[str]:
    return [f"paths.runs_dir={tmp / 'runs'}", f"paths.data_dir={tmp / 'data'}", "logger=none",
            "trainer.enable_progress_bar=false", f"stage.max_steps={steps}",
            "stage.val_check_interval=2", "stage.limit_val_batches=1",
            "stage.checkpoint_every_n_steps=2", "data.source.num_episodes=12",
            "data.source.episode_length=12", "num_threads=1"]


def _run(tmp: Path, steps: int, capsys, extra=()) -> tuple[dict, str]:
    over = _overrides(tmp, steps) + list(extra)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*over, "stage=pipeline"])
        rows = run_pipeline(cfg, overrides=over)
    return rows, capsys.readouterr().out


def _global_step(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"])


@pytest.mark.slow
def test_pipeline_runs_skips_finished_steps_and_resumes(tmp_path, capsys):
    runs = tmp_path / "runs" / "pusht"
    extra = ["stage.steps=[tokenizer,mle]", "stage.evaluate=[mle]", "stage.open_loop_horizon=2",
             "stage.eval_settings.num_samples=1"]
    rows, out = _run(tmp_path, 4, capsys, extra)
    assert set(rows) == {"mle"} and "mae" in rows["mle"] and rows["mle"]["mae"] > 0
    assert (runs / "tokenizer" / "DONE").exists() and (runs / "mle" / "DONE").exists()
    comparison = (runs / "comparison.md").read_text()
    assert comparison.count("| MLE |") == 2 and "open-loop prediction of 2 steps" in comparison
    # the copy-last-frame row in both tables (eval.py ckpt=copy_last_frame, same clips)
    assert comparison.count("| copy last frame |") == 2
    assert comparison.count("| true tokens (tokenizer floor) |") == 2
    copy_files = sorted((runs / "baselines").glob("copy_last_frame-*/metrics.json"))
    assert len(copy_files) == 2
    copy_mtimes = [f.stat().st_mtime for f in copy_files]
    copy1 = [json.loads(f.read_text()) for f in copy_files if
             json.loads(f.read_text())["horizon"] == 1][0]["metrics"]
    assert copy1["repeat"] == 1.0 and copy1["mae"] > 0 and "stlpips" in copy1
    assert f"| copy last frame | {copy1['mae']:.4g} |" in comparison
    saved = json.loads((runs / "comparison.json").read_text())
    assert set(saved) == {"eval", "eval_open_loop_2"}
    assert saved["eval"]["rows"]["copy last frame"] == copy1
    assert saved["eval"]["rows"]["MLE"]["mae"] == rows["mle"]["mae"]
    h2 = json.loads((runs / "mle" / "eval_open_loop_2" / "metrics.json").read_text())
    assert h2["horizon"] == 2 and {"mae@1", "mae@2", "repeat"} <= set(h2["metrics"])
    timings = json.loads((runs / "pipeline_timing.json").read_text())
    assert set(timings) >= {"tokenizer", "mle", "eval_mle", "eval_open_loop_2_mle"}

    # a rerun redoes nothing and reuses the cached evaluation
    eval_file = runs / "mle" / "eval" / "metrics.json"
    before = eval_file.stat().st_mtime
    rows2, out = _run(tmp_path, 4, capsys, extra)
    assert "tokenizer: done already" in out and "mle: done already" in out
    assert "evaluating" not in out and eval_file.stat().st_mtime == before
    assert [f.stat().st_mtime for f in copy_files] == copy_mtimes   # baseline cached too
    assert rows2 == rows

    # an interrupted MLE step (checkpoint, no DONE) resumes from its step, not from zero
    (runs / "mle" / "DONE").unlink()
    ckpt = runs / "mle" / "checkpoints" / "last.ckpt"
    assert _global_step(ckpt) == 4
    _, out = _run(tmp_path, 6, capsys, extra)
    assert "tokenizer: done already" in out and "mle: resuming" in out
    assert _global_step(ckpt) == 6
    assert "evaluating mle" in out        # a changed checkpoint is evaluated again

    # a changed task setting (here the decoding) is a new evaluation: it goes to its own folder,
    # the previous one is kept, and a rerun with that setting reuses it
    before = eval_file.read_text()
    _, out = _run(tmp_path, 6, capsys, extra + ["data.task.decoding=tokens"])
    assert "evaluating mle" in out and eval_file.read_text() == before
    other = sorted(p.name for p in (runs / "mle").glob("eval-*"))
    assert len(other) == 1
    saved = json.loads((runs / "mle" / other[0] / "metrics.json").read_text())
    assert saved["evaluation"]["task"]["decoding"] == "tokens"
    _, out = _run(tmp_path, 6, capsys, extra + ["data.task.decoding=tokens"])
    assert "evaluating" not in out
