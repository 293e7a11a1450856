"""Command line entry point: convert or generate a dataset into the wm-episodes format.

``python -m wm.data.prepare NAME --out DIR [source options]``; ``python -m wm.data.prepare NAME
--help`` lists a source's options. Sources are looked up in ``SOURCES`` (name -> class); see
docs/data.md for each one and for how to obtain the upstream data.
"""
from __future__ import annotations

import sys

from wm.data.sources import cli_main
from wm.data.sources.dino_wm import DinoWMSource
from wm.data.sources.frames_npz import FramesNpzSource
from wm.data.sources.oxe_rlds import OXERLDSSource
from wm.data.sources.pusht_demos import PushTDemosSource
from wm.data.sources.pusht_sim import PushTSimSource

SOURCES: dict[str, type] = {
    "pusht_sim": PushTSimSource,
    "pusht_demos": PushTDemosSource,
    "oxe_rlds": OXERLDSSource,
    "dino_wm": DinoWMSource,
    "frames_npz": FramesNpzSource,
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\nsources: " + ", ".join(SOURCES))
        return
    name = argv.pop(0)
    if name not in SOURCES:
        sys.exit(f"error: unknown dataset source {name!r}; valid names: {', '.join(SOURCES)}")
    cli_main(SOURCES[name], argv, prog=f"python -m wm.data.prepare {name}")


if __name__ == "__main__":
    main()
