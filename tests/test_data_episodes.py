"""The wm-episodes format: writer/reader round trip, atomic writes and every bad-input error."""
import json
import pickle

import numpy as np
import pytest

from wm.data.episodes import DataError, EpisodeStore, EpisodeWriter


def _episodes(rng, lengths=(7, 5, 9), hw=(6, 8), a=3):
    return [(rng.integers(0, 256, (t, *hw, 3), dtype=np.uint8),
             rng.normal(size=(t, a)).astype(np.float32)) for t in lengths]


def _write(root, eps, **kw):
    with EpisodeWriter(root, source="test", **kw) as w:
        for i, (f, a) in enumerate(eps):
            w.add(f, a, language=f"task {i}" if i else None, meta={"i": i} if i else None)
    return root


def test_round_trip_and_stats(tmp_path):
    eps = _episodes(np.random.default_rng(0))
    store = EpisodeStore(_write(tmp_path / "ds", eps))
    assert len(store) == 3 and store.lengths.tolist() == [7, 5, 9] and store.lengths.dtype == np.int64
    assert store.frame_shape == (6, 8, 3) and store.action_dim == 3 and store.source == "test"
    for i, (f, a) in enumerate(eps):
        frames = store.frames(i)
        assert isinstance(frames, np.memmap) and frames.dtype == np.uint8 and not frames.flags.writeable
        np.testing.assert_array_equal(frames, f)
        assert store.actions(i).dtype == np.float32
        np.testing.assert_array_equal(store.actions(i), a)
    assert store.language(0) is None and store.language(2) == "task 2"
    assert store.meta(1) == {"language": "task 1", "i": 1} and store.meta(0) == {}
    allact = np.concatenate([a for _, a in eps]).astype(np.float64)
    st = store.stats["action"]
    np.testing.assert_allclose(st["min"], allact.min(0), rtol=0, atol=1e-7)
    np.testing.assert_allclose(st["max"], allact.max(0), rtol=0, atol=1e-7)
    np.testing.assert_allclose(st["mean"], allact.mean(0), atol=1e-9)
    np.testing.assert_allclose(st["std"], allact.std(0), atol=1e-9)
    assert store.stats["num_frames"] == 21
    index = json.loads((tmp_path / "ds" / "index.json").read_text())
    assert index["format"] == "wm-episodes" and index["version"] == 1
    assert index["episodes"][1] == {"name": "ep_000001", "length": 5, "language": "task 1"}
    # the store pickles (DataLoader workers) without its open memory maps
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.frames(2), eps[2][0])


def test_nothing_visible_until_close_and_abort_on_error(tmp_path):
    root = tmp_path / "ds"
    w = EpisodeWriter(root, source="test")
    f, a = _episodes(np.random.default_rng(1), lengths=(4,))[0]
    w.add(f, a)
    assert not root.exists() and (tmp_path / "ds.partial").is_dir()
    w.close()
    assert (root / "index.json").is_file() and not (tmp_path / "ds.partial").exists()
    with pytest.raises(RuntimeError):
        with EpisodeWriter(tmp_path / "other", source="test") as w2:
            w2.add(f, a)
            raise RuntimeError("interrupted")
    assert not (tmp_path / "other").exists() and not (tmp_path / "other.partial").exists()


def test_overwrite(tmp_path):
    rng = np.random.default_rng(2)
    root = _write(tmp_path / "ds", _episodes(rng))
    with pytest.raises(DataError, match="overwrite"):
        EpisodeWriter(root, source="test")
    _write(root, _episodes(rng, lengths=(4,)), overwrite=True)
    assert len(EpisodeStore(root)) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    _write(empty, _episodes(rng, lengths=(3,)))  # an existing empty folder is fine
    assert EpisodeStore(empty).lengths.tolist() == [3]


@pytest.mark.parametrize("frames,actions,match", [
    (np.zeros((4, 6, 8, 3), np.float32), np.zeros((4, 3), np.float32), "uint8"),
    (np.zeros((4, 6, 8), np.uint8), np.zeros((4, 3), np.float32), r"\(T>=1, H, W, 3\)"),
    (np.zeros((4, 6, 8, 3), np.uint8), np.zeros((5, 3), np.float32), "T=4"),
    (np.zeros((4, 6, 8, 3), np.uint8), np.zeros((4, 3), np.int64), "float"),
    (np.zeros((4, 6, 8, 3), np.uint8), np.full((4, 3), np.nan, np.float32), "NaN"),
    (np.zeros((4, 5, 8, 3), np.uint8), np.zeros((4, 3), np.float32), "frame shape"),
    (np.zeros((4, 6, 8, 3), np.uint8), np.zeros((4, 2), np.float32), "action_dim"),
])
def test_writer_rejects_bad_arrays(tmp_path, frames, actions, match):
    with EpisodeWriter(tmp_path / "ds", source="test") as w:
        w.add(np.zeros((4, 6, 8, 3), np.uint8), np.zeros((4, 3), np.float32))
        with pytest.raises(DataError, match=match):
            w.add(frames, actions)


def test_float64_actions_are_stored_as_float32(tmp_path):
    with EpisodeWriter(tmp_path / "ds", source="test") as w:
        w.add(np.zeros((2, 4, 4, 3), np.uint8), np.array([[0.1], [0.2]], np.float64))
    a = EpisodeStore(tmp_path / "ds").actions(0)
    assert a.dtype == np.float32 and a[1, 0] == np.float32(0.2)


def test_store_errors_name_the_problem(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=r"nope does not exist.*wm\.data\.prepare.*data\.root"):
        EpisodeStore(missing)
    root = _write(tmp_path / "ds", _episodes(np.random.default_rng(3)))
    index = root / "index.json"
    good = index.read_text()

    index.write_text(good[: len(good) // 2])  # truncated JSON
    with pytest.raises(DataError, match=r"index\.json is corrupt"):
        EpisodeStore(root)
    index.write_text(json.dumps({"format": "other", "version": 1, "frame_shape": [1, 1, 3],
                                 "action_dim": 1, "episodes": []}))
    with pytest.raises(DataError, match="format 'other'"):
        EpisodeStore(root)
    index.write_text(json.dumps({"format": "wm-episodes"}))
    with pytest.raises(DataError, match="no field 'frame_shape'"):
        EpisodeStore(root)
    index.unlink()
    with pytest.raises(DataError, match=r"index\.json not found"):
        EpisodeStore(root)
    index.write_text(good)

    frames = root / "episodes" / "ep_000001" / "frames.npy"
    frames.write_bytes(frames.read_bytes()[:100])  # truncated npy
    with pytest.raises(DataError, match=r"ep_000001/frames\.npy is corrupt"):
        EpisodeStore(root).frames(1)
    np.save(root / "episodes" / "ep_000002" / "actions.npy", np.zeros((9, 2), np.float32))
    with pytest.raises(DataError, match=r"ep_000002/actions\.npy holds float32 \(9, 2\)"):
        EpisodeStore(root).actions(2)
    (root / "stats.json").write_text("{")
    with pytest.raises(DataError, match=r"stats\.json is corrupt"):
        EpisodeStore(root).stats
    import shutil
    shutil.rmtree(root / "episodes" / "ep_000000")
    with pytest.raises(DataError, match="lists 3 episodes but .* holds 2"):
        EpisodeStore(root)
