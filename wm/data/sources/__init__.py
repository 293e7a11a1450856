"""Converters from upstream dataset formats to the wm-episodes format (see docs/data.md).

Every source is a class with ``write(root)`` (convert into ``root``), a static
``add_arguments(parser)`` and a ``from_args(namespace)`` classmethod, so that
``python -m wm.data.sources.<module> --out DIR`` and ``python -m wm.data.prepare NAME --out DIR``
share one command-line definition.
"""
from __future__ import annotations

import argparse
import sys


def build_parser(source_cls: type, prog: str | None = None) -> argparse.ArgumentParser:
    """Argument parser for one source: ``--out``, ``--overwrite`` and the source's own options."""
    p = argparse.ArgumentParser(prog=prog, description=(source_cls.__doc__ or "").split("\n")[0])
    p.add_argument("--out", required=True, help="output dataset folder (wm-episodes format)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    source_cls.add_arguments(p)
    return p


def cli_main(source_cls: type, argv: list[str] | None = None, prog: str | None = None) -> None:
    """Parse ``argv``, build the source and write the dataset; user errors exit with one line."""
    from wm.data.episodes import DataError

    args = build_parser(source_cls, prog).parse_args(argv)
    try:
        root = source_cls.from_args(args).write(args.out)
    except DataError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {root}")
