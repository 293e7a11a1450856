"""Write one benchmark's table into docs/benchmarks.md, between markers named after the bench.

Each benchmark owns one section; re-running it replaces only that section, so the page keeps
the others. Usage: ``write_section("datamodule", markdown_text)``.
"""
from __future__ import annotations

import platform
import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
README = Path(__file__).resolve().parents[1] / "README.md"
HEADER = "# Benchmarks\n\nEach section is written by the script named in it (`python bench/<name>.py`).\n"


def machine() -> str:
    """One line naming the machine a number was measured on."""
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), {dev}, torch {torch.__version__}"


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Render a list of dicts as a markdown table (floats to 4 significant digits)."""
    columns = columns or list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_section(name: str, body: str, doc: Path = DOC) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md with ``body``."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = doc.read_text() if doc.exists() else HEADER
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def write_readme_block(name: str, body: str, readme: Path = README) -> None:
    """Replace the README's block between ``<!-- name:begin -->`` and ``<!-- name:end -->``
    (both must be there: the README decides where a benchmark's result is shown)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = readme.read_text()
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme}: no {begin} ... {end} block to write the {name} result into")
    readme.write_text(pattern.sub(lambda _: f"{begin}\n{body.strip()}\n{end}", text))
