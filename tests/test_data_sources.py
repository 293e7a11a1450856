"""Dataset sources: each upstream format -> wm-episodes -> VideoDataModule batch.

Real-data tests read ../shared/data (PushT demos, BridgeData RLDS, the RT-1 sample). The DINO-WM
test uses a small synthetic folder of the published layout, because no real DINO-WM sample is
reachable from this project's machines.
"""
import json
import logging
import pickle
import struct

import numpy as np
import pytest
import torch

from wm.data.episodes import DataError, EpisodeStore
from wm.data.video import VideoDataModule
from wm.data.sources.dino_wm import DinoWMSource
from wm.data.sources.frames_npz import FramesNpzSource
from wm.data.sources.oxe_rlds import RT1_ACTION_FIELDS, OXERLDSSource
from wm.data.sources.tfrecord import (_crc32c_loop, crc32c, index_tfrecord, masked_crc32c,
                                      parse_example, read_record_at, read_tfrecord)
from wm.data.sources.pusht_demos import PushTDemosSource
from wm.data.sources.pusht_sim import PushTSimSource, block_com

BRIDGE = "oxe_bridge_debug/bridge_dataset/1.0.0"


# ----------------------------------------------------------------------------- pusht_sim

def test_pusht_sim_pushes_the_block(tmp_path):
    root = PushTSimSource(num_episodes=4, episode_length=60, image_size=32, seed=0).write(tmp_path / "sim")
    store = EpisodeStore(root)
    assert len(store) == 4 and store.frame_shape == (32, 32, 3) and store.action_dim == 2
    moved = 0
    for i in range(4):
        frames, actions = store.frames(i), store.actions(i)
        assert frames.shape[0] == actions.shape[0] >= 2 and frames.dtype == np.uint8
        assert actions.min() >= 0 and actions.max() <= 512
        assert np.abs(np.diff(frames.astype(np.int16), axis=0)).sum() > 0  # the video is not static
        meta = store.meta(i)
        start, end = np.array(meta["block_pose_start"]), np.array(meta["block_pose_end"])
        moved += np.linalg.norm(block_com(end) - block_com(start)) > 40.0  # pixels of 512
    assert moved >= 3, "the scripted policy should move the T block in most episodes"


def test_pusht_sim_is_seeded(tmp_path):
    src = PushTSimSource(num_episodes=1, episode_length=10, image_size=16, seed=3)
    env = src.make_env()
    (f1, a1, _), (f2, a2, _) = src.episode(env, 0), src.episode(env, 0)
    env.close()
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(f1, f2)


def test_pusht_sim_frame_skip_subsamples_the_same_trajectory():
    """frame_skip=k records every k-th frame of the frame_skip=1 run and its k actions, in order."""
    k = 3
    dense, sparse = (PushTSimSource(num_episodes=1, episode_length=n, image_size=16, seed=5, frame_skip=s)
                     for n, s in ((12 * k, 1), (12, k)))
    env = dense.make_env()
    f1, a1, _ = dense.episode(env, 0)
    env.close()
    env = sparse.make_env()
    fk, ak, _ = sparse.episode(env, 0)
    env.close()
    assert fk.shape[0] == ak.shape[0] == 12 and ak.shape[1] == 2 * k
    np.testing.assert_array_equal(fk, f1[::k])
    np.testing.assert_array_equal(ak, a1.reshape(12, 2 * k))


def test_pusht_sim_moves_in_almost_every_transition():
    """At the default frame skip, the agent does not get stuck (nearly identical consecutive frames
    make the repetition metric measure the data instead of the model)."""
    src = PushTSimSource(num_episodes=8, episode_length=40, image_size=64, seed=0, frame_skip=5)
    env = src.make_env()
    still = total = 0
    for i in range(src.num_episodes):
        frames = src.episode(env, i)[0].astype(np.float32) / 255
        change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
        still, total = still + int((change < 1e-3).sum()), total + len(change)
    env.close()
    assert still / total < 0.05, f"{still} of {total} transitions are (nearly) static"


def test_prepare_cli(tmp_path, capsys):
    from wm.data.prepare import main

    with pytest.raises(SystemExit, match="unknown dataset source 'nope'; valid names: pusht_sim"):
        main(["nope", "--out", str(tmp_path / "x")])
    main(["pusht_sim", "--out", str(tmp_path / "sim"), "--num-episodes", "2", "--episode-length", "5",
          "--image-size", "16"])
    assert EpisodeStore(tmp_path / "sim").lengths.tolist() == [5, 5]
    with pytest.raises(SystemExit, match="already exists.*--overwrite"):
        main(["pusht_sim", "--out", str(tmp_path / "sim"), "--num-episodes", "1"])


# ----------------------------------------------------------------------------- pusht_demos

@pytest.mark.real_data
def test_pusht_demos_round_trip(shared_data, tmp_path):
    path = shared_data / "pusht" / "pusht_demos.npz"
    root = PushTDemosSource(str(path), max_episodes=3).write(tmp_path / "demos")
    src = np.load(path)
    ends = src["episode_ends"]
    store = EpisodeStore(root)
    assert store.lengths.tolist() == [ends[0], ends[1] - ends[0], ends[2] - ends[1]]
    assert store.frame_shape == (96, 96, 3) and store.action_dim == 2
    np.testing.assert_array_equal(store.actions(1), src["action"][ends[0]:ends[1]])
    np.testing.assert_array_equal(store.frames(2), src["img"][ends[1]:ends[2]])
    dm = VideoDataModule(str(root), context_frames=4, future_frames=1, resolution=(64, 64),
                         batch_size=2, val_every=3)
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (2, 5, 3, 64, 64)
    for b in range(2):
        e, s = int(batch["episode"][b]), int(batch["start"][b])
        offset = 0 if e == 0 else ends[e - 1]
        np.testing.assert_array_equal(batch["actions"][b].numpy(), src["action"][offset + s:offset + s + 5])


@pytest.mark.real_data
def test_pusht_demos_frame_skip(shared_data, tmp_path):
    path = shared_data / "pusht" / "pusht_demos.npz"
    root = PushTDemosSource(str(path), max_episodes=2, frame_skip=5).write(tmp_path / "demos")
    src = np.load(path)
    first = src["episode_ends"][0]
    store = EpisodeStore(root)
    assert store.lengths[0] == first // 5 and store.action_dim == 10
    np.testing.assert_array_equal(store.frames(0), src["img"][:first // 5 * 5:5])
    np.testing.assert_array_equal(store.actions(0)[3], src["action"][15:20].reshape(-1))


def test_pusht_demos_bad_files(tmp_path):
    np.savez(tmp_path / "x.npz", img=np.zeros((4, 8, 8, 3), np.uint8), action=np.zeros((4, 2), np.float32))
    with pytest.raises(DataError, match=r"x\.npz lacks \['episode_ends'\]"):
        PushTDemosSource(str(tmp_path / "x.npz")).write(tmp_path / "out")
    np.savez(tmp_path / "y.npz", img=np.zeros((4, 8, 8, 3), np.uint8), action=np.zeros((4, 2), np.float32),
             episode_ends=np.array([2, 5]))
    with pytest.raises(DataError, match=r"y\.npz: episode_ends must increase"):
        PushTDemosSource(str(tmp_path / "y.npz")).write(tmp_path / "out")
    (tmp_path / "z.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"z\.npz is not a readable \.npz"):
        PushTDemosSource(str(tmp_path / "z.npz")).write(tmp_path / "out")
    with pytest.raises(DataError, match=r"missing\.npz not found"):
        PushTDemosSource(str(tmp_path / "missing.npz")).write(tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


# ----------------------------------------------------------------------------- TFRecord / protobuf

def test_crc32c_known_vectors():
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert crc32c(bytes(range(32))) == 0x46DD794E  # RFC 3720 B.4: incrementing bytes
    assert crc32c(bytes([0xFF]) * 32) == 0x62A8AB43  # RFC 3720 B.4: 32 bytes of ones


def test_crc32c_vectorised_equals_the_byte_loop():
    """From 1 KiB on the numpy path runs; it must equal the loop at every length around its
    lane (256 B) and merge (64 lanes, 64**2 lanes) boundaries, for any bytes and any alignment."""
    rng = np.random.default_rng(0)
    lengths = [1023, 1024, 1025, 1279, 1280, 4095, 16384, 16384 + 255, 16384 + 257,
               256 * 64 * 64, 256 * 64 * 64 + 1, 256 * 64 * 65 + 3, 3_000_001]
    for n in lengths:
        data = rng.integers(0, 256, n + 3, dtype=np.uint8).tobytes()
        for start in (0, 3):  # a view that does not start at an aligned address
            view = memoryview(data)[start:start + n]
            assert crc32c(view) == _crc32c_loop(view) ^ 0xFFFFFFFF, (n, start)
    big = bytearray(rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    before = crc32c(big)
    big[123_456] ^= 0x01  # one flipped bit changes the CRC
    assert crc32c(big) != before
    assert crc32c(bytes(4096)) == _crc32c_loop(bytes(4096)) ^ 0xFFFFFFFF


def _varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(num, wt, payload):
    key = _varint(num << 3 | wt)
    return key + (_varint(len(payload)) + payload if wt == 2 else payload)


def _example(features):
    """Hand-encode a tf.train.Example (test-side writer, independent of the decoder)."""
    entries = b""
    for key, (kind, values, packed) in features.items():
        if kind == "bytes":
            lst = b"".join(_field(1, 2, v) for v in values)
        elif kind == "float":
            lst = (_field(1, 2, struct.pack(f"<{len(values)}f", *values)) if packed
                   else b"".join(_field(1, 5, struct.pack("<f", v)) for v in values))
        else:
            lst = (_field(1, 2, b"".join(_varint(v) for v in values)) if packed
                   else b"".join(_field(1, 0, _varint(v)) for v in values))
        feature = _field({"bytes": 1, "float": 2, "int": 3}[kind], 2, lst)
        entries += _field(1, 2, _field(1, 2, key.encode()) + _field(2, 2, feature))
    return _field(1, 2, entries)


def _tfrecord(records):
    out = b""
    for r in records:
        n = struct.pack("<Q", len(r))
        out += n + struct.pack("<I", masked_crc32c(n)) + r + struct.pack("<I", masked_crc32c(r))
    return out


def test_parse_example_packed_and_unpacked():
    ex = parse_example(_example({
        "a": ("float", [1.5, -2.25, 3.0], True), "b": ("float", [0.5, 4.0], False),
        "c": ("int", [1, -7, 2**40], True), "d": ("int", [-1, 5], False),
        "e": ("bytes", [b"x", b"", b"\xff\x00"], False),
    }))
    assert ex["a"].dtype == np.float32 and ex["a"].tolist() == [1.5, -2.25, 3.0]
    assert ex["b"].tolist() == [0.5, 4.0]
    assert ex["c"].dtype == np.int64 and ex["c"].tolist() == [1, -7, 2**40]
    assert ex["d"].tolist() == [-1, 5]
    assert ex["e"] == [b"x", b"", b"\xff\x00"]


def test_tfrecord_reader_and_corruption(tmp_path):
    recs = [_example({"k": ("int", [i], True)}) for i in range(3)]
    good = _tfrecord(recs)
    (tmp_path / "ok.tfrecord").write_bytes(good)
    assert list(read_tfrecord(tmp_path / "ok.tfrecord")) == recs
    flipped = bytearray(good)
    flipped[14] ^= 0xFF  # inside the first record's data
    (tmp_path / "bad.tfrecord").write_bytes(bytes(flipped))
    with pytest.raises(DataError, match=r"bad\.tfrecord: data CRC mismatch at record 0"):
        list(read_tfrecord(tmp_path / "bad.tfrecord"))
    assert len(list(read_tfrecord(tmp_path / "bad.tfrecord", verify_crc=False))) == 3
    flipped[0] ^= 0x01  # the length itself
    (tmp_path / "bad.tfrecord").write_bytes(bytes(flipped))
    with pytest.raises(DataError, match=r"bad\.tfrecord: length CRC mismatch"):
        list(read_tfrecord(tmp_path / "bad.tfrecord", verify_crc=False))
    (tmp_path / "cut.tfrecord").write_bytes(good[:-6])
    with pytest.raises(DataError, match=r"cut\.tfrecord: truncated record 2"):
        list(read_tfrecord(tmp_path / "cut.tfrecord"))
    # random access: the index from the headers, then one record at a time
    index = index_tfrecord(tmp_path / "ok.tfrecord")
    assert [read_record_at(tmp_path / "ok.tfrecord", k, *at) for k, at in enumerate(index)] == recs
    with pytest.raises(DataError, match=r"cut\.tfrecord: truncated record 2"):
        index_tfrecord(tmp_path / "cut.tfrecord")
    flipped = bytearray(good)
    flipped[14] ^= 0xFF
    (tmp_path / "bad.tfrecord").write_bytes(bytes(flipped))
    with pytest.raises(DataError, match=r"bad\.tfrecord: data CRC mismatch at record 0"):
        read_record_at(tmp_path / "bad.tfrecord", 0, *index_tfrecord(tmp_path / "bad.tfrecord")[0])


def _official_example_class():
    """tf.train.Example built at run time with the official protobuf runtime (no TensorFlow)."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FileDescriptorProto(name="ex_test.proto", package="t", syntax="proto3")
    L = descriptor_pb2.FieldDescriptorProto
    for name, typ in (("BytesList", L.TYPE_BYTES), ("FloatList", L.TYPE_FLOAT), ("Int64List", L.TYPE_INT64)):
        m = f.message_type.add(name=name)
        m.field.add(name="value", number=1, type=typ, label=L.LABEL_REPEATED)
    feat = f.message_type.add(name="Feature")
    feat.oneof_decl.add(name="kind")
    for i, name in enumerate(("BytesList", "FloatList", "Int64List"), 1):
        feat.field.add(name=name.lower(), number=i, type=L.TYPE_MESSAGE, type_name=f".t.{name}",
                       label=L.LABEL_OPTIONAL, oneof_index=0)
    feats = f.message_type.add(name="Features")
    entry = feats.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=L.TYPE_STRING, label=L.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=L.TYPE_MESSAGE, type_name=".t.Feature", label=L.LABEL_OPTIONAL)
    feats.field.add(name="feature", number=1, type=L.TYPE_MESSAGE, type_name=".t.Features.FeatureEntry",
                    label=L.LABEL_REPEATED)
    ex = f.message_type.add(name="Example")
    ex.field.add(name="features", number=1, type=L.TYPE_MESSAGE, type_name=".t.Features", label=L.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Example"))


@pytest.mark.real_data
def test_bridge_rlds_end_to_end(shared_data, tmp_path):
    data_dir = shared_data / BRIDGE
    src = OXERLDSSource(str(data_dir), split="train", camera="steps/observation/image_0",
                        action_fields=["steps/action"], language_field="steps/language_instruction")
    root = src.write(tmp_path / "bridge")
    store = EpisodeStore(root)
    assert len(store) == 25 and store.lengths.tolist() == [10] * 25
    assert store.frame_shape == (64, 64, 3) and store.action_dim == 7
    assert store.language(0) == "put cup from counter or drying rack into sink"
    frames = np.asarray(store.frames(0))
    assert frames.std() > 10  # a real photo, not a blank image

    # the stored actions equal the raw floats, decoded independently by the official protobuf runtime
    Example = _official_example_class()
    shard = data_dir / "bridge_dataset-train.tfrecord-00000-of-00001"
    for k, record in enumerate(read_tfrecord(shard)):
        official = Example.FromString(record).features.feature
        raw = np.array(official["steps/action"].floatlist.value, np.float32).reshape(10, 7)
        np.testing.assert_array_equal(store.actions(k), raw)
        assert len(official["steps/observation/image_0"].byteslist.value) == 10
        assert store.language(k) == (official["steps/language_instruction"].byteslist.value[0].decode() or None)

    dm = VideoDataModule(str(root), context_frames=2, future_frames=1, batch_size=4, val_every=5)
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (4, 3, 3, 64, 64) and batch["actions"].shape == (4, 3, 7)
    assert set(dm.split()[1]) == {0, 5, 10, 15, 20}


@pytest.mark.real_data
def test_rlds_config_errors(shared_data, tmp_path):
    data_dir = str(shared_data / BRIDGE)
    with pytest.raises(DataError, match=r"camera 'steps/observation/image' .* available: .*image_0"):
        OXERLDSSource(data_dir)  # the RT-1 defaults do not fit Bridge
    with pytest.raises(DataError, match=r"'steps/action/base_displacement_vector' is not a per-step feature"):
        OXERLDSSource(data_dir, camera="steps/observation/image_0", language_field=None)
    with pytest.raises(DataError, match=r"split 'test' not in .*available: \['train', 'val'\]"):
        OXERLDSSource(data_dir, split="test", camera="steps/observation/image_0",
                      action_fields=["steps/action"], language_field=None)
    with pytest.raises(DataError, match=r"dataset_info\.json not found"):
        OXERLDSSource(str(tmp_path))
    # a corrupt shard is named in the error
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    shard = copy / "bridge_dataset-val.tfrecord-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[5000] ^= 0x55
    shard.chmod(0o644)
    shard.write_bytes(bytes(data))
    src = OXERLDSSource(str(copy), split="val", camera="steps/observation/image_0",
                        action_fields=["steps/action"], language_field=None)
    with pytest.raises(DataError, match=r"bridge_dataset-val\.tfrecord-00000-of-00001: data CRC mismatch"):
        src.write(tmp_path / "out")
    assert not (tmp_path / "out").exists()


BRIDGE_KEYS = dict(camera="steps/observation/image_0", action_fields=["steps/action"],
                   language_field="steps/language_instruction")


@pytest.mark.real_data
def test_rlds_workers_write_the_same_dataset(shared_data, tmp_path):
    """Worker processes change the speed, not the episodes: frames, actions, language, meta and
    order equal the one-process conversion; a corrupt record is reported the same way."""
    data_dir = str(shared_data / BRIDGE)
    one = EpisodeStore(OXERLDSSource(data_dir, **BRIDGE_KEYS).write(tmp_path / "one"))
    three = EpisodeStore(OXERLDSSource(data_dir, workers=3, **BRIDGE_KEYS).write(tmp_path / "three"))
    assert len(one) == len(three) == 25
    for i in range(25):
        np.testing.assert_array_equal(np.asarray(one.frames(i)), np.asarray(three.frames(i)))
        np.testing.assert_array_equal(one.actions(i), three.actions(i))
        assert one.language(i) == three.language(i) and one.meta(i) == three.meta(i)
    assert [one.meta(i)["record"] for i in range(25)] == list(range(25))
    few = list(OXERLDSSource(data_dir, workers=2, max_episodes=3, **BRIDGE_KEYS).episodes())
    assert [m["record"] for *_, m in few] == [0, 1, 2]

    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(shared_data / BRIDGE, copy)
    shard = copy / "bridge_dataset-train.tfrecord-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[5000] ^= 0x55
    shard.chmod(0o644)
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"train\.tfrecord-00000-of-00001: data CRC mismatch at record 0"):
        list(OXERLDSSource(str(copy), workers=2, **BRIDGE_KEYS).episodes())


@pytest.mark.real_data
def test_rlds_image_reduce_and_option_errors(shared_data):
    data_dir = str(shared_data / BRIDGE)
    full = next(OXERLDSSource(data_dir, max_episodes=1, **BRIDGE_KEYS).episodes())[0]
    half = next(OXERLDSSource(data_dir, max_episodes=1, image_reduce=2, **BRIDGE_KEYS).episodes())[0]
    assert full.shape == (10, 64, 64, 3) and half.shape == (10, 32, 32, 3)
    box = full.reshape(10, 32, 2, 32, 2, 3).mean(axis=(2, 4))  # DCT scaling ~ a 2x2 box filter
    assert np.abs(half - box).mean() < 8 and half.std() > 10
    with pytest.raises(DataError, match=r"workers=0: use an integer >= 1 \(--workers\)"):
        OXERLDSSource(data_dir, workers=0, **BRIDGE_KEYS)
    with pytest.raises(DataError, match=r"image_reduce=3: use one of \(1, 2, 4, 8\)"):
        OXERLDSSource(data_dir, image_reduce=3, **BRIDGE_KEYS)


@pytest.mark.real_data
def test_rt1_action_fields_match_the_reference_ranges(shared_data):
    dims = {"base_displacement_vector": 2, "base_displacement_vertical_rotation": 1,
            "gripper_closedness_action": 1, "rotation_delta": 3, "terminate_episode": 3, "world_vector": 3}
    assert [f.split("/")[-1] for f in RT1_ACTION_FIELDS] == sorted(dims)  # alphabetical, as the reference
    ranges = np.array(json.loads((shared_data / "rt1" / "action_ranges.json").read_text())["ranges"])
    assert sum(dims.values()) == len(ranges) == 13
    assert ranges[3].tolist() == [-1.0, 1.0]  # gripper_closedness_action (dim 3 in this order)
    assert ranges[7:10].tolist() == [[0.0, 1.0]] * 3  # one-hot terminate_episode (dims 7-9)


# ----------------------------------------------------------------------------- frames_npz (RT-1 sample)

@pytest.mark.real_data
def test_frames_npz_on_the_rt1_sample(shared_data, tmp_path, caplog):
    path = shared_data / "rt1" / "fractal_sample.npz"
    with caplog.at_level(logging.WARNING):
        root = FramesNpzSource(str(path)).write(tmp_path / "rt1")
    assert "holds no actions" in caplog.text
    store = EpisodeStore(root)
    assert len(store) == 1 and store.lengths.tolist() == [22] and store.frame_shape == (256, 320, 3)
    np.testing.assert_array_equal(store.frames(0), np.load(path)["image"])
    assert store.actions(0).shape == (22, 13) and not store.actions(0).any()
    dm = VideoDataModule(str(root), 4, 1, resolution=(64, 80), batch_size=2, val_every=0)
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (2, 5, 3, 64, 80) and batch["actions"].shape == (2, 5, 13)


def test_frames_npz_errors(tmp_path):
    np.savez(tmp_path / "a.npz", frames=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"a\.npz has no 'image' array \(keys: \['frames'\]\)"):
        FramesNpzSource(str(tmp_path / "a.npz")).write(tmp_path / "out")


# ----------------------------------------------------------------------------- dino_wm (synthetic)

def _dino_folder(root, layout="obses", lengths=(12, 10, 8), t_max=12, a=2, hw=(24, 24)):
    """Synthetic DINO-WM folder with the published file names and shapes (no real sample exists here)."""
    rng = np.random.default_rng(0)
    root.mkdir()
    n = len(lengths)
    actions = torch.from_numpy(rng.normal(size=(n, t_max, a)).astype(np.float32))
    torch.save(actions, root / "actions.pth")
    torch.save(torch.zeros(n, t_max, 5), root / "states.pth")
    if layout == "obses":
        with open(root / "seq_lengths.pkl", "wb") as f:
            pickle.dump(list(lengths), f)
        (root / "obses").mkdir()
    frames = []
    for i, t in enumerate(lengths):
        obs = torch.from_numpy(rng.integers(0, 256, (t, *hw, 3), dtype=np.uint8))
        path = root / "obses" / f"episode_{i:03d}.pth" if layout == "obses" else root / f"{i:06d}" / "obses.pth"
        path.parent.mkdir(exist_ok=True)
        torch.save(obs, path)
        frames.append(obs.numpy())
    return actions.numpy(), frames


def test_dino_wm_synthetic_layouts(tmp_path):
    actions, frames = _dino_folder(tmp_path / "pusht")
    store = EpisodeStore(DinoWMSource(str(tmp_path / "pusht")).write(tmp_path / "out1"))
    assert store.lengths.tolist() == [12, 10, 8] and store.frame_shape == (24, 24, 3)
    np.testing.assert_array_equal(store.actions(1), actions[1, :10])
    np.testing.assert_array_equal(store.frames(2), frames[2])

    actions, frames = _dino_folder(tmp_path / "rope", layout="deformable", lengths=(6, 6), t_max=6)
    store = EpisodeStore(DinoWMSource(str(tmp_path / "rope"), max_episodes=1).write(tmp_path / "out2"))
    assert store.lengths.tolist() == [6]
    np.testing.assert_array_equal(store.frames(0), frames[0])


def test_dino_wm_errors(tmp_path):
    _dino_folder(tmp_path / "d")
    (tmp_path / "d" / "obses" / "episode_001.pth").unlink()
    with pytest.raises(DataError, match=r"episode 1 not found .*obses/episode_001\.pth"):
        DinoWMSource(str(tmp_path / "d")).write(tmp_path / "out")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    _dino_folder(tmp_path / "e")
    (tmp_path / "e" / "seq_lengths.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DataError, match=r"seq_lengths\.pkl is not a list .*refusing to load builtins\.print"):
        DinoWMSource(str(tmp_path / "e")).write(tmp_path / "out")
    (tmp_path / "e" / "actions.pth").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"actions\.pth is not a readable torch tensor file"):
        DinoWMSource(str(tmp_path / "e")).write(tmp_path / "out")


@pytest.mark.real_data
def test_prepare_cli_oxe_bridge_preset(shared_data, tmp_path):
    from wm.data.prepare import main

    main(["oxe_rlds", "--data-dir", str(shared_data / BRIDGE), "--split", "val", "--preset", "bridge",
          "--max-episodes", "2", "--no-verify-crc", "--out", str(tmp_path / "b")])
    store = EpisodeStore(tmp_path / "b")
    assert len(store) == 2 and store.action_dim == 7 and store.source == "oxe_rlds:bridge_dataset/val"
