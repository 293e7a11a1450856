"""eval.py scores only what it should, and keeps every evaluation's files (issue #18).

A checkpoint whose action dimension or frame size differs from the data is refused before any
work; a checkpoint evaluated on other data than its run's is refused unless
``allow_other_data=true``; an empty held-out split is refused naming
``data.datamodule.val_every``; results go to a folder named by checkpoint, data and settings, and
an ``out_dir`` that holds another evaluation is never overwritten. Every refusal is one line
whose suggested override is applied here.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from stage_fixtures import (RES, TINY_SCORING, compose_train, cpu_overrides,
                            save_tiny_tokenizer, tiny_video_overrides, write_video_dataset)
from wm.cli.evaluate import EvaluationRefused, evaluate
from wm.cli.fit import fit_stage, last_checkpoint

CONF = Path(__file__).resolve().parents[1] / "conf"


def write_actions_dataset(root: Path, action_dim: int, episodes: int = 8, length: int = 10):
    """Like ``write_video_dataset`` with ``action_dim``-d actions (the extra ones random)."""
    from wm.data.episodes import EpisodeWriter

    rng = np.random.default_rng(3)
    with EpisodeWriter(root, source="test_squares_actions") as writer:
        for _ in range(episodes):
            frames = rng.integers(0, 255, size=(length, RES, RES, 3), dtype=np.uint8)
            writer.add(frames, rng.uniform(-1, 1, size=(length, action_dim)).astype(np.float32))
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step MLE run on 2-d-action squares (val_every=4) and its data folders."""
    base = tmp_path_factory.mktemp("eval_safety")
    a, b = write_video_dataset(base / "a", seed=0), write_video_dataset(base / "b", seed=1)
    tok = save_tiny_tokenizer(base / "tok.ckpt")
    over = ["stage=mle", *tiny_video_overrides(a, tok), *cpu_overrides(base / "runs", base / "d"),
            "stage.max_steps=2", "stage.val_check_interval=1000", "stage.limit_val_batches=0"]
    cfg = compose_train(over)
    fit_stage(cfg)
    return {"ckpt": last_checkpoint(Path(cfg.run_dir)), "a": a, "b": b, "base": base,
            "run_dir": Path(cfg.run_dir)}


def eval_cfg(t, root, extra=()):
    over = [f"ckpt={t['ckpt']}", "data=pusht", *TINY_SCORING, f"data.root={root}",
            f"data.resolution=[{RES},{RES}]", "data.source=null", "data.datamodule.batch_size=2",
            "data.datamodule.val_every=4",
            "data.datamodule.val_clips_per_episode=1", "num_threads=1", "max_batches=1",
            "num_strips=1", f"paths.runs_dir={t['base'] / 'runs'}", *extra]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="eval", overrides=over)


def suggested(message: str) -> list[str]:
    return [tok for quoted in re.findall(r"`([^`]*)`", message) for tok in quoted.split()
            if "=" in tok and not tok.startswith("<")]


def refused(cfg, monkeypatch) -> str:
    """The one-line refusal of ``evaluate(cfg)``, checking that no evaluation work started."""
    import wm.evaluation.prediction as prediction

    def no_work(*a, **k):
        raise AssertionError("evaluation work started")

    monkeypatch.setattr(prediction, "evaluate_policy", no_work)
    with pytest.raises(EvaluationRefused) as err:
        evaluate(cfg)
    monkeypatch.undo()
    msg = str(err.value.code)
    assert msg and "\n" not in msg, msg
    return msg


def eval_folders(t) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in (t["run_dir"] / "eval").glob("*/metrics.json")}


@pytest.mark.parametrize("what", ["action_dim", "frame_size"])
def test_a_checkpoint_is_refused_on_data_of_another_shape(trained, tmp_path, monkeypatch, what):
    if what == "action_dim":
        cfg = eval_cfg(trained, write_actions_dataset(tmp_path / "seven", 7))
        expect = ("2-d actions", "7-d actions")
    else:
        cfg = eval_cfg(trained, trained["a"], [f"data.resolution=[{2 * RES},{2 * RES}]"])
        expect = (f"{RES}x{RES} frames", f"{2 * RES}x{2 * RES} frames")
    before = eval_folders(trained)
    msg = refused(cfg, monkeypatch)
    assert all(e in msg for e in expect) and str(trained["ckpt"]) in msg, msg
    assert eval_folders(trained) == before


def test_evaluations_are_named_by_what_was_evaluated_and_never_overwritten(trained, monkeypatch):
    first = evaluate(eval_cfg(trained, trained["a"]))
    folders = eval_folders(trained)
    assert len(folders) == 1
    (name,) = folders
    assert re.fullmatch(r"last-pusht-[0-9a-f]{8}", name), name
    saved = json.loads(folders[name])
    assert saved["metrics"] == first and saved["evaluation"]["settings"]["num_samples"] == 1

    evaluate(eval_cfg(trained, trained["a"], ["num_samples=2"]))      # other settings
    again = eval_folders(trained)
    assert len(again) == 2 and again[name] == folders[name]

    # other data under the same name: refused, unless asked on purpose (then its own folder)
    msg = refused(eval_cfg(trained, trained["b"]), monkeypatch)
    assert f"data.root={trained['a']} there, {trained['b']} here" in msg
    assert suggested(msg) == ["allow_other_data=true"]
    evaluate(eval_cfg(trained, trained["b"], suggested(msg)))
    assert len(eval_folders(trained)) == 3
    assert {k: v for k, v in eval_folders(trained).items() if k in again} == again

    # an explicit out_dir that holds another evaluation is refused, its file kept
    out = trained["run_dir"] / "eval" / name
    msg = refused(eval_cfg(trained, trained["a"], [f"out_dir={out}", "num_samples=2"]),
                  monkeypatch)
    assert "settings.num_samples=1 there, 2 here" in msg and "out_dir=null" in msg
    assert (out / "metrics.json").read_text() == folders[name]
    evaluate(eval_cfg(trained, trained["a"], [f"out_dir={out}"]))      # the same one: fine


def test_an_empty_held_out_split_is_refused(trained, monkeypatch):
    msg = refused(eval_cfg(trained, trained["a"], ["data.datamodule.val_every=0"]), monkeypatch)
    assert "data.datamodule.val_every=0" in msg
    assert suggested(msg) == ["data.datamodule.val_every=4"]        # what it was trained with
    summary = evaluate(eval_cfg(trained, trained["a"], suggested(msg)))
    assert summary["num_predictions"] > 0

    msg = refused(eval_cfg(trained, trained["a"], ["max_batches=0"]), monkeypatch)
    assert suggested(msg) == ["max_batches=null"]
    eval_cfg(trained, trained["a"], suggested(msg))                  # a real key: composes


def test_the_pipeline_folder_is_reused_by_the_same_evaluation_only(trained):
    """The pipeline evaluates into ``<run>/eval`` again after a resume (same checkpoint path,
    data and settings): allowed; the key is stored with the metrics."""
    out = trained["base"] / "pipeline_eval"
    evaluate(eval_cfg(trained, trained["a"], [f"out_dir={out}"]))
    evaluate(eval_cfg(trained, trained["a"], [f"out_dir={out}"]))
    assert json.loads((out / "metrics.json").read_text())["evaluation"]["ckpt"] == \
        str(trained["ckpt"].resolve())


def test_eval_takes_a_hugging_face_world_model_folder(trained, tmp_path):
    """eval.py ckpt=<folder> (the released world models' layout, or our own export): the folder's
    LlamaForCausalLM is scored with the data's task; results land under runs/eval/<folder>."""
    from wm.tasks.video import VideoTask

    tok = trained["base"] / "tok.ckpt"
    task = VideoTask(str(tok), context_frames=1)
    policy = task.build_policy(None, init=str(trained["ckpt"]))
    folder = task.export(policy, tmp_path / "export")["hf"]
    cfg = eval_cfg(trained, trained["a"], [f"ckpt={folder}", f"data.task.tokenizer_ckpt={tok}",
                                           "allow_other_data=true"])
    summary = evaluate(cfg)
    assert summary["num_predictions"] > 0 and 0 < summary["mae"] < 1
    assert (trained["base"] / "runs" / "eval" / "hf").is_dir()


def test_a_one_episode_folder_is_evaluated(trained, tmp_path):
    """Issue #27: eval.py scores a folder whatever its size. One episode is held out by every
    ``val_every`` (0 % k == 0), which left no training episode and was refused by the split."""
    one = write_video_dataset(tmp_path / "one", episodes=1, seed=2)
    cfg = eval_cfg(trained, one, ["allow_other_data=true", f"out_dir={tmp_path / 'out'}"])
    summary = evaluate(cfg)
    assert summary["num_predictions"] > 0 and 0 <= summary["mae"] < 1


def test_a_one_episode_folder_still_cannot_train(tmp_path):
    """Training needs a training episode: the split refuses it with the option that fixes it."""
    from wm.data.episodes import DataError
    from wm.data.video import VideoDataModule

    one = write_video_dataset(tmp_path / "one", episodes=1)
    dm = VideoDataModule(str(one), context_frames=1, future_frames=1, val_every=4)
    dm.setup("validate")
    assert len(dm.val_dataloader()) > 0
    with pytest.raises(DataError, match="data.datamodule.val_every=0"):
        dm.train_dataloader()


def test_the_table_row_names_the_checkpoint(trained, tmp_path, capsys):
    """Issue #27: the row of ``<runs>/<family>/<stage>/checkpoints/<file>.ckpt`` reads
    ``<family>/<stage> <file>`` (it was the stage folder alone: every checkpoint of a run, and
    every run's grpo, printed as "grpo")."""
    from wm.cli.evaluate import checkpoint_label

    ckpt = trained["ckpt"]
    run = trained["run_dir"]
    want = f"{run.parent.name}/{run.name} {ckpt.stem}"
    assert checkpoint_label(ckpt) == want
    assert checkpoint_label(Path("runs/x/grpo/checkpoints/step000100.ckpt")) == \
        "x/grpo step000100"
    assert checkpoint_label(Path("some/folder/model.ckpt")) == "folder/model"
    assert checkpoint_label(Path("exports/hf"), "exports/hf") == "exports/hf"
    assert checkpoint_label(Path("/cache/x/snapshots/abc"), "thuml/wm") == "thuml/wm"
    out = tmp_path / "named"
    evaluate(eval_cfg(trained, trained["a"], [f"out_dir={out}"]))
    assert f"| {want} |" in (out / "metrics.md").read_text()
    assert f"| {want} |" in capsys.readouterr().out
