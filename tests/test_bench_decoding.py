"""bench/bench_decoding.py (issue #16): every decoding of the true next-frame codes is scored
by the task's own frames_from_codes, the copy row and the paper's decoding equal the metrics
by hand, and the task's decoding settings are left as they were."""
from __future__ import annotations

import pytest
import torch

from bench.bench_decoding import THRESHOLDS, floors, reward
from stage_fixtures import RES, save_tiny_tokenizer, write_video_dataset
from wm.data.video import VideoDataModule
from wm.rewards.frame_metrics import mae
from wm.rewards.video import VideoReward
from wm.tasks.video import VideoTask


def test_floors_score_every_decoding_and_restore_the_task(tmp_path):
    root = write_video_dataset(tmp_path / "data", episodes=6, length=10)
    dm = VideoDataModule(str(root), 2, 1, resolution=(RES, RES), val_every=2, batch_size=3)
    dm.setup("validate")
    task = VideoTask(str(save_tiny_tokenizer(tmp_path / "tok.ckpt")), context_frames=2,
                     reward=VideoReward(weights={"mae": 1.0}), decoding="patch")
    task.connect(dm)
    rows = floors(task, dm.val_dataloader(), None)
    assert (task.decoding, task.delta_threshold, task.delta_dilate) == ("patch", 0.3, 2)
    assert len([k for k in rows if k.startswith("delta")]) == 3 * len(THRESHOLDS)
    clips = torch.cat([b["frames"].float() for b in dm.val_dataloader()])   # (N, T, 3, H, W)
    last, nxt = clips[:, 1], clips[:, 2]
    assert rows["copy last frame"]["mae"] == pytest.approx(float(mae(last, nxt).mean()), rel=1e-6)
    recon = task.tokenizer.decode(task.tokenizer.encode(nxt)).clamp(0, 1)
    assert rows["tokens"]["mae"] == pytest.approx(float(mae(recon, nxt).mean()), rel=1e-5)
    assert reward(rows["tokens"]) == -rows["tokens"]["mae"]            # no perceptual network
    # the decodings differ, and a delta decoding that redraws more pixels comes closer to the
    # paper's decoding inside changed cells: they are not all the same number
    assert len({round(r["mae"], 9) for r in rows.values()}) > 3
