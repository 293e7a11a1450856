"""Your own video as wm-episodes: one episode per ``.npz`` file of frames (and actions).

For any recording saved as arrays: iVideoGPT's ``inference/samples/fractal_sample.npz`` (a real
RT-1 episode, ``image`` (22, 256, 320, 3) uint8, no actions), or frames and actions exported
from another project's dataset. Every layout option is explicit and validated; a shape or value
range that does not fit is a ``DataError`` naming the file, what was seen and the option, never a
guess:

- ``frames_key`` (default ``image``) names the frame array; ``actions_key`` the action array
  (default: ``action`` or ``actions`` when present; (T, A), or (T,) read as (T, 1)).
- ``channel_order``: ``last`` (T, H, W, C), ``first`` (T, C, H, W), or ``auto`` (whichever
  single axis, 1 or 3, has C = 3 x stacked channels; both or neither is an error).
- ``stacked=N``: each step holds N RGB frames stacked on the channel axis (C = 3N) or on a
  5-d axis 1 ((T, N, ...)), oldest first, newest last; the newest frame of each stack is kept.
- ``pixel_range``: integer frames hold 0..255; float frames are scaled from [0, 1] (x 255) or
  taken as [0, 255]. ``auto`` decides from the values (max <= 1 means [0, 1]); ``0-1`` and
  ``0-255`` say it and check it.

A file without an action array gets all-zero actions of ``action_dim`` (13 = RT-1) and a
warning: such data serves tokenizer training, demos and smoke tests, not action-conditioned
training (the paper's models are action-conditioned, RLVR-World Sec. 4.2).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from wm.data.episodes import DataError, EpisodeWriter

log = logging.getLogger(__name__)

ACTION_KEYS = ("action", "actions")
CHANNEL_ORDERS = ("auto", "first", "last")
PIXEL_RANGES = ("auto", "0-1", "0-255")
ZERO_ACTION_DIM = 13  # RT-1's action width, for action-free samples such as the RT-1 sample


def load_npz(path: Path) -> np.lib.npyio.NpzFile:
    """np.load an .npz with errors that name the file."""
    if not path.is_file():
        raise DataError(f"{path} not found; pass the path of an existing .npz file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable .npz file ({e}); pass a complete .npz "
                        "file") from None


def select_frames(frames: np.ndarray, file: Path, channel_order: str = "auto",
                  stacked: int = 1) -> np.ndarray:
    """The newest RGB frame of each step as (T, H, W, 3), from the layout the options describe.

    Only the shape is looked at; ``frames`` may be of any dtype (see :func:`to_uint8`).
    """
    if channel_order not in CHANNEL_ORDERS:
        raise DataError(f"--channel-order must be one of {', '.join(CHANNEL_ORDERS)}, "
                        f"got {channel_order!r}")
    shape, where = tuple(frames.shape), f"{file}: frames {tuple(frames.shape)}"
    if frames.ndim == 5:  # (T, N, C, H, W) or (T, N, H, W, C): N stacked frames on axis 1
        if stacked != shape[1]:
            raise DataError(f"{where} look like {shape[1]} stacked frames on axis 1 but --stacked "
                            f"is {stacked}: pass --stacked {shape[1]} if axis 1 stacks frames")
        frames, stacked, where = frames[:, -1], 1, where + f" (newest of {shape[1]} stacked)"
    if frames.ndim != 4:
        raise DataError(f"{where} must be 4-d (T, H, W, 3) or (T, 3, H, W) (5-d with --stacked "
                        "N); grayscale or other layouts: convert them to RGB first")
    want, (c1, c3) = 3 * stacked, (frames.shape[1], frames.shape[3])
    if channel_order == "auto" and c1 == want and c3 == want:
        raise DataError(f"{where} have {want} channels on axis 1 and on axis 3: pass "
                        "--channel-order first|last to say which one holds the channels")
    if channel_order == "auto" and want not in (c1, c3):
        hint = next((f"; if axis {ax} stacks {c // 3} RGB frames, pass --stacked {c // 3}"
                     for ax, c in ((1, c1), (3, c3)) if stacked == 1 and c > 3 and c % 3 == 0),
                    "; drop the alpha channel first" if 4 in (c1, c3) else "")
        raise DataError(f"{where}: --stacked {stacked} needs {want} channels on axis 1 or 3, "
                        f"found {c1} and {c3}{hint}")
    use_first = channel_order == "first" or (channel_order == "auto" and c1 == want)
    axis = 1 if use_first else 3
    if frames.shape[axis] != want:
        raise DataError(f"{where}: --channel-order {'first' if use_first else 'last'} --stacked "
                        f"{stacked} needs {want} channels on axis {axis}, found "
                        f"{frames.shape[axis]}; set --channel-order and --stacked to the layout")
    if use_first:
        return frames[:, -3:].transpose(0, 2, 3, 1)  # (T, H, W, 3), newest of each stack
    return frames[..., -3:]


def to_uint8(frames: np.ndarray, file: Path, pixel_range: str = "auto") -> np.ndarray:
    """Pixels -> uint8 0..255: [0, 1] is scaled by 255, [0, 255] kept, anything else refused."""
    if pixel_range not in PIXEL_RANGES:
        raise DataError(f"--pixel-range must be one of {', '.join(PIXEL_RANGES)}, "
                        f"got {pixel_range!r}")
    if frames.dtype == np.uint8 and pixel_range != "0-1":
        return frames
    kind = frames.dtype.kind
    if kind not in "uif":
        raise DataError(f"{file}: frames are {frames.dtype}; expected integer or float pixels")
    if kind == "f" and not np.isfinite(frames).all():
        raise DataError(f"{file}: frames contain NaN or inf; clean the pixels before converting")
    lo, hi = (frames.min().item(), frames.max().item()) if frames.size else (0, 0)
    seen = f"{file}: {frames.dtype} frames hold values in [{lo:g}, {hi:g}]"
    unit = pixel_range == "0-1" or (pixel_range == "auto" and kind == "f" and lo >= 0 and hi <= 1)
    top = 1 if unit else 255
    if lo < 0 or hi > top:
        if pixel_range != "auto":
            fix = (f"expected [0, {top}] (--pixel-range {pixel_range}): rescale the frames or "
                   "pass the --pixel-range they use")
        elif kind == "f":
            fix = ("expected [0, 1] or [0, 255]: rescale the frames to one of them "
                   "(--pixel-range 0-1|0-255 says which)")
        else:
            fix = "expected 0..255: rescale the frames (--pixel-range 0-1 for 0/1 values)"
        raise DataError(f"{seen}, {fix}")
    if unit:
        log.info("%s: scaling %s frames from [0, 1] to 0..255", file, frames.dtype)
        return np.rint(frames.astype(np.float64) * 255.0).astype(np.uint8)
    return np.rint(frames).astype(np.uint8) if kind == "f" else frames.astype(np.uint8)


def read_actions(data, file: Path, key: str | None, t: int) -> tuple[np.ndarray | None, str | None]:
    """``(actions float32 (T, A), key)`` from the .npz, or ``(None, None)`` when it has none."""
    if key is None:
        found = [k for k in ACTION_KEYS if k in data.files]
        if len(found) > 1:
            raise DataError(f"{file} has both 'action' and 'actions' arrays: pass --actions-key "
                            "to say which holds the actions")
        if not found:
            return None, None
        key = found[0]
    elif key not in data.files:
        raise DataError(f"{file} has no '{key}' array (keys: {data.files}); pass the action "
                        "array's name as --actions-key")
    actions = data[key]
    if actions.ndim == 1:
        actions = actions[:, None]  # (T,) -> (T, 1)
    if actions.ndim != 2 or actions.dtype.kind not in "buif":
        raise DataError(f"{file}: '{key}' is {actions.dtype} {actions.shape}; actions must be "
                        "numeric (T, A) or (T,): pass the right array as --actions-key")
    if actions.shape[0] != t:
        raise DataError(f"{file}: '{key}' is {actions.shape} for {t} frames; the format needs one "
                        "action per frame (actions[t] is applied at frame t): append a final "
                        "action or drop the frames without one")
    actions = actions.astype(np.float32)
    if not np.isfinite(actions).all():
        raise DataError(f"{file}: '{key}' contains NaN or inf; clean the actions first")
    return actions, key


def npz_files(path: str | Path | Sequence[str | Path]) -> list[Path]:
    """The .npz files a ``--path`` names: files as given, a folder's ``*.npz`` sorted by name."""
    out = []
    for p in ([path] if isinstance(path, (str, Path)) else list(path)):
        p = Path(p)
        if p.is_dir():
            found = sorted(p.glob("*.npz"))
            if not found:
                raise DataError(f"folder {p} holds no .npz files; pass .npz files or their folder "
                                "as --path")
            out += found
        else:
            out.append(p)
    if not out:
        raise DataError("no input given: pass one or more .npz files or a folder as --path")
    return out


class FramesNpzSource:
    """Write each .npz file (or each one in a folder) as one episode of frames and actions.

    Args:
        path: an .npz file, a folder of them (sorted by name), or a list of either.
        action_dim: width of the actions; checked against the action array when there is one,
            the width of the all-zero actions when there is none (default 13 = RT-1).
        language: optional instruction stored with every episode.
        frames_key, actions_key, channel_order, stacked, pixel_range: see the module docstring.
    """

    def __init__(self, path, action_dim: int | None = None, language: str | None = None,
                 overwrite: bool = False, frames_key: str = "image", actions_key: str | None = None,
                 channel_order: str = "auto", stacked: int = 1, pixel_range: str = "auto"):
        self.path, self.language, self.overwrite = path, language, overwrite
        self.action_dim = None if action_dim is None else int(action_dim)
        self.frames_key, self.actions_key = frames_key, actions_key
        self.channel_order, self.stacked = channel_order, int(stacked)
        self.pixel_range = pixel_range
        if self.action_dim is not None and self.action_dim < 1:
            raise DataError(f"--action-dim must be >= 1, got {action_dim}")
        if self.stacked < 1:
            raise DataError(f"--stacked must be >= 1 (frames per stack), got {stacked}")
        if channel_order not in CHANNEL_ORDERS or pixel_range not in PIXEL_RANGES:
            raise DataError(f"--channel-order must be one of {', '.join(CHANNEL_ORDERS)} and "
                            f"--pixel-range one of {', '.join(PIXEL_RANGES)}, got "
                            f"{channel_order!r} and {pixel_range!r}")

    def read(self, file: Path) -> tuple[np.ndarray, np.ndarray, dict]:
        """``(frames uint8 (T, H, W, 3), actions float32 (T, A), meta)`` of one file (all-zero
        actions with a warning when it has no action array)."""
        data = load_npz(file)
        if self.frames_key not in data.files:
            raise DataError(f"{file} has no '{self.frames_key}' array (keys: {data.files}); pass "
                            "the frame array's name as --frames-key")
        raw = data[self.frames_key]
        frames = to_uint8(select_frames(raw, file, self.channel_order, self.stacked), file,
                          self.pixel_range)
        actions, key = read_actions(data, file, self.actions_key, frames.shape[0])
        if actions is not None and self.action_dim not in (None, actions.shape[1]):
            raise DataError(f"{file}: --action-dim {self.action_dim} but '{key}' has "
                            f"{actions.shape[1]} dims: drop --action-dim or fix the array")
        if actions is None:
            dim = self.action_dim or ZERO_ACTION_DIM
            log.warning("%s holds no actions (no %s array among %s; name it with --actions-key): "
                        "writing %d frames with all-zero %d-d actions (fine for tokenizer training "
                        "and demos, not for action-conditioned training)", file,
                        "/".join(ACTION_KEYS), data.files, frames.shape[0], dim)
            actions = np.zeros((frames.shape[0], dim), np.float32)  # (T, A)
        meta = {"file": file.name, "frames": f"'{self.frames_key}' {raw.dtype} {tuple(raw.shape)}",
                "actions": f"'{key}'" if key else "zeros (source has none)"}
        return np.ascontiguousarray(frames), actions, meta

    def write(self, root: str | Path) -> Path:
        files = npz_files(self.path)
        source = f"frames_npz:{files[0].name if len(files) == 1 else files[0].parent.name}"
        first = None  # meta of the first file: all files must agree on having actions
        with EpisodeWriter(root, source=source, overwrite=self.overwrite) as w:
            for file in files:
                frames, actions, meta = self.read(file)
                first = first or meta
                zeros = meta["actions"].startswith("zeros")
                if zeros != first["actions"].startswith("zeros"):
                    raise DataError(f"{file} has {'no actions' if zeros else 'an action array'} "
                                    f"while {first['file']} has {'one' if zeros else 'none'}: give "
                                    "every file an action array (named by --actions-key) or none")
                try:
                    w.add(frames, actions, language=self.language, meta=meta)
                except DataError as e:
                    raise DataError(f"{file}: {e}") from None
        return Path(root)

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--path", required=True, nargs="+",
                       help=".npz file(s) or folder(s) of them; one episode per file")
        p.add_argument("--frames-key", default="image", help="name of the frame array")
        p.add_argument("--actions-key", default=None,
                       help="name of the action array (T, A) (default: 'action' or 'actions')")
        p.add_argument("--channel-order", choices=CHANNEL_ORDERS, default="auto",
                       help="last: (T,H,W,C); first: (T,C,H,W); auto: the one axis that fits")
        p.add_argument("--stacked", type=int, default=1, metavar="N",
                       help="RGB frames stacked per step (C = 3N, newest last); keeps the newest")
        p.add_argument("--pixel-range", choices=PIXEL_RANGES, default="auto",
                       help="range of the pixel values; 0-1 is scaled by 255")
        p.add_argument("--action-dim", type=int, default=None,
                       help="action width (checked; zero actions get 13 when there are none)")
        p.add_argument("--language", default=None)

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "FramesNpzSource":
        return cls(a.path, a.action_dim, a.language, a.overwrite, frames_key=a.frames_key,
                   actions_key=a.actions_key, channel_order=a.channel_order, stacked=a.stacked,
                   pixel_range=a.pixel_range)


if __name__ == "__main__":
    from wm.data.sources import cli_main
    cli_main(FramesNpzSource)
