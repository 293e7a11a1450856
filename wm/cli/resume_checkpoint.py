"""Check the checkpoint a run resumes from before anything is built (issue #24, item 5).

A ``last.ckpt`` cut short (a save interrupted by a kill or a full disk) used to end the resume in
Lightning's restore with a ~40-line zip-archive traceback that named neither the file nor the
intact ``step*.ckpt`` files beside it. :func:`check_resume_checkpoint` reads the file's structure
first (``torch.load(mmap=True)``: the pickled entries, not the tensor bytes, so a resume costs
milliseconds more) and refuses an unreadable one with one line naming it, the newest readable
checkpoint in the same folder, and the commands that resume from that one.

Departure from "resume from it automatically": the choice (rewind to that step, start over, or
look at the file first) is left to the user, and nothing in the folder is renamed behind their
back. The message gives one command: ``mv`` the bad file to a free name (``last.ckpt.corrupt``,
``...corrupt1``; never deleted or overwritten) and ``cp`` the good checkpoint to ``last.ckpt``;
the same training command then resumes as usual, on every rank, and keeps saving into
``last.ckpt`` (:func:`wm.cli.fit.resumed_last_callback`).
"""
from __future__ import annotations

import re
import shlex
import zipfile
from pathlib import Path

from wm.utils.checkpoints import DEFAULT_HINT, CheckpointError, load_checkpoint_file


class CorruptResumeError(SystemExit):
    """The checkpoint a run would resume from cannot be read (the message is one line)."""


def _read(path: Path) -> dict:
    """The checkpoint's entries with its tensors memory-mapped (a full load for the legacy,
    non-zip torch.save format, which ``mmap`` does not take)."""
    mmap = zipfile.is_zipfile(path)
    return load_checkpoint_file(path, weights_only=False, mmap=mmap)


def _step_of(path: Path) -> int:
    """The step a file name carries (``step000117.ckpt``, ``step=117-v1.ckpt`` -> 117; -1 when
    none): step files are tried newest first, and only until one reads."""
    match = re.search(r"step[=_-]?(\d+)", path.stem)
    return int(match.group(1)) if match else -1


def newest_readable(folder: Path, skip: Path) -> tuple[Path, int] | None:
    """(path, global step) of the readable ``*.ckpt`` file in ``folder`` (other than ``skip``)
    with the highest step; None when there is none. Files not named by their step
    (``last-v1.ckpt``) are all read; of the step files, the newest readable one."""
    candidates = [p for p in Path(folder).glob("*.ckpt") if p.is_file() and p != skip]
    found, step_file_found = [], False
    for path in sorted(candidates, key=lambda p: (_step_of(p), p.stat().st_mtime), reverse=True):
        named = _step_of(path) >= 0
        if named and step_file_found:
            continue
        try:
            ckpt = _read(path)
        except (CheckpointError, OSError):
            continue
        step = ckpt.get("global_step") if isinstance(ckpt, dict) else None
        found.append((path, int(step) if isinstance(step, int) else _step_of(path)))
        step_file_found = step_file_found or named
    return max(found, key=lambda f: f[1]) if found else None


def _aside(path: Path) -> Path:
    """A name beside ``path`` that no file has: ``last.ckpt.corrupt``, then ``...corrupt1``..."""
    n = 0
    while (candidate := path.with_name(f"{path.name}.corrupt{n or ''}")).exists():
        n += 1
    return candidate


def check_resume_checkpoint(path: str | Path) -> None:
    """Refuse to resume from ``path`` when it cannot be read; a folder (a distributed
    checkpoint) is left to Lightning. Raises :class:`CorruptResumeError` (one line)."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        _read(path)
        return
    except CheckpointError as err:
        reason = str(err)
    aside = _aside(path)
    move = f"mv {shlex.quote(str(path))} {shlex.quote(str(aside))}"
    good = newest_readable(path.parent, skip=path)
    if good is None:
        fix = (f"no other readable checkpoint is in {path.parent}: to start the run over, "
               f"keeping the bad file as {aside.name}, run `{move}` and then the same command")
    else:
        copy = f"cp {shlex.quote(str(good[0]))} {shlex.quote(str(path))}"
        fix = (f"the newest readable checkpoint beside it is {good[0].name} (step {good[1]}): "
               f"to resume from it, keeping the bad file as {aside.name}, run "
               f"`{move} && {copy}` and then the same command again")
    raise CorruptResumeError(f"{reason.removesuffix('; ' + DEFAULT_HINT)}; {fix}")
