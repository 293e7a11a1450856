"""One action-free episode from an ``.npz`` holding only an ``image`` array -> wm-episodes.

For samples such as iVideoGPT's ``inference/samples/fractal_sample.npz`` (a real RT-1 episode,
``image`` (22, 256, 320, 3) uint8, no actions). The paper's models are action-conditioned
(RLVR-World Sec. 4.2), so actions are filled with zeros of ``action_dim`` (13 = RT-1) and a
warning is logged: such data serves tokenizer training, demos and smoke tests, not real
action-conditioned training.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from wm.data.episodes import DataError, EpisodeWriter

log = logging.getLogger(__name__)


def load_npz(path: Path) -> np.lib.npyio.NpzFile:
    """np.load an .npz with errors that name the file."""
    if not path.is_file():
        raise DataError(f"{path} not found; pass the path of an existing .npz file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable .npz file ({e})") from None


class FramesNpzSource:
    """Write the ``image`` array of an .npz as one episode with zero actions.

    Args:
        path: the .npz file (key ``image``: uint8 (T, H, W, 3)).
        action_dim: width of the all-zero action vectors (13 = RT-1).
        language: optional instruction stored with the episode.
    """

    def __init__(self, path: str, action_dim: int = 13, language: str | None = None,
                 overwrite: bool = False):
        self.path, self.action_dim = Path(path), int(action_dim)
        self.language, self.overwrite = language, overwrite
        if self.action_dim < 1:
            raise DataError(f"action_dim must be >= 1, got {action_dim}")

    def write(self, root: str | Path) -> Path:
        data = load_npz(self.path)
        if "image" not in data.files:
            raise DataError(f"{self.path} has no 'image' array (keys: {data.files}); expected "
                            "uint8 (T, H, W, 3)")
        frames = data["image"]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise DataError(f"{self.path}: 'image' must be (T, H, W, 3), got {frames.shape}")
        if frames.dtype != np.uint8:
            if frames.min() < 0 or frames.max() > 255:
                raise DataError(f"{self.path}: 'image' is {frames.dtype} with values outside 0..255")
            frames = frames.round().astype(np.uint8)
        log.warning("%s holds no actions: writing %d frames with all-zero %d-d actions (fine for "
                    "tokenizer training and demos, not for action-conditioned training)",
                    self.path, frames.shape[0], self.action_dim)
        actions = np.zeros((frames.shape[0], self.action_dim), np.float32)  # (T, A)
        with EpisodeWriter(root, source=f"frames_npz:{self.path.name}", overwrite=self.overwrite) as w:
            w.add(frames, actions, language=self.language,
                  meta={"file": self.path.name, "actions": "zeros (source has none)"})
        return Path(root)

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--path", required=True, help=".npz file with an 'image' (T,H,W,3) array")
        p.add_argument("--action-dim", type=int, default=13)
        p.add_argument("--language", default=None)

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "FramesNpzSource":
        return cls(a.path, a.action_dim, a.language, a.overwrite)


if __name__ == "__main__":
    from wm.data.sources import cli_main
    cli_main(FramesNpzSource)
