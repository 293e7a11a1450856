"""Video clips from a wm-episodes dataset, and the Lightning DataModule that serves them.

Implements the "Video batch" contract of docs/architecture.md::

    frames  float32 (B, T, 3, H, W) in [0, 1],  T = context + future
    actions float32 (B, T, A)  raw actions (the action tokenizer bins them with stats.json)
    episode int64 (B,)          start int64 (B,)

Split as in the reference (RLVR-World App. B / iVideoGPT): episode ``i`` is held out for
validation iff ``i % val_every == 0`` (every 100th by default). Training clips start anywhere
(uniform over all valid starts); validation clips are ``val_clips_per_episode`` evenly spaced,
deterministic starts per held-out episode.

Departures from the reference: frames are resized on the fly (bilinear, antialiased) only when
the stored size differs from ``resolution``; no augmentation (the reference random-crops RT-1
frames for the tokenizer, which can be added as a transform); ``val_every=0`` disables the split
(all episodes train, no validation loader).

``setup()`` first validates the dataset once (``EpisodeStore.validate``: every file against the
index, from the .npy headers), so a missing, truncated or mismatching file fails before training
with one line naming it, not when a DataLoader worker first reads that episode. A held-out
split of fewer than ``MIN_HELD_OUT`` clips is announced in one warning naming the options.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from wm.data.sampling import MIN_HELD_OUT, eval_batches, train_sampler
from wm.data.episodes import INDEX, DataError, EpisodeStore

log = logging.getLogger(__name__)

#: fewer held-out clips than this log a warning: model differences would be noise (issue #24)


def to_float_frames(frames: np.ndarray, resolution: tuple[int, int] | None) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (T, 3, h, w) in [0, 1], resized only if needed."""
    x = torch.from_numpy(np.array(frames, copy=True)).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8
    x = x.float().div_(255.0)
    if resolution is not None and tuple(x.shape[-2:]) != tuple(resolution):
        x = F.interpolate(x, size=tuple(resolution), mode="bilinear", antialias=True,
                          align_corners=False).clamp_(0.0, 1.0)  # (T, 3, h, w)
    return x


class VideoClipDataset(Dataset):
    """Clips of ``context_frames + future_frames`` consecutive frames.

    ``deterministic=False`` (training): item ``k`` owns a window of ``stride`` consecutive start
    positions of one episode and draws one of them at random at every access, so with a shuffled
    loader every valid clip is equally likely (up to the last, shorter window of each episode)
    while an epoch has ``1/stride`` as many items. ``deterministic=True`` (validation):
    ``clips_per_episode`` evenly spaced starts per episode, first and last valid start included.
    Episodes shorter than the clip are skipped with one warning; if all are, DataError.
    """

    def __init__(self, store: EpisodeStore, episode_ids: Sequence[int], context_frames: int,
                 future_frames: int, resolution: tuple[int, int] | None = None, stride: int = 1,
                 deterministic: bool = False, clips_per_episode: int = 4):
        if context_frames < 1 or future_frames < 0:
            raise DataError(f"context_frames must be >= 1 and future_frames >= 0, got "
                            f"{context_frames}, {future_frames}")
        if stride < 1 or clips_per_episode < 1:
            raise DataError(f"stride and clips_per_episode must be >= 1, got {stride}, {clips_per_episode}")
        self.store = store
        self.clip_len = context_frames + future_frames
        self.resolution = tuple(resolution) if resolution is not None else None
        self.stride = stride
        self.deterministic = deterministic
        ids = np.asarray(list(episode_ids), dtype=np.int64)
        if len(ids) == 0:
            raise DataError("VideoClipDataset got no episodes")
        lengths = store.lengths[ids]
        ok = lengths >= self.clip_len
        if not ok.any():
            raise DataError(f"all {len(ids)} episodes of {store.root} are shorter than a clip of "
                            f"{self.clip_len} frames (context {context_frames} + future "
                            f"{future_frames}); the longest has {int(lengths.max())} frames: "
                            "lower context_frames/future_frames")
        if not ok.all():
            log.warning("skipping %d of %d episodes of %s shorter than %d frames",
                        int((~ok).sum()), len(ids), store.root, self.clip_len)
        self.skipped = int((~ok).sum())
        rows = []  # (episode, first start, number of starts in this item's window)
        for ep, n_starts in zip(ids[ok], lengths[ok] - self.clip_len + 1):
            if deterministic:
                starts = np.unique(np.linspace(0, n_starts - 1, clips_per_episode).round().astype(np.int64))
                rows += [(ep, s, 1) for s in starts]
            else:
                rows += [(ep, s, min(stride, n_starts - s)) for s in range(0, n_starts, stride)]
        self.items = np.array(rows, dtype=np.int64).reshape(-1, 3)  # (N, 3)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        ep, start, window = (int(v) for v in self.items[k])
        if window > 1:
            start += int(torch.randint(window, ()))
        stop = start + self.clip_len
        frames = to_float_frames(self.store.frames(ep)[start:stop], self.resolution)  # (T, 3, H, W)
        actions = torch.from_numpy(np.array(self.store.actions(ep)[start:stop]))  # (T, A)
        return {"frames": frames, "actions": actions,
                "episode": torch.tensor(ep, dtype=torch.int64),
                "start": torch.tensor(start, dtype=torch.int64)}


class VideoDataModule(L.LightningDataModule):
    """Train/val clip loaders over one wm-episodes dataset.

    Args:
        root: dataset folder (index.json inside).
        context_frames, future_frames: clip length T = context + future.
        resolution: (H, W) of the returned frames; ``None`` keeps the stored size.
        batch_size, num_workers, pin_memory: DataLoader settings.
        val_every: episode ``i`` is validation iff ``i % val_every == 0``; 0 disables validation.
        train_stride: see ``VideoClipDataset`` (an epoch has 1/stride of all clips).
        val_clips_per_episode: evenly spaced deterministic clips per validation episode.
        source: an object with ``.write(root)`` called by ``prepare_data`` when ``root`` has no
            index.json (e.g. ``PushTSimSource``); ``None`` means the data must already exist.
        seed: seeds the training stream (batch k is drawn from a generator seeded by seed, k).
    """

    def __init__(self, root: str, context_frames: int, future_frames: int,
                 resolution: Sequence[int] | None = None, batch_size: int = 8, num_workers: int = 0,
                 pin_memory: bool = False, val_every: int = 100, train_stride: int = 1,
                 val_clips_per_episode: int = 4, source: Any = None, seed: int = 0):
        super().__init__()
        self.save_hyperparameters(ignore=["source"])
        if root is None or str(root) in ("", "???"):
            raise DataError("data.root is not set: pass data.root=<dataset folder> (the --out "
                            "folder of `python -m wm.data.prepare <name>`, see docs/data.md)")
        self.root = str(root)
        self.context_frames, self.future_frames = int(context_frames), int(future_frames)
        self.resolution = tuple(int(r) for r in resolution) if resolution is not None else None
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        if val_every < 0:
            raise DataError(f"data.datamodule.val_every must be >= 0 (0 = no validation split), "
                            f"got {val_every}")
        self.val_every, self.train_stride = val_every, train_stride
        self.val_clips_per_episode, self.source, self.seed = val_clips_per_episode, source, seed
        self._store: EpisodeStore | None = None
        self.train_set: VideoClipDataset | None = None
        self.val_set: VideoClipDataset | None = None
        self._set_up = False

    def prepare_data(self) -> None:
        from pathlib import Path
        if (Path(self.root) / INDEX).is_file():
            return
        if self.source is None:
            raise DataError(f"no dataset at {self.root} (no index.json) and no data.source to create "
                            f"it: run `python -m wm.data.prepare <name> --out {self.root}` or set "
                            "data.root to an existing dataset")
        log.info("no dataset at %s yet: creating it from data.source (%s); later runs reuse it",
                 self.root, type(self.source).__name__)
        self.source.write(self.root)

    @property
    def store(self) -> EpisodeStore:
        if self._store is None:
            self._store = EpisodeStore(self.root)
        return self._store

    @property
    def action_dim(self) -> int:
        return self.store.action_dim

    @property
    def action_stats(self) -> dict[str, torch.Tensor]:
        """Per-dimension action ``min``, ``max``, ``mean``, ``std`` as float32 (A,) tensors."""
        return {k: torch.tensor(v, dtype=torch.float32) for k, v in self.store.stats["action"].items()}

    def split(self) -> tuple[list[int], list[int]]:
        """(train ids, val ids) by the ``i % val_every == 0`` rule. The train list may be empty
        (a folder of fewer than 2 episodes): evaluation needs only the held-out ones, and
        ``train_dataloader`` refuses it."""
        n = len(self.store)
        if self.val_every == 0:
            return list(range(n)), []
        val = [i for i in range(n) if i % self.val_every == 0]
        train = [i for i in range(n) if i % self.val_every != 0]
        return train, val

    def _no_train_episode(self) -> DataError:
        return DataError(f"{self.root} has {len(self.store)} episode(s) and all are validation "
                         f"with val_every={self.val_every}: set data.datamodule.val_every=0 "
                         "(VideoDataModule(val_every=0)) to train on every episode without "
                         "validation, or add episodes")

    def setup(self, stage: str | None = None) -> None:
        if self._set_up:
            return
        t0 = time.perf_counter()
        self.store.validate()  # a bad file fails here, naming it, not in a DataLoader worker
        log.info("validated the %d episodes of %s from their .npy headers in %.1f s",
                 len(self.store), self.root, time.perf_counter() - t0)
        train, val = self.split()
        common = dict(context_frames=self.context_frames, future_frames=self.future_frames,
                      resolution=self.resolution)
        if train:    # evaluation of a folder whose episodes are all held out needs none
            self.train_set = VideoClipDataset(self.store, train, stride=self.train_stride,
                                              deterministic=False, **common)
        elif stage in (None, "fit"):
            raise self._no_train_episode()
        if val:
            self.val_set = VideoClipDataset(self.store, val, deterministic=True,
                                            clips_per_episode=self.val_clips_per_episode, **common)
            self._warn_if_few_held_out(len(val))
        self._set_up = True

    def _warn_if_few_held_out(self, episodes: int) -> None:
        n = len(self.val_set)
        if n < MIN_HELD_OUT:
            log.warning("only %d held-out clips (%d episode(s) with val_every=%d, "
                        "val_clips_per_episode=%d): too few to compare models (fewer than %d); "
                        "lower data.datamodule.val_every or raise "
                        "data.datamodule.val_clips_per_episode", n, episodes, self.val_every,
                        self.val_clips_per_episode, MIN_HELD_OUT)

    def _loader(self, ds: Dataset, train: bool) -> DataLoader:
        common = dict(num_workers=self.num_workers, pin_memory=self.pin_memory,
                      persistent_workers=self.num_workers > 0)
        if not train:   # finite, sharded over ranks (each clip scored by one rank)
            return DataLoader(ds, batch_sampler=eval_batches(len(ds), self.batch_size,
                                                             self.trainer), **common)
        sampler = train_sampler(len(ds), self.batch_size, self.seed, self.trainer)
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, **common)

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        if self.train_set is None:
            raise self._no_train_episode()
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup("validate")
        return self._loader(self.val_set, train=False) if self.val_set is not None else []
