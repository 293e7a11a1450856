"""PushT human demonstrations in the diffusion-policy replay-buffer layout -> wm-episodes.

The paper's PushT world model (RLVR-World Sec. 4.3) trains on recorded PushT trajectories. The
widely used release is diffusion-policy's ``pusht_cchi_v7_replay.zarr``: a replay buffer with
``data/img`` (N, 96, 96, 3) (float32 0..255 upstream), ``data/action`` (N, 2) (target agent
position, pixels in [0, 512]) and ``meta/episode_ends`` (E,) (exclusive cumulative ends).
This source reads that layout from an ``.npz`` with keys ``img``, ``action``, ``episode_ends``
(as ../shared/data/pusht/pusht_demos.npz), or from the zarr folder itself when the optional
``zarr`` package is installed. Frames are stored as uint8 (rounded; the upstream values are
integral), actions unchanged as float32.

``frame_skip=k`` keeps every k-th frame and concatenates the k actions between kept frames into
one 2k-dimensional action (time order), as DINO-WM prepares PushT (frameskip 5); an episode's last
``T mod k`` frames are dropped so every kept frame has its k actions.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from wm.data.episodes import DataError, EpisodeWriter
from wm.data.sources.frames_npz import load_npz

log = logging.getLogger(__name__)


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(img (N,H,W,3), action (N,A), episode_ends (E,)) from an .npz or a zarr replay buffer."""
    if path.is_dir():
        try:
            import zarr
        except ImportError:
            raise DataError(f"{path} is a zarr folder but the `zarr` package is not installed; "
                            "install zarr or convert it to an .npz with img/action/episode_ends") from None
        try:
            z = zarr.open(str(path), mode="r")
            return z["data/img"], z["data/action"], np.asarray(z["meta/episode_ends"])
        except (KeyError, ValueError) as e:
            raise DataError(f"{path}: not a diffusion-policy replay buffer (needs data/img, "
                            f"data/action, meta/episode_ends): {e}") from None
    data = load_npz(path)
    missing = [k for k in ("img", "action", "episode_ends") if k not in data.files]
    if missing:
        raise DataError(f"{path} lacks {missing} (keys: {data.files}); expected the diffusion-policy "
                        "layout img (N,H,W,3), action (N,2), episode_ends (E,)")
    return data["img"], data["action"], data["episode_ends"]


class PushTDemosSource:
    """Convert diffusion-policy PushT demonstrations (``.npz`` or ``.zarr``) to episodes.

    Args:
        path: the .npz file or zarr folder.
        max_episodes: convert only the first episodes (None: all).
        frame_skip: keep every k-th frame; actions become ``2 * frame_skip`` dims.
    """

    def __init__(self, path: str, max_episodes: int | None = None, overwrite: bool = False,
                 frame_skip: int = 1):
        if frame_skip < 1:
            raise DataError(f"pusht_demos: frame_skip must be >= 1, got {frame_skip}")
        self.path, self.max_episodes, self.overwrite = Path(path), max_episodes, overwrite
        self.frame_skip = frame_skip

    def write(self, root: str | Path) -> Path:
        from tqdm import tqdm

        if not self.path.exists():
            raise DataError(f"{self.path} not found; pass the PushT .npz or .zarr path "
                            "(see docs/data.md for how to obtain it)")
        img, action, ends = _read_arrays(self.path)
        ends = np.asarray(ends, dtype=np.int64)
        if len(img) != len(action) or len(ends) == 0 or ends[-1] != len(img) or (np.diff(ends) <= 0).any():
            raise DataError(f"{self.path}: episode_ends must increase strictly and end at the number "
                            f"of frames ({len(img)} images, {len(action)} actions, last end "
                            f"{ends[-1] if len(ends) else None})")
        n = len(ends) if self.max_episodes is None else min(self.max_episodes, len(ends))
        starts = np.concatenate([[0], ends[:-1]])
        dropped: list[int] = []  # demos shorter than two kept frames
        with EpisodeWriter(root, source=f"pusht_demos:{self.path.name}", overwrite=self.overwrite) as w:
            for e in tqdm(range(n), desc="pusht_demos", unit="ep"):
                frames = np.asarray(img[starts[e]:ends[e]])  # (T, 96, 96, 3)
                if frames.dtype != np.uint8:
                    if frames.min() < 0 or frames.max() > 255:
                        raise DataError(f"{self.path}: img is {frames.dtype} with values outside 0..255")
                    frames = frames.round().astype(np.uint8)
                actions = np.asarray(action[starts[e]:ends[e]], dtype=np.float32)
                k = self.frame_skip
                kept = len(frames) // k  # (T,) -> (T//k,): frame t*k and actions t*k .. t*k+k-1
                if kept < 2:
                    dropped.append(int(e))
                    continue
                w.add(frames[:kept * k:k], actions[:kept * k].reshape(kept, -1), meta={"demo": int(e)})
        if dropped:
            log.warning("pusht_demos: dropped %d demos shorter than 2 frames at frame_skip %d: %s",
                        len(dropped), self.frame_skip, dropped[:10])
        return Path(root)

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--path", required=True, help="pusht .npz (img/action/episode_ends) or .zarr")
        p.add_argument("--max-episodes", type=int, default=None)
        p.add_argument("--frame-skip", type=int, default=1,
                       help="keep every k-th frame; the k actions in between become one 2k-d action")

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "PushTDemosSource":
        return cls(a.path, a.max_episodes, a.overwrite, a.frame_skip)


if __name__ == "__main__":
    from wm.data.sources import cli_main
    cli_main(PushTDemosSource)
