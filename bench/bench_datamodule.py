"""Throughput of the VideoDataModule training loader (clips per second).

Synthetic random episodes are written with EpisodeWriter into a temporary folder (so the numbers
include memory-mapped reads from disk / page cache, uint8 -> float conversion, optional
antialiased resize and collation), then the train loader is iterated for a fixed number of
batches after a short warm-up. Clips are context 4 + future 1 frames, batch 8.

Run: ``python bench/bench_datamodule.py`` (writes the "datamodule" section of docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import machine, markdown_table, write_section  # noqa: E402
from wm.data.episodes import EpisodeWriter  # noqa: E402
from wm.data.video import VideoDataModule  # noqa: E402


def write_synthetic(root: Path, hw: tuple[int, int], episodes: int, length: int) -> None:
    rng = np.random.default_rng(0)
    with EpisodeWriter(root, source="bench") as w:
        for _ in range(episodes):
            w.add(rng.integers(0, 256, (length, *hw, 3), dtype=np.uint8),
                  rng.normal(size=(length, 13)).astype(np.float32))


def clips_per_second(root: Path, resolution, num_workers: int, batches: int, batch_size: int = 8) -> float:
    dm = VideoDataModule(str(root), context_frames=4, future_frames=1, resolution=resolution,
                         batch_size=batch_size, num_workers=num_workers, val_every=0, seed=0)
    it = iter(dm.train_dataloader())
    for _ in range(2):  # warm-up: worker start, page cache
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        assert batch["frames"].shape[:2] == (batch_size, 5)
    return batches * batch_size / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--no-write", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    cases = [  # (stored H, W), (returned H, W)
        ((64, 64), (64, 64)),
        ((256, 320), (256, 320)),
        ((256, 320), (64, 80)),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stored, out in cases:
            root = Path(tmp) / f"{stored[0]}x{stored[1]}"
            if not root.exists():
                write_synthetic(root, stored, episodes=12, length=40)
            for workers in (0, 2):
                cps = clips_per_second(root, out, workers, args.batches)
                rows.append({"stored": f"{stored[0]}x{stored[1]}", "returned": f"{out[0]}x{out[1]}",
                             "num_workers": workers, "clips/s": cps,
                             "MB/s (float32 out)": cps * 5 * 3 * out[0] * out[1] * 4 / 1e6})
                print(rows[-1], flush=True)
    table = markdown_table(rows)
    print(table)
    if not args.no_write:
        write_section("datamodule", "## VideoDataModule train loader (`bench/bench_datamodule.py`)\n\n"
                      f"Clips of 4 context + 1 future frames, batch 8, {args.batches} batches after 2 "
                      "warm-up batches; synthetic episodes (12 x 40 frames) in a temporary folder.\n"
                      f"Machine: {machine()}, {os.cpu_count()} CPU cores.\n"
                      "With `num_workers > 0` every float32 clip crosses a process boundary (4x the "
                      "bytes of the uint8 frames); on a machine with few cores that costs more than "
                      "the parallel decoding saves.\n\n" + table)


if __name__ == "__main__":
    main()
