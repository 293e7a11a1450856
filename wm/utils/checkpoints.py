"""Read a checkpoint file with ``torch.load`` so that an unreadable one fails with one line.

Its one job: :func:`load_checkpoint_file`. A random-bytes file otherwise ends in a bare
``UnpicklingError`` or ``MemoryError``, a truncated one in a zip-archive ``RuntimeError`` that does
not name the file; here every such failure becomes a :class:`CheckpointError` (a ``ValueError``)
whose message names the file, says it is not a readable checkpoint and how to get a good one.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

DEFAULT_HINT = "re-run the training stage that writes it, or pass the path of a complete .ckpt file"
# torch.save's legacy (non-zip) format opens with the pickled magic number 0x1950a86a20f9469cfc6c
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be read (corrupt, truncated, or not a checkpoint)."""


def _cause(e: BaseException, limit: int = 100) -> str:
    """``Type: first line`` of an exception, shortened (torch's weights-only preamble dropped)."""
    text = (str(e).strip().splitlines() or [""])[0]
    if text.startswith("Weights only load failed"):
        text = ""
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _is_torch_file(path: Path) -> bool:
    """Whether the file is a complete torch.save archive (zip) or starts like a legacy one."""
    try:
        if zipfile.is_zipfile(path):
            return True
        with open(path, "rb") as f:
            return f.read(len(_LEGACY_MAGIC)) == _LEGACY_MAGIC
    except OSError:
        return False


def load_checkpoint_file(path: str | Path, weights_only: bool, map_location: Any = "cpu",
                         hint: str = DEFAULT_HINT, mmap: bool = False) -> Any:
    """``torch.load(path)``; a file that cannot be read raises one-line :class:`CheckpointError`.

    A missing file raises ``FileNotFoundError`` naming it (callers usually check first, with their
    own hint). ``hint`` ends the message: how to obtain a good checkpoint. A well-formed file that
    ``weights_only=True`` refuses (it pickles other objects than tensors and containers) gets its
    own message, since the file is not damaged. ``mmap``: tensors are mapped, not read (a cheap
    check of a zip-format file's structure; torch refuses it for the legacy format).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; {hint}")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only, mmap=mmap)
    except (pickle.UnpicklingError, MemoryError, RuntimeError, EOFError, ValueError, OSError,
            KeyError, IndexError, TypeError, AttributeError, ImportError, zipfile.BadZipFile) as e:
        torch_file = _is_torch_file(path)
        if weights_only and "Weights only load failed" in str(e) and torch_file:
            raise CheckpointError(
                f"{path} is a checkpoint whose contents weights_only loading refuses "
                f"({_cause(e)}); re-save it with plain tensors and containers, or {hint}") from None
        what = ("the file is empty" if path.stat().st_size == 0 else "a torch.save file that fails "
                "to load, so corrupt" if torch_file else "not a complete torch.save file, so "
                "truncated, corrupt or another kind of file")
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {what} "
                              f"({_cause(e)}); {hint}") from None
