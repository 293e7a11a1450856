"""One training at a time per run folder: ``<run_dir>/run.lock``.

Two trainings started in the same run folder would both write ``checkpoints/last.ckpt``,
``config.yaml`` and the event files, interleaved. :class:`RunLock` creates the lock file
atomically (``O_EXCL``) with the holder's pid, host, process start time and command; a second
training finds it and refuses with one line. The holder refreshes the file's time every
``heartbeat_s`` seconds and deletes it when it ends.

A lock left behind by a run that died (killed, machine rebooted) is *stale* and taken over with
a log line: on the same host when its pid no longer runs (or runs another program, checked by
the process start time); from another host (a shared file system, where its pid cannot be
checked) when its heartbeat is older than ``stale_after_s``.

Only the launching process takes the lock: the extra ranks of a distributed run (``LOCAL_RANK``
/ ``RANK`` / ``NODE_RANK`` > 0) belong to the run that holds it.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"


class RunLockedError(SystemExit):
    """Another live training holds the run folder (the message is the one line to print)."""


def launcher_process() -> bool:
    """Whether this process is rank 0 of its run (or not a distributed rank at all)."""
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        try:
            if int(os.environ.get(var) or 0) != 0:
                return False
        except ValueError:
            continue
    return True


def _start_time(pid: int) -> str | None:
    """The process start time in clock ticks since boot (Linux ``/proc``), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                      # exists, another user's
    except OSError:
        return False
    now = _start_time(pid)
    return start is None or now is None or now == start   # else the pid was reused


class RunLock:
    """``with RunLock(run_dir):`` holds ``<run_dir>/run.lock`` for the duration, or raises
    :class:`RunLockedError` when another live training holds it."""

    def __init__(self, run_dir: str | Path, heartbeat_s: float = 30.0,
                 stale_after_s: float = 300.0, new_run: str = "run_name=<new name>"):
        self.run_dir = Path(run_dir)
        self.new_run = new_run           # the override that trains in another folder
        self.path = self.run_dir / LOCK_FILE
        self.heartbeat_s, self.stale_after_s = float(heartbeat_s), float(stale_after_s)
        self.host = socket.gethostname()
        self.token = f"{self.host}:{os.getpid()}:{time.time_ns()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    # ------------------------------------------------------------------ state of a lock file
    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}                    # unreadable: half-written or foreign

    def stale_reason(self, info: dict) -> str | None:
        """Why the lock described by ``info`` is stale, or None when its holder may be alive."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "it was just released"
        if not info:
            return (f"its content is unreadable and it is {age:.0f} s old"
                    if age > self.stale_after_s else None)
        pid = int(info.get("pid", -1))
        if info.get("host") == self.host:
            if pid <= 0 or not _alive(pid, info.get("start_time")):
                return f"pid {pid} on this host no longer runs"
            return None
        if age > self.stale_after_s:
            return (f"its holder on host {info.get('host')} has not refreshed it for "
                    f"{age:.0f} s (> {self.stale_after_s:.0f} s)")
        return None

    def _describe(self, info: dict) -> str:
        if not info:
            return "an unreadable lock"
        where = "this host" if info.get("host") == self.host else f"host {info.get('host')}"
        return f"pid {info.get('pid')} on {where}, started {info.get('started', '?')}"

    # ----------------------------------------------------------------------- acquire/release
    def acquire(self) -> "RunLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"pid": os.getpid(), "host": self.host, "token": self.token,
                           "start_time": _start_time(os.getpid()),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "command": " ".join(sys.argv)}, indent=2)
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self._read()
                if info is None:
                    continue             # released meanwhile: try again
                reason = self.stale_reason(info)
                if reason is None:
                    raise RunLockedError(
                        f"{self.run_dir} is in use by another training ({self._describe(info)}; "
                        f"lock file {self.path}): wait for it to end, or train in another folder "
                        f"with `{self.new_run}`. Delete the lock file only if that run is gone")
                aside = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
                try:
                    os.rename(self.path, aside)  # only one process wins a takeover
                except FileNotFoundError:
                    continue
                aside.unlink(missing_ok=True)
                log.warning("taking over the stale lock %s of %s: %s", self.path,
                            self._describe(info), reason)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(body)
            self.held = True
            self._thread = threading.Thread(target=self._heartbeat, name="run-lock-heartbeat",
                                            daemon=True)
            self._thread.start()
            return self
        raise RunLockedError(f"could not take the lock {self.path} (it keeps changing hands); "
                             "is another training starting in the same folder?")

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        info = self._read()
        if info and info.get("token") == self.token:   # never delete another holder's lock
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
