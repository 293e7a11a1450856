"""The on-disk episode format shared by every video dataset, its writer and its reader.

Implements the "Episode format" contract of docs/architecture.md:

```
<root>/index.json                       format, version, source, frame_shape, action_dim, episodes
<root>/stats.json                       per-dimension action min/max/mean/std, num_frames
<root>/episodes/ep_000000/frames.npy    uint8   (T, H, W, 3), memory-mapped when read
<root>/episodes/ep_000000/actions.npy   float32 (T, A), actions[t] is applied at frame t
<root>/episodes/ep_000000/meta.json     optional, free-form
```

The paper (RLVR-World, Sec. 4.2 and App. B) trains on RT-1, PushT, Rope and Granular clips; the
reference code reads each dataset from its own format. Here every upstream format is converted once
(``wm.data.sources``) into this one, so the DataModule has a single reader.

Safety of writes: ``EpisodeWriter`` fills a staging folder ``<root>.partial`` and renames it to
``<root>`` only in ``close()``, after ``stats.json`` and then ``index.json`` (written last) are in
place. An interrupted conversion therefore never leaves a folder that looks like a valid dataset.
Reading: ``EpisodeStore.validate()`` checks every file against the index from the .npy headers.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

FORMAT, VERSION = "wm-episodes", 1
INDEX, STATS = "index.json", "stats.json"
PREPARE_HINT = "run `python -m wm.data.prepare <name> --out {root}` or set data.root=<an existing dataset>"


class DataError(ValueError):
    """A dataset on disk (or an array handed to the writer) is missing, corrupt or malformed."""


def episode_name(i: int) -> str:
    """Folder name of episode ``i`` (``ep_000000``)."""
    return f"ep_{i:06d}"


class RunningActionStats:
    """Per-dimension min/max/mean/std of actions, updated one episode at a time.

    Mean and variance use the parallel (Chan et al.) merge of (count, mean, M2), computed in
    float64 so that millions of frames do not lose precision. ``std`` is the population std.
    """

    def __init__(self, dim: int):
        self.count, self.mean, self.m2 = 0, np.zeros(dim, np.float64), np.zeros(dim, np.float64)
        self.min, self.max = np.full(dim, np.inf), np.full(dim, -np.inf)

    def update(self, actions: np.ndarray) -> None:
        a = actions.astype(np.float64)  # (T, A)
        n, batch_mean = a.shape[0], a.mean(0)
        batch_m2 = ((a - batch_mean) ** 2).sum(0)
        total, delta = self.count + n, batch_mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + batch_m2 + delta**2 * self.count * n / total
        self.count = total
        self.min, self.max = np.minimum(self.min, a.min(0)), np.maximum(self.max, a.max(0))

    def to_json(self) -> dict:
        std = np.sqrt(self.m2 / max(self.count, 1))
        per_dim = (("min", self.min), ("max", self.max), ("mean", self.mean), ("std", std))
        return {"action": {k: [float(x) for x in v] for k, v in per_dim},
                "num_frames": int(self.count)}


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file and an atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


class EpisodeWriter:
    """Write episodes into ``root`` in the wm-episodes format.

    Usage::

        with EpisodeWriter(root, source="pusht_sim") as w:
            w.add(frames, actions, language=None, meta={"seed": 0})

    ``frames`` must be uint8 (T, H, W, 3) with the same H, W for every episode; ``actions`` a
    float array (T, A) (stored as float32) with the same A for every episode. Nothing appears at
    ``root`` until ``close()``; leaving the ``with`` block by an exception discards the staging
    folder.
    """

    def __init__(self, root: str | os.PathLike, source: str, overwrite: bool = False):
        self.root, self.source, self.overwrite = Path(root), str(source), overwrite
        if self.root.exists() and not (self.root.is_dir() and not any(self.root.iterdir())) \
                and not overwrite:
            raise DataError(f"{self.root} already exists and is not empty; pass overwrite=True "
                            "(--overwrite on the command line) or choose another output folder")
        self.staging = self.root.with_name(self.root.name + ".partial")
        if self.staging.exists():
            shutil.rmtree(self.staging)  # left over from an interrupted write
        (self.staging / "episodes").mkdir(parents=True)
        self.episodes: list[dict] = []
        self.frame_shape: tuple[int, int, int] | None = None  # set by the first episode
        self.action_dim: int | None = None
        self.stats: RunningActionStats | None = None
        self.closed = False

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close() if exc_type is None else self.abort()

    def _check(self, frames: Any, actions: Any) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.episodes)
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            raise DataError(f"episode {n}: frames must be a uint8 numpy array (T, H, W, 3), got "
                            f"{type(frames).__name__} {getattr(frames, 'dtype', '')}; convert images "
                            "with np.asarray(img, dtype=np.uint8) (values 0..255)")
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
            raise DataError(f"episode {n}: frames must have shape (T>=1, H, W, 3), got {frames.shape}")
        actions = np.asarray(actions)
        if not np.issubdtype(actions.dtype, np.floating):
            raise DataError(f"episode {n}: actions must be a float array (T, A), got dtype "
                            f"{actions.dtype}; cast with actions.astype(np.float32)")
        if actions.ndim != 2 or actions.shape[0] != frames.shape[0]:
            raise DataError(f"episode {n}: actions must have shape (T={frames.shape[0]}, A) to match "
                            f"the frames, got {actions.shape}")
        if not np.isfinite(actions).all():
            raise DataError(f"episode {n}: actions contain NaN or inf")
        if self.frame_shape is None:
            self.frame_shape = tuple(int(s) for s in frames.shape[1:])
            self.action_dim = int(actions.shape[1])
            self.stats = RunningActionStats(self.action_dim)
        if tuple(frames.shape[1:]) != self.frame_shape:
            raise DataError(f"episode {n}: frame shape {tuple(frames.shape[1:])} differs from the "
                            f"dataset's {self.frame_shape}; resize frames to one size before writing")
        if actions.shape[1] != self.action_dim:
            raise DataError(f"episode {n}: action_dim {actions.shape[1]} differs from the dataset's "
                            f"{self.action_dim}")
        return np.ascontiguousarray(frames), np.ascontiguousarray(actions, dtype=np.float32)

    def add(self, frames: np.ndarray, actions: np.ndarray, language: str | None = None,
            meta: dict | None = None) -> int:
        """Append one episode; returns its index."""
        if self.closed:
            raise DataError(f"EpisodeWriter for {self.root} is already closed")
        frames, actions = self._check(frames, actions)
        i = len(self.episodes)
        folder = self.staging / "episodes" / episode_name(i)
        folder.mkdir()
        np.save(folder / "frames.npy", frames)
        np.save(folder / "actions.npy", actions)
        if meta is not None or language is not None:
            _write_json(folder / "meta.json", {"language": language, **(meta or {})})
        self.stats.update(actions)
        self.episodes.append({"name": episode_name(i), "length": int(frames.shape[0]),
                              "language": language})
        return i

    def close(self) -> Path:
        """Write stats.json, then index.json, then move the staging folder to ``root``."""
        if self.closed:
            return self.root
        if not self.episodes:
            self.abort()
            raise DataError(f"no episodes were written to {self.root}; the source produced nothing")
        _write_json(self.staging / STATS, self.stats.to_json())
        _write_json(self.staging / INDEX, {
            "format": FORMAT, "version": VERSION, "source": self.source,
            "frame_shape": list(self.frame_shape), "action_dim": self.action_dim,
            "episodes": self.episodes})
        if self.root.exists():
            old = self.root.with_name(self.root.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.root, old)
            os.replace(self.staging, self.root)
            shutil.rmtree(old)
        else:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.staging, self.root)
        self.closed = True
        return self.root

    def abort(self) -> None:
        """Discard everything written so far."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self.closed = True


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DataError(f"{path} not found ({what}); {PREPARE_HINT.format(root=path.parent)}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is corrupt ({e}); re-create the dataset: "
                        f"{PREPARE_HINT.format(root=path.parent)}") from None


def check_npy(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> Path:
    """``path`` once its .npy header (shape, dtype) and size match the index (no data is read)."""
    if not path.is_file():
        raise DataError(f"{path} not found; the dataset is incomplete, re-create it")
    try:
        with open(path, "rb") as f:
            v = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if v == (1, 0)
                      else np.lib.format.read_array_header_2_0)(f)
            (got_shape, _, got_dtype), offset = header, f.tell()
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path} is corrupt, no .npy header ({e}); re-create the dataset") from None
    if tuple(got_shape) != tuple(shape) or got_dtype != dtype:
        raise DataError(f"{path} holds {got_dtype} {tuple(got_shape)}, index.json says {dtype} "
                        f"{tuple(shape)}; the dataset is inconsistent, re-create it")
    size, want = path.stat().st_size, offset + int(np.prod(shape)) * dtype.itemsize
    if size != want:
        raise DataError(f"{path} is corrupt: {'truncated' if size < want else 'too long'} ({size} "
                        f"bytes, {dtype} {tuple(shape)} needs {want}); re-create the dataset")
    return path


class EpisodeStore:
    """Read-only access to a wm-episodes dataset.

    The index is read once; ``frames(i)`` returns a read-only memory map (T, H, W, 3) uint8, so
    datasets larger than RAM work. A small LRU cache keeps recently used maps open (each holds a
    file descriptor); the cache is dropped when the store is pickled into DataLoader workers.
    """

    CACHE = 64

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"dataset folder {self.root} does not exist: "
                            f"{PREPARE_HINT.format(root=self.root)}")
        index_path = self.root / INDEX
        index = _read_json(index_path, "the dataset index")
        for field in ("format", "frame_shape", "action_dim", "episodes"):
            if not isinstance(index, dict) or field not in index:
                raise DataError(f"{index_path} has no field '{field}'; it is not a wm-episodes index")
        if index["format"] != FORMAT or index.get("version") != VERSION:
            raise DataError(f"{index_path}: format {index['format']!r} version {index.get('version')!r}, "
                            f"expected {FORMAT!r} version {VERSION}")
        self.index, self.source = index, str(index.get("source", ""))
        self.frame_shape = tuple(int(s) for s in index["frame_shape"])
        self.action_dim = int(index["action_dim"])
        try:
            self.names = [str(e["name"]) for e in index["episodes"]]
            self.lengths = np.array([int(e["length"]) for e in index["episodes"]], dtype=np.int64)
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{index_path}: every entry of 'episodes' needs 'name' and an integer "
                            "'length'") from None
        if len(self.names) == 0:
            raise DataError(f"{index_path} lists no episodes")
        ep_dir = self.root / "episodes"
        on_disk = sum(1 for _ in ep_dir.iterdir()) if ep_dir.is_dir() else 0
        if on_disk != len(self.names):
            raise DataError(f"{index_path} lists {len(self.names)} episodes but {ep_dir} holds "
                            f"{on_disk}; the dataset is incomplete, re-create it")
        self._stats: dict | None = None
        self._cache: OrderedDict = OrderedDict()  # (i, kind) -> array, least recently used first

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": OrderedDict()}

    @property
    def stats(self) -> dict:
        """Contents of stats.json: ``{"action": {"min","max","mean","std": [A]}, "num_frames"}``."""
        if self._stats is None:
            stats = _read_json(self.root / STATS, "action statistics")
            try:
                for k in ("min", "max", "mean", "std"):
                    if len(stats["action"][k]) != self.action_dim:
                        raise DataError(f"{self.root / STATS}: action.{k} has "
                                        f"{len(stats['action'][k])} values, expected {self.action_dim}")
            except (KeyError, TypeError):
                raise DataError(f"{self.root / STATS} needs action.min/max/mean/std lists") from None
            self._stats = stats
        return self._stats

    def _npy(self, i: int, kind: str) -> tuple[Path, tuple[int, ...], np.dtype]:
        """(path, shape, dtype) the index implies for episode ``i``'s frames or actions file."""
        t, path = int(self.lengths[i]), self.root / "episodes" / self.names[i] / f"{kind}.npy"
        return (path, (t, *self.frame_shape) if kind == "frames" else (t, self.action_dim),
                np.dtype(np.uint8 if kind == "frames" else np.float32))

    def validate(self) -> None:
        """Check each episode file's .npy header and size against the index (no data read)."""
        for spec in (self._npy(i, k) for i in range(len(self)) for k in ("frames", "actions")):
            check_npy(*spec)
        _ = self.stats

    def language(self, i: int) -> str | None:
        return self.index["episodes"][i].get("language")

    def meta(self, i: int) -> dict:
        path = self.root / "episodes" / self.names[i] / "meta.json"
        return _read_json(path, "episode metadata") if path.exists() else {}

    def _load(self, i: int, kind: str) -> np.ndarray:
        key = (i, kind)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        path = check_npy(*self._npy(i, kind))  # names a missing, truncated or mismatching file
        try:
            arr = np.load(path, mmap_mode="r" if kind == "frames" else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{path} is corrupt ({e}); re-create the dataset") from None
        self._cache[key] = arr
        if len(self._cache) > self.CACHE:
            self._cache.popitem(last=False)
        return arr

    def frames(self, i: int) -> np.ndarray:
        """Episode ``i``'s frames, uint8 (T, H, W, 3), memory-mapped read-only."""
        return self._load(i, "frames")

    def actions(self, i: int) -> np.ndarray:
        """Episode ``i``'s actions, float32 (T, A)."""
        return self._load(i, "actions")
