"""Bring your own video: the frames_npz converter options (array names, channel order, stacked
frames, float pixel ranges), dataset validation at setup from the .npy headers, the generic
``data=episodes`` config, and the "Bring your own video" walk-through of docs/data.md."""
from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from wm.data.episodes import DataError, EpisodeStore, EpisodeWriter
from wm.data.prepare import main as prepare_main
from wm.data.sources.frames_npz import FramesNpzSource
from wm.data.video import VideoDataModule

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
RNG = np.random.default_rng(0)


def _frames(t=6, h=8, w=10):
    return RNG.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)  # (T, H, W, 3)


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


# ----------------------------------------------------------------------------- actions

@pytest.mark.parametrize("key", ["action", "actions"])
def test_the_action_array_is_read(tmp_path, caplog, key):
    frames, actions = _frames(), RNG.normal(size=(6, 4)).astype(np.float32)
    np.savez(tmp_path / "ep.npz", image=frames, **{key: actions})
    with caplog.at_level(logging.WARNING):
        store = EpisodeStore(FramesNpzSource(str(tmp_path / "ep.npz")).write(tmp_path / "out"))
    assert "holds no actions" not in caplog.text
    assert store.action_dim == 4
    np.testing.assert_array_equal(store.actions(0), actions)
    np.testing.assert_array_equal(store.frames(0), frames)


def test_actions_key_option_and_its_errors(tmp_path):
    frames = _frames()
    np.savez(tmp_path / "ep.npz", image=frames, act=np.arange(6, dtype=np.int64))
    store = EpisodeStore(FramesNpzSource(str(tmp_path / "ep.npz"), actions_key="act")
                         .write(tmp_path / "out"))
    assert store.actions(0).shape == (6, 1) and store.actions(0)[:, 0].tolist() == list(range(6))
    with pytest.raises(DataError, match=r"ep\.npz has no 'acts' array.*--actions-key"):
        FramesNpzSource(str(tmp_path / "ep.npz"), actions_key="acts").write(tmp_path / "o2")
    with pytest.raises(DataError, match=r"ep\.npz.*\(5, 2\).*6 frames"):
        np.savez(tmp_path / "ep.npz", image=frames, action=np.zeros((5, 2), np.float32))
        FramesNpzSource(str(tmp_path / "ep.npz")).write(tmp_path / "o3")
    with pytest.raises(DataError, match=r"ep\.npz.*--action-dim 3.*2"):
        np.savez(tmp_path / "ep.npz", image=frames, action=np.zeros((6, 2), np.float32))
        FramesNpzSource(str(tmp_path / "ep.npz"), action_dim=3).write(tmp_path / "o4")
    with pytest.raises(DataError, match=r"both 'action' and 'actions'.*--actions-key"):
        np.savez(tmp_path / "ep.npz", image=frames, action=np.zeros((6, 2)),
                 actions=np.ones((6, 2)))
        FramesNpzSource(str(tmp_path / "ep.npz")).write(tmp_path / "o5")
    assert not any((tmp_path / f"o{i}").exists() for i in range(2, 6))


def test_a_file_without_actions_still_gets_zeros_and_a_warning(tmp_path, caplog):
    np.savez(tmp_path / "ep.npz", image=_frames(), other=np.zeros(3))
    with caplog.at_level(logging.WARNING):
        store = EpisodeStore(FramesNpzSource(str(tmp_path / "ep.npz"), action_dim=2)
                             .write(tmp_path / "out"))
    assert "holds no actions" in caplog.text and "--actions-key" in caplog.text
    assert store.actions(0).shape == (6, 2) and not store.actions(0).any()


# ----------------------------------------------------------------------------- pixel values

def test_float_frames_in_0_1_are_scaled_not_truncated(tmp_path):
    frames = _frames()
    np.savez(tmp_path / "ep.npz", image=frames.astype(np.float32) / 255.0)
    store = EpisodeStore(FramesNpzSource(str(tmp_path / "ep.npz")).write(tmp_path / "out"))
    np.testing.assert_array_equal(store.frames(0), frames)


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32, np.uint16])
def test_0_255_floats_and_wide_integers_are_accepted(tmp_path, dtype):
    frames = _frames()
    frames[0, 0, 0] = 255  # a 0..255 float array must not be mistaken for 0..1
    np.savez(tmp_path / "ep.npz", image=frames.astype(dtype))
    store = EpisodeStore(FramesNpzSource(str(tmp_path / "ep.npz")).write(tmp_path / "out"))
    np.testing.assert_array_equal(store.frames(0), frames)


def test_pixel_range_errors_name_the_range_and_the_option(tmp_path):
    np.savez(tmp_path / "ep.npz", image=np.linspace(-1, 1, 6 * 8 * 10 * 3).reshape(6, 8, 10, 3))
    with pytest.raises(DataError, match=r"ep\.npz.*\[-1(\.0+)?, 1(\.0+)?\].*--pixel-range"):
        FramesNpzSource(str(tmp_path / "ep.npz")).write(tmp_path / "out")
    np.savez(tmp_path / "ep.npz", image=_frames().astype(np.float32))
    with pytest.raises(DataError, match=r"ep\.npz.*\[0(\.0+)?, 255(\.0+)?\].*--pixel-range 0-1"):
        FramesNpzSource(str(tmp_path / "ep.npz"), pixel_range="0-1").write(tmp_path / "out")
    np.savez(tmp_path / "ep.npz", image=np.full((6, 8, 10, 3), 300, np.int64))
    with pytest.raises(DataError, match=r"ep\.npz.*300.*--pixel-range"):
        FramesNpzSource(str(tmp_path / "ep.npz")).write(tmp_path / "out")
    nan = np.zeros((6, 8, 10, 3), np.float32)
    nan[1, 2, 3, 0] = np.nan
    np.savez(tmp_path / "ep.npz", image=nan)
    with pytest.raises(DataError, match=r"ep\.npz.*NaN"):
        FramesNpzSource(str(tmp_path / "ep.npz")).write(tmp_path / "out")


# ----------------------------------------------------------------------------- layouts

def test_channels_first_frames(tmp_path):
    frames = _frames()
    np.savez(tmp_path / "ep.npz", obs=frames.transpose(0, 3, 1, 2))  # (T, 3, H, W)
    for order in ("first", "auto"):
        src = FramesNpzSource(str(tmp_path / "ep.npz"), frames_key="obs", channel_order=order)
        store = EpisodeStore(src.write(tmp_path / f"out_{order}"))
        np.testing.assert_array_equal(store.frames(0), frames)


def _stack(frames, n):
    """(T, H, W, 3) -> (T, 3n, H, W): frame t stacked with its n-1 predecessors, newest last."""
    past = [np.concatenate([frames[:1]] * k + [frames[:len(frames) - k]]) for k in range(n)]
    return np.concatenate([p.transpose(0, 3, 1, 2) for p in reversed(past)], axis=1)


def test_stacked_frames_keep_the_newest_of_each_stack(tmp_path):
    frames = _frames()
    stacked = _stack(frames, 3)
    assert stacked.shape == (6, 9, 8, 10)
    np.savez(tmp_path / "ep.npz", image=stacked)
    store = EpisodeStore(FramesNpzSource(str(tmp_path / "ep.npz"), stacked=3,
                                         channel_order="first").write(tmp_path / "out"))
    np.testing.assert_array_equal(store.frames(0), frames)
    # channels-last stacks (T, H, W, 3n) and 5-d stacks (T, n, H, W, 3) too
    np.savez(tmp_path / "last.npz", image=stacked.transpose(0, 2, 3, 1))
    np.savez(tmp_path / "five.npz", image=stacked.reshape(6, 3, 3, 8, 10).transpose(0, 1, 3, 4, 2))
    for name in ("last", "five"):
        out = FramesNpzSource(str(tmp_path / f"{name}.npz"), stacked=3).write(tmp_path / name)
        np.testing.assert_array_equal(EpisodeStore(out).frames(0), frames)


@pytest.mark.parametrize("shape, kwargs, message", [
    ((6, 9, 8, 10), {}, r"--stacked 3"),                                    # stack, no option
    ((6, 9, 8, 10), {"stacked": 2}, r"--stacked 2.*6 channels"),            # 9 is not 2 x 3
    ((6, 8, 10, 3), {"channel_order": "first"}, r"--channel-order first"),  # wrong order
    ((6, 3, 8, 10), {"channel_order": "last"}, r"--channel-order last"),
    ((6, 3, 8, 3), {}, r"--channel-order first\|last"),                     # ambiguous
    ((6, 8, 10), {}, r"4-d"),                                               # grayscale
    ((6, 8, 10, 4), {}, r"axis"),                                           # RGBA
])
def test_a_shape_that_does_not_fit_is_an_error_never_a_guess(tmp_path, shape, kwargs, message):
    np.savez(tmp_path / "ep.npz", image=np.zeros(shape, np.uint8))
    with pytest.raises(DataError, match=r"ep\.npz.*" + re.escape(str(shape)) + ".*" + message):
        FramesNpzSource(str(tmp_path / "ep.npz"), **kwargs).write(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_frames_key_error_lists_the_keys_and_the_option(tmp_path):
    np.savez(tmp_path / "ep.npz", obs=_frames())
    with pytest.raises(DataError, match=r"no 'image' array \(keys: \['obs'\]\).*--frames-key"):
        FramesNpzSource(str(tmp_path / "ep.npz")).write(tmp_path / "out")


def test_a_folder_of_files_is_one_episode_per_file(tmp_path):
    (tmp_path / "eps").mkdir()
    eps = [_frames(t) for t in (5, 6, 7)]
    for i, f in enumerate(eps):
        np.savez(tmp_path / "eps" / f"ep{i}.npz", image=f, action=np.full((len(f), 2), i, float))
    store = EpisodeStore(FramesNpzSource(str(tmp_path / "eps")).write(tmp_path / "out"))
    assert store.lengths.tolist() == [5, 6, 7]
    for i, f in enumerate(eps):
        np.testing.assert_array_equal(store.frames(i), f)
        assert (store.actions(i) == i).all() and store.meta(i)["file"] == f"ep{i}.npz"
    # mixing files with and without actions is refused, naming the file
    np.savez(tmp_path / "eps" / "ep3.npz", image=_frames())
    with pytest.raises(DataError, match=r"ep3\.npz.*no actions"):
        FramesNpzSource(str(tmp_path / "eps")).write(tmp_path / "out2")


def test_command_line_options(tmp_path):
    frames = _frames()
    np.savez(tmp_path / "ep.npz", obs=_stack(frames, 2).astype(np.float32) / 255.0,
             act=np.ones((6, 3), np.float32))
    prepare_main(["frames_npz", "--path", str(tmp_path / "ep.npz"), "--frames-key", "obs",
                  "--actions-key", "act", "--channel-order", "first", "--stacked", "2",
                  "--pixel-range", "0-1", "--out", str(tmp_path / "out")])
    store = EpisodeStore(tmp_path / "out")
    np.testing.assert_array_equal(store.frames(0), frames)
    assert store.action_dim == 3
    with pytest.raises(SystemExit, match=r"^error: .*ep\.npz.*--stacked"):
        prepare_main(["frames_npz", "--path", str(tmp_path / "ep.npz"), "--frames-key", "obs",
                      "--out", str(tmp_path / "out2")])


# ----------------------------------------------------------------------------- validation

def _dataset(root, lengths=(6, 6, 6)):
    with EpisodeWriter(root, source="test") as w:
        for t in lengths:
            w.add(_frames(t), np.zeros((t, 2), np.float32))
    return root


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) - 7])
    elif how == "garbage":
        path.write_bytes(b"not an npy file at all")
    elif how == "dtype":
        np.save(path, np.load(path).astype(np.float32))
    elif how == "missing":
        path.unlink()


@pytest.mark.parametrize("how, message", [
    ("truncated", r"truncated"), ("garbage", r"corrupt, no \.npy header"),
    ("dtype", r"float32.*uint8"), ("missing", r"not found")])
def test_a_bad_frames_file_fails_at_setup_naming_it(tmp_path, how, message):
    root = _dataset(tmp_path / "ds")
    bad = root / "episodes" / "ep_000002" / "frames.npy"
    _damage(bad, how)
    dm = VideoDataModule(str(root), 2, 1, batch_size=2, val_every=0)
    with pytest.raises(DataError, match=re.escape(str(bad)) + ".*" + message) as e:
        dm.setup("fit")  # before any DataLoader worker reads a frame
    assert "\n" not in str(e.value)


def test_validation_reads_headers_not_frames(tmp_path, monkeypatch):
    root = _dataset(tmp_path / "ds")
    store = EpisodeStore(root)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("validate() read an array"))
    store.validate()
    _damage(root / "episodes" / "ep_000001" / "actions.npy", "truncated")
    with pytest.raises(DataError, match=r"ep_000001.actions\.npy.*truncated"):
        store.validate()


# ----------------------------------------------------------------------------- configs

def _one_episode_error(root) -> str:
    with pytest.raises(DataError) as e:
        VideoDataModule(str(root), 2, 1, val_every=100).setup()
    return str(e.value)


def test_single_episode_error_suggests_an_override_that_exists(tmp_path):
    root = _dataset(tmp_path / "one", lengths=(6,))
    message = _one_episode_error(root)
    overrides = re.findall(r"(data\.[\w.]+=\S+?)(?=[\s;,)]|$)", message)
    assert overrides, message
    cfg = _compose(["data=episodes", f"data.root={root}", *overrides])
    dm = instantiate(cfg.data.datamodule, _convert_="all")
    dm.setup()  # the suggested override fixes the error
    assert dm.val_dataloader() == [] and len(dm.train_set) > 0


def test_episodes_config_needs_a_root_and_builds_the_video_datamodule(tmp_path):
    root = _dataset(tmp_path / "ds")
    for stage in ("tokenizer", "mle", "grpo"):
        cfg = _compose([f"stage={stage}", "data=episodes", f"data.root={root}"])
        assert cfg.data.modality == "video"
        dm = instantiate(cfg.data.datamodule, _convert_="all")
        assert isinstance(dm, VideoDataModule) and dm.root == str(root)
    from hydra.errors import InstantiationException  # Hydra wraps the DataError, message kept

    with pytest.raises((DataError, InstantiationException),
                       match=r"data\.root is not set: pass data\.root="):
        instantiate(_compose(["data=episodes"]).data.datamodule, _convert_="all")


# ----------------------------------------------------------------------------- docs walk-through

def _doc_section() -> str:
    text = (ROOT / "docs" / "data.md").read_text()
    start = text.index("## Bring your own video")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _commands(section: str, prefix: str) -> list[list[str]]:
    lines, out, cur = section.splitlines(), [], ""
    for line in lines:
        line = line.strip()
        if cur or line.startswith(prefix):
            cur += " " + line.rstrip("\\")
            if not line.endswith("\\"):
                out.append(shlex.split(cur.split("#")[0]))
                cur = ""
    return out


def test_bring_your_own_video_walkthrough(tmp_path):
    """docs/data.md "Bring your own video", run as written on generated data: channels-first,
    3 stacked RGB frames per step, float pixels in [0, 1], an action array, one file per episode."""
    section = _doc_section()
    prepare = _commands(section, "python -m wm.data.prepare frames_npz")
    train = _commands(section, "python train.py")
    assert len(prepare) == 1 and train, "the section must show the convert and train commands"
    argv = prepare[0][3:]  # after `python -m wm.data.prepare`
    path, out = argv[argv.index("--path") + 1], argv[argv.index("--out") + 1]
    folder = tmp_path / path.rstrip("/")
    folder.mkdir(parents=True)
    argv[argv.index("--path") + 1], argv[argv.index("--out") + 1] = str(folder), str(tmp_path / out)
    key = argv[argv.index("--frames-key") + 1] if "--frames-key" in argv else "image"
    akey = argv[argv.index("--actions-key") + 1] if "--actions-key" in argv else "action"
    episodes = []
    for i in range(3):  # 3 episodes: with the default val_every, episode 0 validates
        frames = _frames(8, 64, 64)
        episodes.append(frames)
        np.savez(folder / f"episode_{i}.npz",
                 **{key: _stack(frames, 3).astype(np.float32) / 255.0,
                    akey: RNG.normal(size=(8, 2)).astype(np.float32)})
    prepare_main(argv)
    root = tmp_path / out
    store = EpisodeStore(root)
    store.validate()
    for i, frames in enumerate(episodes):
        np.testing.assert_array_equal(store.frames(i), frames)
    for cmd in train:
        overrides = [a for a in cmd[2:] if not a.startswith(("stage=", "data.root="))]
        cfg = _compose([*overrides, f"data.root={root}", "stage=tokenizer"])
        dm = instantiate(cfg.data.datamodule, _convert_="all")
        dm.setup("fit")
        assert dm.split() == ([1, 2], [0])
        batch = next(iter(dm.train_dataloader()))
        t = cfg.data.context_frames + cfg.data.future_frames
        b = batch["frames"].shape[0]
        assert batch["frames"].shape == (b, t, 3, *cfg.data.resolution)
        assert batch["actions"].shape == (b, t, 2)
        for j in range(b):
            ep, s = int(batch["episode"][j]), int(batch["start"][j])
            want = episodes[ep][s:s + t].transpose(0, 3, 1, 2) / 255.0
            np.testing.assert_allclose(batch["frames"][j].numpy(), want, atol=1e-6)
            np.testing.assert_array_equal(batch["actions"][j].numpy(), store.actions(ep)[s:s + t])
