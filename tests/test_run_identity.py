"""A run folder holds one run (issue #18): a resume with other settings (same ``data=`` name,
another ``data.root``) is refused and leaves the run untouched; a second training in the same
folder is refused while the first lives, and a dead one's lock is taken over; a stage refuses an
upstream checkpoint from an unfinished run unless ``allow_unfinished_upstream=true``.

Each refusal is one line whose suggested override is applied here (composed and run)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stage_fixtures import (compose_train, cpu_overrides, save_tiny_tokenizer,
                            tiny_video_overrides, write_video_dataset)
from wm.cli.fit import fit_stage, last_checkpoint
from wm.cli.run_identity import IDENTITY_FILE, RunIdentityError
from wm.cli.run_lock import LOCK_FILE, RunLock, RunLockedError
from wm.cli.upstream import UnfinishedUpstreamError

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["stage.max_steps=2", "stage.val_check_interval=1000", "stage.limit_val_batches=0",
         "stage.checkpoint_every_n_steps=2"]


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    base = tmp_path_factory.mktemp("squares")
    return (write_video_dataset(base / "a", seed=0), write_video_dataset(base / "b", seed=1),
            save_tiny_tokenizer(base / "tok.ckpt"))


def _mle(tmp_path, root, tok, extra=()):
    return ["stage=mle"] + tiny_video_overrides(root, tok) + cpu_overrides(
        tmp_path / "runs", tmp_path / "data") + SHORT + list(extra)


def _step(run_dir: Path) -> int:
    return int(torch.load(last_checkpoint(run_dir), map_location="cpu",
                          weights_only=False)["global_step"])


def suggested(message: str) -> list[str]:
    """The overrides a one-line message suggests (in backticks)."""
    return [tok for quoted in re.findall(r"`([^`]*)`", message) for tok in quoted.split()
            if "=" in tok and not tok.startswith("<")]


def _one_line(err: BaseException) -> str:
    msg = str(err.code if isinstance(err, SystemExit) else err)
    assert "\n" not in msg and msg, msg
    return msg


# ------------------------------------------------------------------------------- identity
def test_other_root_under_the_same_name_refuses_to_resume(squares, tmp_path):
    a, b, tok = squares
    fit_stage(compose_train(_mle(tmp_path, a, tok)))
    run_dir = tmp_path / "runs" / "pusht" / "mle"
    assert json.loads((run_dir / IDENTITY_FILE).read_text())["identity"]["data.root"] == str(a)
    config_before = (run_dir / "config.yaml").read_text()

    with pytest.raises(RunIdentityError) as err:       # the same command on dataset b
        fit_stage(compose_train(_mle(tmp_path, b, tok, ["stage.max_steps=4"])))
    msg = _one_line(err.value)
    assert f"data.root={a} there, {b} here" in msg and str(run_dir) in msg
    assert (run_dir / "config.yaml").read_text() == config_before   # not rewritten to claim b
    assert _step(run_dir) == 2 and (run_dir / "DONE").exists()      # the run is untouched

    # the suggested override starts a new run on b; the old run still resumes on a
    (new,) = suggested(msg)
    assert new.startswith("run_name=pusht_")
    cfg = compose_train(_mle(tmp_path, b, tok, [new]))
    assert Path(cfg.run_dir) != run_dir
    fit_stage(cfg)
    assert _step(Path(cfg.run_dir)) == 2
    fit_stage(compose_train(_mle(tmp_path, a, tok, ["stage.max_steps=3"])))   # more steps: fine
    assert _step(run_dir) == 3


def test_a_run_made_before_identities_is_checked_against_its_config(squares, tmp_path):
    a, b, tok = squares
    fit_stage(compose_train(_mle(tmp_path, a, tok)))
    run_dir = tmp_path / "runs" / "pusht" / "mle"
    (run_dir / IDENTITY_FILE).unlink()             # as written by an older version
    with pytest.raises(RunIdentityError, match="data.root"):
        fit_stage(compose_train(_mle(tmp_path, b, tok, ["stage.max_steps=3"])))
    assert _step(run_dir) == 2


# ----------------------------------------------------------------------------------- lock
HOLDER = """
import sys, time
from wm.cli.run_lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_training_in_the_same_folder_is_refused_then_a_dead_lock_is_taken(
        squares, tmp_path, caplog):
    a, _, tok = squares
    run_dir = tmp_path / "runs" / "pusht" / "mle"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError) as err:
            fit_stage(compose_train(_mle(tmp_path, a, tok)))
        msg = _one_line(err.value)
        assert f"pid {holder.pid} on this host" in msg and str(run_dir / LOCK_FILE) in msg
        assert not last_checkpoint(run_dir).exists()          # nothing was written
        assert not (run_dir / "config.yaml").exists()
    finally:
        holder.kill()                                          # dies without releasing
        holder.wait()
    assert (run_dir / LOCK_FILE).exists()
    with caplog.at_level("WARNING", logger="wm.cli.run_lock"):
        fit_stage(compose_train(_mle(tmp_path, a, tok)))
    assert any("taking over the stale lock" in r.getMessage() and "no longer runs" in
               r.getMessage() for r in caplog.records)
    assert _step(run_dir) == 2 and not (run_dir / LOCK_FILE).exists()   # released at the end


def test_a_lock_from_another_host_is_stale_only_without_heartbeat(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock_file = run_dir / LOCK_FILE
    lock_file.write_text(json.dumps({"pid": 1, "host": "another-host", "token": "x",
                                     "started": "then"}))
    with pytest.raises(RunLockedError, match="host another-host"):
        RunLock(run_dir, stale_after_s=300).acquire()
    old = time.time() - 3600
    os.utime(lock_file, (old, old))                          # no heartbeat for an hour
    lock = RunLock(run_dir, stale_after_s=300).acquire()
    assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock_file.exists()


def test_release_never_deletes_another_holders_lock(tmp_path):
    lock = RunLock(tmp_path).acquire()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "h", "token": "other"}))
    lock.release()
    assert (tmp_path / LOCK_FILE).exists()


def test_distributed_ranks_do_not_take_the_lock(monkeypatch):
    from wm.cli.run_lock import launcher_process

    assert launcher_process()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not launcher_process()


# ---------------------------------------------------------------------- unfinished upstream
def test_an_unfinished_tokenizer_run_is_refused_unless_asked(squares, tmp_path):
    a, _, _ = squares
    tok_run = tmp_path / "runs" / "pusht" / "tokenizer"
    tok = save_tiny_tokenizer(tok_run / "checkpoints" / "last.ckpt")
    (tok_run / "config.yaml").write_text("stage: {name: tokenizer}\n")   # a run, no DONE
    with pytest.raises(UnfinishedUpstreamError) as err:
        fit_stage(compose_train(_mle(tmp_path, a, tok)))
    msg = _one_line(err.value)
    assert str(tok_run) in msg and "DONE" in msg
    assert not (tmp_path / "runs" / "pusht" / "mle").exists()   # refused before anything

    assert suggested(msg) == ["allow_unfinished_upstream=true"]
    fit_stage(compose_train(_mle(tmp_path, a, tok, suggested(msg))))
    assert _step(tmp_path / "runs" / "pusht" / "mle") == 2


def test_a_finished_upstream_run_and_a_loose_checkpoint_are_used(squares, tmp_path):
    a, _, loose = squares
    tok_run = tmp_path / "runs" / "pusht" / "tokenizer"
    tok = save_tiny_tokenizer(tok_run / "checkpoints" / "last.ckpt")
    (tok_run / "config.yaml").write_text("stage: {name: tokenizer}\n")
    (tok_run / "DONE").write_text("{}")
    fit_stage(compose_train(_mle(tmp_path, a, tok)))
    fit_stage(compose_train(_mle(tmp_path / "loose", a, loose)))   # not in a run folder


# ------------------------------------------------ a changed setting: the difference, a fix
def test_a_changed_setting_shows_the_differing_entry_and_a_command_that_works(squares, tmp_path):
    """Issue #24 item 6: the refusal showed ``model.policy={"_target_": ...`` cut off before
    the differing entry, and its ``run_name=`` moved the default tokenizer path to a run that
    does not exist. Here the tokenizer is the run family's own (found through ``run_name``)."""
    a, _, _ = squares
    tok_run = tmp_path / "runs" / "pusht" / "tokenizer"
    save_tiny_tokenizer(tok_run / "checkpoints" / "last.ckpt")
    (tok_run / "config.yaml").write_text("stage: {name: tokenizer}\n")
    (tok_run / "DONE").write_text("{}")
    base = [o for o in _mle(tmp_path, a, tok_run) if not o.startswith("data.task.tokenizer_ckpt")]
    fit_stage(compose_train(base))
    changed = base + ["model.policy.hidden_size=48"]
    with pytest.raises(RunIdentityError) as err:
        fit_stage(compose_train(changed))
    msg = _one_line(err.value)
    assert "model.policy.hidden_size=32 there, 48 here" in msg, msg

    cfg = compose_train(changed + suggested(msg))      # the suggested command trains
    assert Path(cfg.run_dir) != tmp_path / "runs" / "pusht" / "mle"
    fit_stage(cfg)
    assert _step(Path(cfg.run_dir)) == 2


def test_long_values_are_shown_around_the_part_that_differs():
    from wm.cli.run_identity import describe_difference, differences

    deep = "/data/" + "very-long-folder-name/" * 6
    there = {"data.root": deep + "episodes_a", "model.policy": {"_target_": "x." * 40, "n": 1}}
    here = {"data.root": deep + "episodes_b", "model.policy": {"_target_": "x." * 40, "n": 2}}
    text = describe_difference(there, here, differences(there, here))
    assert "episodes_a there" in text and "episodes_b here" in text, text
    assert "model.policy.n=1 there, 2 here" in text, text
