"""DINO-WM datasets (PushT, Rope, Granular, Wall) -> wm-episodes.

The paper compares with DINO-WM on its PushT, Rope and Granular data (RLVR-World Sec. 4.3,
Table 3). DINO-WM (Zhou et al., 2024) releases each dataset as a folder with

```
states.pth        float (N, T_max, S)        per-step simulator state (not stored here)
actions.pth       float (N, T_max, A)        or rel_actions.pth / abs_actions.pth (PushT)
seq_lengths.pkl   list/array of N ints       valid length of each episode (optional: T_max)
obses/episode_000.pth   uint8 (T, H, W, 3)  one tensor per episode (PushT, Wall)
  or 000000/obses.pth                        (the deformable Rope / Granular layout)
```

No sample of these releases is reachable from this project's machines, so the reader follows the
layout as published in DINO-WM's dataset code and is tested on a synthetic folder of the same
shapes. Departures: actions are stored per simulator step (DINO-WM concatenates ``frameskip``
actions when it subsamples frames; use the DataModule's clip settings instead); ``seq_lengths.pkl``
is unpickled with a restricted unpickler (builtins and numpy arrays only).
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

from wm.data.episodes import DataError, EpisodeWriter

_SAFE = {("builtins", "list"), ("builtins", "int"), ("builtins", "tuple"),
         ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
         ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
         ("numpy._core.multiarray", "scalar")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _SAFE:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _torch_load(path: Path) -> np.ndarray:
    import torch

    if not path.is_file():
        raise DataError(f"{path} not found; is this a DINO-WM dataset folder?")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise DataError(f"{path} is not a readable torch tensor file ({type(e).__name__}: {e})") from None
    return obj.numpy() if isinstance(obj, torch.Tensor) else np.asarray(obj)


class DinoWMSource:
    """Convert a DINO-WM dataset folder to episodes.

    Args:
        data_dir: folder with ``actions.pth`` (or ``actions_file``) and the observations.
        actions_file: ``actions.pth``; DINO-WM PushT also has ``rel_actions.pth``/``abs_actions.pth``.
        max_episodes: convert only the first episodes (None: all).
    """

    def __init__(self, data_dir: str, actions_file: str = "actions.pth",
                 max_episodes: int | None = None, overwrite: bool = False):
        self.data_dir, self.actions_file = Path(data_dir), actions_file
        self.max_episodes, self.overwrite = max_episodes, overwrite

    def _obs_path(self, i: int) -> Path:
        for p in (self.data_dir / "obses" / f"episode_{i:03d}.pth", self.data_dir / f"{i:06d}" / "obses.pth"):
            if p.is_file():
                return p
        raise DataError(f"observations of episode {i} not found in {self.data_dir} (looked for "
                        f"obses/episode_{i:03d}.pth and {i:06d}/obses.pth)")

    def _seq_lengths(self, n: int, t_max: int) -> np.ndarray:
        path = self.data_dir / "seq_lengths.pkl"
        if not path.is_file():
            return np.full(n, t_max, dtype=np.int64)
        try:
            with open(path, "rb") as f:
                lengths = np.asarray(_SafeUnpickler(f).load(), dtype=np.int64).reshape(-1)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            raise DataError(f"{path} is not a list of episode lengths ({e})") from None
        if len(lengths) != n or (lengths < 1).any() or (lengths > t_max).any():
            raise DataError(f"{path}: {len(lengths)} lengths for {n} episodes of at most {t_max} steps")
        return lengths

    def write(self, root: str | Path) -> Path:
        from tqdm import tqdm

        if not self.data_dir.is_dir():
            raise DataError(f"DINO-WM folder {self.data_dir} not found (see docs/data.md)")
        actions = _torch_load(self.data_dir / self.actions_file)
        if actions.ndim != 3:
            raise DataError(f"{self.data_dir / self.actions_file}: expected (N, T, A), got {actions.shape}")
        n, t_max, _ = actions.shape
        lengths = self._seq_lengths(n, t_max)
        count = n if self.max_episodes is None else min(n, self.max_episodes)
        with EpisodeWriter(root, source=f"dino_wm:{self.data_dir.name}", overwrite=self.overwrite) as w:
            for i in tqdm(range(count), desc="dino_wm", unit="ep"):
                path = self._obs_path(i)
                obs = _torch_load(path)
                t = int(lengths[i])
                if obs.ndim != 4 or obs.shape[-1] != 3 or obs.shape[0] < t:
                    raise DataError(f"{path}: expected (T>={t}, H, W, 3) frames, got {obs.shape}")
                frames = obs[:t]
                if frames.dtype != np.uint8:
                    scale = 255.0 if frames.max() <= 1.0 else 1.0  # some releases store [0, 1] floats
                    frames = np.clip(np.round(frames * scale), 0, 255).astype(np.uint8)
                w.add(frames, actions[i, :t].astype(np.float32), meta={"dino_wm_index": i})
        return Path(root)

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", required=True, help="DINO-WM dataset folder")
        p.add_argument("--actions-file", default="actions.pth")
        p.add_argument("--max-episodes", type=int, default=None)

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "DinoWMSource":
        return cls(a.data_dir, a.actions_file, a.max_episodes, a.overwrite)


if __name__ == "__main__":
    from wm.data.sources import cli_main
    cli_main(DinoWMSource)
