"""Validation/test loaders are sharded over ranks (the Trainer runs with
``use_distributed_sampler=false``, so Lightning adds no DistributedSampler): with 2 ranks every
record is scored by exactly one rank, no rank scores all of them, and both ranks run the same
number of validation steps (each step holds collectives)."""
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from stage_fixtures import write_video_dataset
from wm.data.sampling import eval_batches


def _ranks(world: int):
    return [SimpleNamespace(world_size=world, global_rank=r) for r in range(world)]


@pytest.mark.parametrize("n,b,world", [(32, 8, 2), (33, 8, 2), (7, 4, 2), (5, 2, 3), (16, 3, 4),
                                       (1, 8, 1), (10, 4, 1)])
def test_eval_batches_partition_the_records(n, b, world):
    per_rank = [eval_batches(n, b, t) for t in _ranks(world)]
    assert len({len(bs) for bs in per_rank}) == 1, "ranks must run the same number of steps"
    flat = [i for bs in per_rank for batch in bs for i in batch]
    assert sorted(flat) == list(range(n))                  # each record once, none padded in
    assert all(0 < len(batch) <= b for bs in per_rank for batch in bs)


def test_single_process_batches_are_the_plain_loader_ones():
    assert eval_batches(10, 4, None) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_repeats_only_where_a_batch_would_be_empty():
    per_rank = [eval_batches(5, 1, t) for t in _ranks(2)]         # 3 steps each, 6 slots
    flat = [i for bs in per_rank for batch in bs for i in batch]
    assert len(per_rank[0]) == len(per_rank[1]) == 3
    assert set(flat) == set(range(5)) and len(flat) == 6           # one record scored twice


def _rows_per_rank(dm, key):
    rows = []
    for t in [None, *_ranks(2)]:
        dm.trainer = t
        rows.append(Counter(key(batch, i) for batch in dm.val_dataloader()
                            for i in range(len(batch["prompt"] if "prompt" in batch
                                               else batch["episode"]))))
    return rows


def test_text_val_loader_is_sharded():
    from wm.data.text import TextStateDataModule

    dm = TextStateDataModule("toy", batch_size=4, toy_train=16, toy_val=14, seed=0)
    whole, r0, r1 = _rows_per_rank(dm, lambda b, i: (b["prompt"][i], b["target"][i]))
    assert r0 and r1 and r0 + r1 == whole
    assert sum(whole.values()) == len(dm.val_items)


def test_video_val_loader_is_sharded(tmp_path):
    from wm.data.video import VideoDataModule

    root = write_video_dataset(tmp_path / "squares", episodes=8)
    dm = VideoDataModule(str(root), 2, 1, resolution=(16, 16), val_every=2, batch_size=3,
                         val_clips_per_episode=3)
    whole, r0, r1 = _rows_per_rank(dm, lambda b, i: (int(b["episode"][i]), int(b["start"][i])))
    assert r0 and r1 and r0 + r1 == whole
    assert sum(whole.values()) == len(dm.val_set)


@pytest.mark.slow
def test_two_rank_validation_scores_each_record_once(tmp_path):
    """Real 2-process DDP ``Trainer.validate``: the ranks' scored records are the dataset."""
    import json
    import os
    import subprocess
    import sys

    from stage_fixtures import ROOT

    out = tmp_path / "scored"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "ddp_val_probe.py"),
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    steps = [[json.loads(line) for line in Path(f"{out}.rank{r}").read_text().splitlines()]
             for r in (0, 1)]
    assert len(steps[0]) == len(steps[1]) > 0
    scored = Counter(tuple(row) for rank in steps for step in rank for row in step)
    everything = Counter(tuple(row) for row in json.loads(Path(f"{out}.all").read_text()))
    assert scored == everything
