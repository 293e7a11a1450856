"""A run whose ``last.ckpt`` cannot be read (issue #24, item 5: a save cut short, a disk error).

Resuming it is refused with one line, before anything is built or written, that names the bad
file and the newest readable checkpoint beside it and gives the commands that resume from that
one while keeping the bad file (moved aside, never deleted or overwritten). Those commands are
run here, and the run then continues from the good checkpoint's step, saving into ``last.ckpt``
again (not Lightning's ``last-v1.ckpt``, which the next resume would skip; the same for a run
folder that was moved).
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch

from stage_fixtures import (compose_train, cpu_overrides, save_tiny_tokenizer,
                            tiny_video_overrides, write_video_dataset)
from wm.cli.fit import fit_stage, last_checkpoint
from wm.cli.resume_checkpoint import CorruptResumeError, check_resume_checkpoint

SHORT = ["stage.val_check_interval=1000", "stage.limit_val_batches=0",
         "stage.checkpoint_every_n_steps=2"]


def _mle(tmp_path: Path, steps: int, runs: str = "runs") -> list[str]:
    root, tok = tmp_path / "squares", tmp_path / "tok.ckpt"
    if not tok.exists():
        write_video_dataset(root), save_tiny_tokenizer(tok)
    return ["stage=mle"] + tiny_video_overrides(root, tok) + cpu_overrides(
        tmp_path / runs, tmp_path / "data") + SHORT + [f"stage.max_steps={steps}"]


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def _one_line(err: BaseException) -> str:
    msg = str(err.code if isinstance(err, SystemExit) else err)
    assert msg and "\n" not in msg, msg
    return msg


def _commands(message: str) -> list[str]:
    """The shell commands a message gives (in backticks, starting with ``mv``)."""
    return [c for c in re.findall(r"`([^`]*)`", message) if c.startswith("mv ")]


def test_a_corrupt_last_ckpt_names_the_newest_good_one_and_resumes_from_it(tmp_path):
    fit_stage(compose_train(_mle(tmp_path, 4)))
    run_dir = tmp_path / "runs" / "pusht" / "mle"
    last = last_checkpoint(run_dir)
    good, newer = last.parent / "step000002.ckpt", last.parent / "step000004.ckpt"
    assert good.is_file() and newer.is_file()
    last.write_bytes(last.read_bytes()[:4096])       # a save cut short
    newer.write_bytes(b"\x00" * 512)                 # and the newest step file is bad too
    bad_bytes, done = last.read_bytes(), (run_dir / "DONE").read_text()
    config = (run_dir / "config.yaml").read_text()

    with pytest.raises(CorruptResumeError) as err:
        fit_stage(compose_train(_mle(tmp_path, 6)))
    msg = _one_line(err.value)
    assert msg.startswith(f"{last} is not a readable PyTorch checkpoint"), msg
    assert f"newest readable checkpoint beside it is {good.name} (step 2)" in msg, msg
    assert last.read_bytes() == bad_bytes                         # nothing touched
    assert (run_dir / "DONE").read_text() == done
    assert (run_dir / "config.yaml").read_text() == config

    (command,) = _commands(msg)
    subprocess.run(command, shell=True, check=True)
    kept = [p for p in last.parent.iterdir() if p.read_bytes() == bad_bytes]
    assert len(kept) == 1 and kept[0] != last                     # the bad file is kept aside
    fit_stage(compose_train(_mle(tmp_path, 6)))                   # resumes from step 2
    assert _step(last) == 6 and not (last.parent / "last-v1.ckpt").exists()
    assert kept[0].read_bytes() == bad_bytes


def test_a_moved_run_folder_resumes_into_its_own_last_ckpt(tmp_path):
    """Lightning forgets which file is ``last`` when the folder's path changed (a copied
    checkpoint, a moved runs folder) and writes ``last-v1.ckpt``: the next resume would rewind."""
    fit_stage(compose_train(_mle(tmp_path, 2)))
    (tmp_path / "runs").rename(tmp_path / "moved")
    fit_stage(compose_train(_mle(tmp_path, 4, runs="moved")))
    folder = tmp_path / "moved" / "pusht" / "mle" / "checkpoints"
    assert _step(folder / "last.ckpt") == 4 and not (folder / "last-v1.ckpt").exists()


def test_without_a_readable_checkpoint_the_bad_one_is_moved_aside_to_start_over(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(b"not a checkpoint")
    (folder / "last.ckpt.corrupt").write_bytes(b"an earlier bad file")   # never overwritten
    (folder / "step000002.ckpt").write_bytes(b"")
    with pytest.raises(CorruptResumeError) as err:
        check_resume_checkpoint(folder / "last.ckpt")
    msg = _one_line(err.value)
    assert "no other readable checkpoint" in msg and "start the run over" in msg, msg
    (command,) = _commands(msg)
    subprocess.run(command, shell=True, check=True)
    assert not (folder / "last.ckpt").exists()
    assert (folder / "last.ckpt.corrupt").read_bytes() == b"an earlier bad file"
    assert b"not a checkpoint" in [p.read_bytes() for p in folder.iterdir()]


def test_a_readable_last_ckpt_and_a_sharded_folder_pass(tmp_path):
    torch.save({"global_step": 3}, tmp_path / "last.ckpt")
    check_resume_checkpoint(tmp_path / "last.ckpt")
    (tmp_path / "sharded.ckpt").mkdir()             # a distributed checkpoint: left to Lightning
    check_resume_checkpoint(tmp_path / "sharded.ckpt")


def test_a_checkpoint_not_named_by_its_step_is_read_for_its_step(tmp_path):
    torch.save({"global_step": 2}, tmp_path / "step000002.ckpt")
    torch.save({"global_step": 6}, tmp_path / "last-v1.ckpt")     # Lightning's versioned last
    (tmp_path / "last.ckpt").write_bytes(b"\x00" * 64)
    with pytest.raises(CorruptResumeError) as err:
        check_resume_checkpoint(tmp_path / "last.ckpt")
    assert "beside it is last-v1.ckpt (step 6)" in _one_line(err.value)
