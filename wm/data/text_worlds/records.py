"""Reading text-world records from (gzipped) JSON / JSON-lines files, with field checks that
name the file, the line and the missing field."""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any


def open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def find_file(folder: Path, name: str) -> Path:
    """``folder/name`` or ``folder/name.gz``; a clear error when neither exists."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"ByteSized32 data: neither {folder / name} nor {folder / name}.gz "
                            'exists (see docs/data.md, "ByteSized32 and WebArena (text worlds)")')


def check_fields(record: Any, fields: tuple[str, ...], where: str) -> dict:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [f for f in fields if f not in record]
    if missing:
        raise KeyError(f"{where}: record is missing fields {missing} "
                       '(see docs/data.md, "ByteSized32 and WebArena (text worlds)")')
    return record


def read_jsonl(path: Path, fields: tuple[str, ...]) -> list[dict]:
    """All records of a (gzipped) JSON-lines file, checking ``fields``."""
    out = []
    with open_text(path) as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                except ValueError as err:
                    raise ValueError(f"{path}:{i}: not valid JSON ({err})") from None
                out.append(check_fields(rec, fields, f"{path}:{i}"))
    return out
