"""VideoClipDataset and VideoDataModule: batch contract, sampling, split, resizing, errors."""
import logging

import numpy as np
import pytest
import torch

from wm.data.episodes import DataError, EpisodeStore, EpisodeWriter
from wm.data.video import VideoClipDataset, VideoDataModule, to_float_frames


def make_dataset(root, lengths=(12, 9, 15, 10, 11), hw=(16, 20), a=2, seed=0):
    rng = np.random.default_rng(seed)
    with EpisodeWriter(root, source="test") as w:
        for t in lengths:
            frames = rng.integers(0, 256, (t, *hw, 3), dtype=np.uint8)
            actions = (np.arange(t)[:, None] + 100 * np.arange(a)[None]).astype(np.float32)  # (T, A)
            w.add(frames, actions)
    return root


def test_to_float_frames_values_and_resize():
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 20, 3), dtype=np.uint8)
    x = to_float_frames(frames, None)
    assert x.shape == (3, 3, 16, 20) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    same = to_float_frames(frames, (16, 20))
    assert torch.equal(same, x)  # no resize when the size already matches
    small = to_float_frames(frames, (8, 10))
    assert small.shape == (3, 3, 8, 10) and 0 <= small.min() and small.max() <= 1
    # antialiased 2x downsampling of a constant image stays constant
    const = np.full((1, 16, 20, 3), 200, np.uint8)
    torch.testing.assert_close(to_float_frames(const, (8, 10)), torch.full((1, 3, 8, 10), 200 / 255))


def test_clip_items_match_the_episode(tmp_path):
    store = EpisodeStore(make_dataset(tmp_path / "ds"))
    ds = VideoClipDataset(store, [0, 1, 2], context_frames=3, future_frames=2)
    assert len(ds) == (12 - 4) + (9 - 4) + (15 - 4)  # every valid start once
    item = ds[len(ds) - 1]
    assert item["frames"].shape == (5, 3, 16, 20) and item["frames"].dtype == torch.float32
    assert item["actions"].shape == (5, 2) and item["actions"].dtype == torch.float32
    assert item["episode"].dtype == torch.int64 and item["start"].dtype == torch.int64
    ep, s = int(item["episode"]), int(item["start"])
    assert (ep, s) == (2, 10)
    expected = torch.from_numpy(np.array(store.frames(ep)[s:s + 5])).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(item["frames"], expected)
    torch.testing.assert_close(item["actions"][:, 0], torch.arange(s, s + 5, dtype=torch.float32))


def test_stride_windows_cover_every_start(tmp_path):
    store = EpisodeStore(make_dataset(tmp_path / "ds", lengths=(12,)))
    ds = VideoClipDataset(store, [0], context_frames=2, future_frames=1, stride=4)
    assert len(ds) == 3  # 10 valid starts in windows [0-3], [4-7], [8-9]
    torch.manual_seed(0)
    seen = {int(ds[k]["start"]) for _ in range(60) for k in range(len(ds))}
    assert seen == set(range(10))


def test_deterministic_clips_are_evenly_spaced(tmp_path):
    store = EpisodeStore(make_dataset(tmp_path / "ds", lengths=(21, 5)))
    ds = VideoClipDataset(store, [0, 1], 4, 1, deterministic=True, clips_per_episode=4)
    starts = [(int(ds[k]["episode"]), int(ds[k]["start"])) for k in range(len(ds))]
    assert starts == [(0, 0), (0, 5), (0, 11), (0, 16), (1, 0)]  # a 5-frame episode has one clip
    assert torch.equal(ds[2]["frames"], ds[2]["frames"])


def test_short_episodes_skipped_or_rejected(tmp_path, caplog):
    store = EpisodeStore(make_dataset(tmp_path / "ds", lengths=(3, 8, 4)))
    with caplog.at_level(logging.WARNING, logger="wm.data.video"):
        ds = VideoClipDataset(store, [0, 1, 2], context_frames=4, future_frames=1)
    assert ds.skipped == 2 and "skipping 2 of 3 episodes" in caplog.text
    assert set(ds.items[:, 0].tolist()) == {1}
    with pytest.raises(DataError, match="all 2 episodes .* shorter than a clip of 5 frames.*longest has 4"):
        VideoClipDataset(store, [0, 2], context_frames=4, future_frames=1)


def test_datamodule_batches_split_and_stats(tmp_path):
    root = make_dataset(tmp_path / "ds")
    dm = VideoDataModule(str(root), context_frames=3, future_frames=1, resolution=(8, 10),
                         batch_size=4, val_every=2, val_clips_per_episode=2, seed=1)
    dm.prepare_data()  # index exists: nothing to do
    dm.setup("fit")
    assert dm.split() == ([1, 3], [0, 2, 4])
    assert dm.action_dim == 2
    stats = dm.action_stats
    assert stats["min"].tolist() == [0.0, 100.0] and stats["max"].tolist() == [14.0, 114.0]
    assert stats["mean"].dtype == torch.float32 and stats["std"].shape == (2,)
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (4, 4, 3, 8, 10) and batch["frames"].dtype == torch.float32
    assert batch["actions"].shape == (4, 4, 2) and batch["episode"].shape == (4,)
    assert batch["episode"].dtype == torch.int64 and set(batch["episode"].tolist()) <= {1, 3}
    assert 0 <= batch["frames"].min() and batch["frames"].max() <= 1
    torch.testing.assert_close(batch["actions"][:, 0, 0], batch["start"].float())
    val = list(dm.val_dataloader())
    again = list(dm.val_dataloader())
    pairs = [(int(e), int(s)) for b in val for e, s in zip(b["episode"], b["start"])]
    assert pairs == [(0, 0), (0, 8), (2, 0), (2, 11), (4, 0), (4, 7)]
    assert all(torch.equal(a["frames"], b["frames"]) for a, b in zip(val, again))
    # the same seed gives the same training order
    dm2 = VideoDataModule(str(root), 3, 1, resolution=(8, 10), batch_size=4, val_every=2, seed=1)
    assert torch.equal(next(iter(dm2.train_dataloader()))["episode"], batch["episode"])


def test_datamodule_with_worker_processes(tmp_path):
    dm = VideoDataModule(str(make_dataset(tmp_path / "ds")), 2, 1, batch_size=3, num_workers=1)
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (3, 3, 3, 16, 20)


def test_tiny_datasets(tmp_path):
    three = make_dataset(tmp_path / "three", lengths=(6, 6, 6))
    dm = VideoDataModule(str(three), 2, 1, batch_size=2, val_every=100)
    dm.setup()
    assert dm.split() == ([1, 2], [0])
    assert len(dm.val_set) == 4
    one = make_dataset(tmp_path / "one", lengths=(6,))
    with pytest.raises(DataError, match="1 episode.*val_every=0"):
        VideoDataModule(str(one), 2, 1, val_every=100).setup()
    dm = VideoDataModule(str(one), 2, 1, batch_size=2, val_every=0)
    dm.setup()
    assert len(dm.train_set) == 4 and dm.val_dataloader() == []  # 6 frames, clips of 3


def test_prepare_data_uses_the_source_or_explains(tmp_path):
    root = tmp_path / "made"
    with pytest.raises(DataError, match=r"no dataset at .*made.*wm\.data\.prepare"):
        VideoDataModule(str(root), 2, 1).prepare_data()

    class Source:
        calls = 0

        def write(self, r):
            Source.calls += 1
            make_dataset(r, lengths=(5, 5))

    dm = VideoDataModule(str(root), 2, 1, batch_size=1, source=Source())
    dm.prepare_data()
    dm.prepare_data()  # already there: not regenerated
    assert Source.calls == 1 and len(dm.store) == 2
