"""Config errors and console output of train.py / eval.py (issue #18).

- A wrong value type (``stage.max_steps=2O``) is one line naming the option, not a TypeError
  naming ``trainer``; constructor errors and missing files are one line too.
- The override a message suggests is a real Hydra key: each is applied (composed, and for the
  missing-checkpoint hints the composed run folder is the checkpoint's).
- A missing GRPO checkpoint's hint names the GRPO stage and a ``data=`` config that exists.
- Every INFO line is printed once; a resumed run's progress bar counts only its own steps.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from stage_fixtures import (compose_train, cpu_overrides, save_tiny_tokenizer,
                            tiny_video_overrides, write_video_dataset)
from wm.cli.config_check import CHOICES, ConfigValueError, check_choices, check_override_types

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def suggested(message: str) -> list[str]:
    """The overrides a one-line message suggests (in backticks; ``python train.py`` dropped)."""
    return [tok for quoted in re.findall(r"`([^`]*)`", message) for tok in quoted.split()
            if "=" in tok and not tok.startswith("<")]


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def _check_types(name: str, overrides: list[str]) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=name, overrides=list(overrides))
        check_override_types(cfg, overrides, name)


# --------------------------------------------------------------------------- value types
@pytest.mark.parametrize("name, overrides, key", [
    ("train", ["stage=mle", "stage.max_steps=2O"], "stage.max_steps"),
    ("train", ["stage=grpo", "data=rt1", "stage.module.group_size=lots"],
     "stage.module.group_size"),
    ("train", ["data.resolution=64"], "data.resolution"),
    ("train", ["stage=mle", "resume=maybe"], "resume"),
    ("eval", ["ckpt=x.ckpt", "num_samples=four"], "num_samples"),
])
def test_a_wrong_value_type_names_the_option_and_its_fix_composes(name, overrides, key):
    with pytest.raises(ConfigValueError) as err:
        _check_types(name, overrides)
    msg = str(err.value.code)
    assert "\n" not in msg and msg.startswith(f"{key}=") and "trainer" not in msg, msg
    (fix,) = suggested(msg)
    assert fix.startswith(f"{key}=")
    fixed = [o for o in overrides if not o.startswith(f"{key}=")] + [fix]
    _check_types(name, fixed)                                 # the suggestion is accepted
    assert not isinstance(OmegaConf.select(_compose(name, fixed), key), str)


@pytest.mark.parametrize("overrides", [
    ["stage=mle", "stage.max_steps=10", "stage.val_check_interval=0.5", "data.root=/x",
     "stage.module.init_policy=null", "model.lr.mle=1e-4", "data.resolution=[32,32]"],
    ["experiment=pusht_multistep", "stage=grpo", "stage.module.top_k=100"],
])
def test_values_of_the_right_type_pass(overrides):
    _check_types("train", overrides)


def test_the_command_line_prints_one_line_for_a_wrong_type():
    out = subprocess.run([sys.executable, "train.py", "stage=mle", "stage.max_steps=2O"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == ["stage.max_steps=2O: stage.max_steps takes a number, e.g. "
                     "`stage.max_steps=1000` (its default)"], out.stderr


def test_eval_without_ckpt_says_what_to_pass():
    """``python eval.py`` alone: one line naming ``ckpt=`` and a working example (issue #24,
    item 7; it was a 12-line MissingMandatoryValue traceback)."""
    out = subprocess.run([sys.executable, "eval.py"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ckpt: ") and "Traceback" not in out.stderr
    assert "ckpt=runs/pusht/grpo/checkpoints/last.ckpt" in lines[0], lines


def test_a_value_outside_its_choices_fails_before_any_run_folder_or_checkpoint(tmp_path):
    """Found by a new-user trial: ``data.task.decoding=pixels`` was reported only after the run
    folder's identity and the tokenizer checkpoint (a missing-checkpoint message first)."""
    for key in CHOICES:
        with pytest.raises(ConfigValueError, match=re.escape(f"{key}='nope': choose one of (")):
            check_choices(_compose("train", [f"{key}=nope"]))
    check_choices(_compose("train", []))                       # the defaults pass
    out = subprocess.run([sys.executable, "train.py", "stage=mle", "data.task.decoding=pixels",
                          f"paths.runs_dir={tmp_path}/runs"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode != 0 and lines == [
        "data.task.decoding='pixels': choose one of ('tokens', 'patch', 'delta')"], out.stderr
    # no run was started: no identity recorded, no checkpoint written
    assert not [p for p in tmp_path.rglob("*") if p.name == "identity.json" or p.suffix == ".ckpt"]


@pytest.mark.parametrize("what", ["constructor", "missing", "option"])
def test_the_command_line_prints_one_line_for_a_config_error(tmp_path, what):
    """A DataModule constructor error (Hydra wraps it in three lines), a missing checkpoint and
    a bad option value (exceptions with a traceback) reach the user as one line naming the key
    or the file."""
    ckpt = tmp_path / "x.ckpt"
    if what == "constructor":
        torch.save({"wm_policy": {}}, ckpt)
    extra = ["num_threads=abc"] if what == "option" else []
    out = subprocess.run([sys.executable, "eval.py", f"ckpt={ckpt}", f"out_dir={tmp_path / 'o'}",
                          "data.datamodule.val_every=-1", f"paths.data_dir={tmp_path}", *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    expect = {"constructor": ("data.datamodule.val_every must be >= 0", "building data.datamodule"),
              "missing": (f"ckpt={ckpt}: no such file", "stage=mle"),
              "option": ("num_threads='abc'", "positive integer")}[what]
    assert all(e in lines[0] for e in expect), lines[0]


# --------------------------------------------------------------- missing-checkpoint hints
def _hint_run_dir(hint: str, name: str = "train") -> Path:
    cfg = _compose(name, suggested(hint))
    return Path(cfg.run_dir)


@pytest.mark.parametrize("family, stage, extra", [
    ("pusht", "grpo", ["data=pusht"]),
    ("pusht", "tokenizer", ["data=pusht"]),
    ("pusht_multistep", "grpo", ["experiment=pusht_multistep"]),
    ("my_videos", "mle", ["data=episodes", "run_name=my_videos"]),
])
def test_eval_hint_names_the_stage_and_a_real_data_config(tmp_path, family, stage, extra):
    from wm.cli.evaluate import evaluate
    from wm.cli.upstream import MissingCheckpointError

    ckpt = tmp_path / "runs" / family / stage / "checkpoints" / "last.ckpt"
    cfg = _compose("eval", [f"ckpt={ckpt}", *extra])
    with pytest.raises(MissingCheckpointError) as err:
        evaluate(cfg)
    msg = str(err.value)
    assert "\n" not in msg and f"stage={stage}" in msg, msg
    data = [o for o in suggested(msg) if o.startswith(("data=", "experiment="))]
    assert data and all((CONF / o.split("=")[0] / f"{o.split('=')[1]}.yaml").is_file()
                        for o in data), msg
    assert _hint_run_dir(msg) == ckpt.parent.parent          # the command writes that file


def test_grpo_hint_for_a_missing_mle_checkpoint(tmp_path):
    from wm.cli.fit import fit_stage
    from wm.cli.upstream import MissingCheckpointError

    root = write_video_dataset(tmp_path / "sq", episodes=2, length=4)
    tok = save_tiny_tokenizer(tmp_path / "tok.ckpt")
    cfg = compose_train(["stage=grpo", *tiny_video_overrides(root, tok),
                         *cpu_overrides(tmp_path / "runs", tmp_path / "data")])
    with pytest.raises(MissingCheckpointError) as err:
        fit_stage(cfg)
    msg = str(err.value)
    assert "\n" not in msg and "stage.module.init_policy=" in msg and "stage=mle" in msg
    assert "data=pusht" in msg and "<data>" not in msg
    assert _hint_run_dir(msg) == Path(cfg.stage.module.init_policy).parent.parent
    assert not (tmp_path / "runs" / "pusht" / "grpo").exists()    # refused before anything


def test_the_existing_data_messages_name_real_keys(tmp_path):
    """The single-episode error of the video DataModule suggests data.datamodule.val_every=0."""
    from wm.data.episodes import DataError
    from wm.data.video import VideoDataModule

    root = write_video_dataset(tmp_path / "one", episodes=1, length=4)
    dm = VideoDataModule(str(root), context_frames=2, future_frames=1, val_every=1)
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    keys = re.findall(r"(data\.[\w.]+=\S+)", str(err.value))
    assert keys == ["data.datamodule.val_every=0"]
    _compose("train", keys)


# ------------------------------------------------------------------------ console output
def test_every_info_line_is_printed_once(tmp_path):
    root = write_video_dataset(tmp_path / "sq", episodes=4, length=4)
    tok = save_tiny_tokenizer(tmp_path / "tok.ckpt")
    cmd = [sys.executable, "train.py", "stage=mle", *tiny_video_overrides(root, tok),
           *cpu_overrides(tmp_path / "runs", tmp_path / "data"), "stage.max_steps=1",
           "stage.limit_val_batches=0"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    for line in ("Seed set to 0", "GPU available", "max_steps=1` reached"):
        assert text.count(line) == 1, (line, text[-3000:])


class BarProbe(L.Callback):
    """Records the train bar's ``(n, initial)`` at the first batch end of a fit."""

    seen: list = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        bar = trainer.progress_bar_callback.train_progress_bar
        if not BarProbe.seen or BarProbe.seen[-1][0] == "new":
            BarProbe.seen.append(("bar", bar.n, bar.initial, bar.format_dict["initial"]))

    def on_train_start(self, trainer, pl_module):
        BarProbe.seen.append(("new",))


def test_a_resumed_bar_counts_only_its_own_steps(tmp_path):
    from wm.cli.fit import fit_stage

    root = write_video_dataset(tmp_path / "sq", episodes=4, length=4)
    tok = save_tiny_tokenizer(tmp_path / "tok.ckpt")
    over = ["stage=mle", *tiny_video_overrides(root, tok),
            *cpu_overrides(tmp_path / "runs", tmp_path / "data"),
            "trainer.enable_progress_bar=true",
            "stage.limit_val_batches=0", "stage.checkpoint_every_n_steps=3",
            "+callbacks.probe._target_=test_cli_errors.BarProbe"]
    BarProbe.seen = []
    fit_stage(compose_train(over + ["stage.max_steps=3"]))
    fit_stage(compose_train(over + ["stage.max_steps=5"]))
    first, resumed = [s for s in BarProbe.seen if s[0] == "bar"]
    assert first[1:] == (1, 0, 0)
    assert resumed[1:] == (4, 3, 3), resumed     # 1 step of this process: rate = 1 / elapsed
