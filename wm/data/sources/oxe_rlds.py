"""Open X-Embodiment RLDS (TFDS TFRecord) episodes -> wm-episodes, without TensorFlow.

The paper's RT-1 experiments (RLVR-World Sec. 4.2, App. B) use the ``fractal20220817_data``
release of Open X-Embodiment, stored as TFDS TFRecord shards: each record is one
``tf.train.Example`` holding a whole episode, with per-step features flattened into keys such as
``steps/observation/image`` (one JPEG per step) and ``steps/action/world_vector`` (T*3 floats).

This module converts RLDS episodes to our episode format (the reference's converter is
thuml/RLVR-World ``vid_wm/oxe_data_converter.py``: TFDS, one compressed npz per episode, the
action dict's values concatenated); the records are read by
``wm.data.sources.tfrecord`` (TFRecord + ``tf.train.Example``). It implements
* shard discovery from ``dataset_info.json`` (``filepathTemplate`` and ``shardLengths``, falling
  back to ``<name>-<split>.tfrecord-*``) and per-step shapes from ``features.json``;
* ``workers > 1``: records are read, checked, parsed and decoded by that many processes (each
  record found by ``index_tfrecord``, at most ``2 * workers`` episodes in flight) and written in
  the original order by this process, so the dataset is the same as with one worker;
* ``image_reduce`` 2, 4 or 8: frames decoded at 1/r of the size, ceil(H/r) x ceil(W/r) (JPEG DCT
  scaling via PIL's ``Image.draft``, faster than a full decode; other formats ``Image.reduce``).
  Full RT-1 (~111 GB, 87,212 episodes) measured and estimated in ``bench/bench_rlds.py``.

Actions: the listed ``action_fields`` are concatenated per step in the given order (int64 fields
such as RT-1's one-hot ``terminate_episode`` are cast to float32). ``RT1_ACTION_FIELDS`` is the
13-d RT-1 action in the order of the reference's ``frac_action_ranges`` (shared/data/rt1/
action_ranges.json): the action dict's keys sorted alphabetically, 2+1+1+3+3+3 = 13, which puts
the [-1, 1] gripper at dim 3 and the one-hot terminate flag at dims 7-9, as those ranges show.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
from collections import deque
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from wm.data.episodes import DataError, EpisodeWriter
from wm.data.sources.tfrecord import (index_tfrecord, parse_example, read_record_at,
                                      read_tfrecord)

log = logging.getLogger(__name__)

RT1_ACTION_FIELDS = (
    "steps/action/base_displacement_vector",             # 2
    "steps/action/base_displacement_vertical_rotation",  # 1
    "steps/action/gripper_closedness_action",            # 1, in [-1, 1]
    "steps/action/rotation_delta",                       # 3
    "steps/action/terminate_episode",                    # 3, one-hot (int32 upstream)
    "steps/action/world_vector",                         # 3
)
RT1_CAMERA = "steps/observation/image"
RT1_LANGUAGE = "steps/observation/natural_language_instruction"
PRESETS = {  # name -> (camera, action_fields, language_field)
    "rt1": (RT1_CAMERA, RT1_ACTION_FIELDS, RT1_LANGUAGE),  # fractal20220817_data, 13-d action
    "bridge": ("steps/observation/image_0", ("steps/action",), "steps/language_instruction"),  # 7-d
}

REDUCE_FACTORS = (1, 2, 4, 8)


class EpisodeSpec(NamedTuple):
    """What to take from each record (sent to the worker processes)."""
    camera: str
    action_fields: tuple[str, ...]
    action_dims: tuple[int, ...]
    language_field: str | None
    image_reduce: int


def decode_image(data: bytes, reduce: int = 1) -> np.ndarray:
    """(H, W, 3) uint8 of one encoded image; ``reduce`` > 1: 1/reduce of the size."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    if reduce > 1:
        w, h = img.size
        img.draft("RGB", (-(-w // reduce), -(-h // reduce)))  # JPEG: DCT-domain scaling
        if img.size != (-(-w // reduce), -(-h // reduce)):
            img = img.reduce(reduce)
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def convert_record(record: bytes, where: str, spec: EpisodeSpec, meta: dict
                   ) -> tuple[np.ndarray, np.ndarray, str | None, dict]:
    """One RLDS record -> (frames (T,H,W,3) uint8, actions (T,A) float32, language, meta)."""
    try:
        ex = parse_example(record)
    except ValueError as e:
        raise DataError(f"{where}: not a valid tf.train.Example ({e})") from None
    images = ex.get(spec.camera)
    if not isinstance(images, list) or not images:
        raise DataError(f"{where}: no encoded images under {spec.camera!r}")
    try:
        frames = np.stack([decode_image(b, spec.image_reduce) for b in images])  # (T, H, W, 3)
    except (OSError, ValueError) as e:
        raise DataError(f"{where}: cannot decode an image of {spec.camera!r} ({e})") from None
    t = frames.shape[0]
    parts = []
    for field, dim in zip(spec.action_fields, spec.action_dims):
        v = ex.get(field)
        if not isinstance(v, np.ndarray) or v.size != t * dim:
            raise DataError(f"{where}: {field!r} has {getattr(v, 'size', len(v or []))} "
                            f"values, expected {t} steps x {dim}")
        parts.append(v.reshape(t, dim).astype(np.float32))  # (T, dim)
    actions = np.concatenate(parts, axis=1)  # (T, A)
    language = None
    if spec.language_field:
        texts = [b.decode("utf-8", "replace") for b in ex.get(spec.language_field) or []]
        language = next((s for s in texts if s.strip()), None)
    for key in ("episode_metadata/file_path", "episode_metadata/episode_id"):
        if key in ex and len(ex[key]):
            v = ex[key][0]
            meta[key.split("/")[-1]] = v.decode() if isinstance(v, bytes) else int(v)
    return frames, actions, language, meta


def _convert_at(task: tuple) -> tuple:
    """Worker process: read, check and convert record ``k`` of a shard."""
    shard, k, offset, length, verify_crc, spec = task
    record = read_record_at(shard, k, offset, length, verify_crc)
    return convert_record(record, f"{shard} record {k}", spec, {"shard": shard.name, "record": k})


# ----------------------------------------------------------------------------------- dataset


def _flatten_features(node: dict, prefix: str = "") -> dict[str, dict]:
    """features.json tree -> {"steps/observation/image": leaf spec}."""
    if "featuresDict" in node:
        out = {}
        for k, v in node["featuresDict"]["features"].items():
            out.update(_flatten_features(v, f"{prefix}/{k}" if prefix else k))
        return out
    if "sequence" in node:
        return _flatten_features(node["sequence"]["feature"], prefix)
    return {prefix: node}


def _leaf_shape(spec: dict) -> tuple[int, ...]:
    for kind in ("tensor", "image"):
        if kind in spec:
            return tuple(int(d) for d in spec[kind].get("shape", {}).get("dimensions", []))
    return ()


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path} not found; data_dir must be an RLDS version folder holding "
                        "dataset_info.json, features.json and the TFRecord shards")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is corrupt ({e})") from None


class OXERLDSSource:
    """Convert one split of an Open X-Embodiment RLDS dataset into wm-episodes.

    Args:
        data_dir: the version folder, e.g. ``.../fractal20220817_data/0.1.0``.
        split: ``train``, ``val``/``test`` as listed in dataset_info.json.
        camera: image feature key, e.g. ``steps/observation/image`` (RT-1) or
            ``steps/observation/image_0`` (Bridge).
        action_fields: feature keys concatenated into the action vector per step.
        language_field: per-step text feature with the instruction, or None.
        max_episodes: stop after this many episodes (None: all).
        verify_crc: check the data CRC of every record (numpy; ~400 MB/s per process).
        workers: processes that read, check, parse and decode records (1: this process only);
            the episodes and their order do not depend on it.
        image_reduce: 1 (full size), 2, 4 or 8: decode frames at 1/r of the size.
    """

    def __init__(self, data_dir: str, split: str = "train", camera: str = RT1_CAMERA,
                 action_fields: Sequence[str] = RT1_ACTION_FIELDS,
                 language_field: str | None = RT1_LANGUAGE, max_episodes: int | None = None,
                 verify_crc: bool = True, overwrite: bool = False, workers: int = 1,
                 image_reduce: int = 1):
        if not isinstance(workers, int) or workers < 1:
            raise DataError(f"workers={workers!r}: use an integer >= 1 (--workers)")
        if image_reduce not in REDUCE_FACTORS:
            raise DataError(f"image_reduce={image_reduce!r}: use one of {REDUCE_FACTORS} "
                            "(--image-reduce)")
        self.data_dir = Path(data_dir)
        self.split, self.camera = split, camera
        self.action_fields = list(action_fields)
        self.language_field, self.max_episodes = language_field, max_episodes
        self.verify_crc, self.overwrite = verify_crc, overwrite
        self.workers, self.image_reduce = workers, image_reduce
        info = _read_json(self.data_dir / "dataset_info.json")
        self.name = info.get("name", self.data_dir.parent.name)
        features = _flatten_features(_read_json(self.data_dir / "features.json"))
        self.step_shapes = {k[len("steps/"):]: _leaf_shape(v) for k, v in features.items()
                            if k.startswith("steps/")}
        if not camera.startswith("steps/") or camera[6:] not in self.step_shapes:
            images = [k for k, v in features.items() if "image" in v]
            raise DataError(f"camera {camera!r} is not an image feature of {self.data_dir}/features.json; "
                            f"available: {images}")
        for field in self.action_fields + ([language_field] if language_field else []):
            if not field.startswith("steps/") or field[6:] not in self.step_shapes:
                raise DataError(f"feature {field!r} is not a per-step feature of "
                                f"{self.data_dir}/features.json; available: "
                                f"{sorted(k for k in features if k.startswith('steps/'))}")
        self.action_dims = [int(np.prod(self.step_shapes[f[6:]])) for f in self.action_fields]
        self.shards = self._shards(info)
        self.spec = EpisodeSpec(camera, tuple(self.action_fields), tuple(self.action_dims),
                                language_field, image_reduce)

    def _shards(self, info: dict) -> list[Path]:
        splits = {s.get("name"): s for s in info.get("splits", [])}
        if self.split not in splits:
            raise DataError(f"split {self.split!r} not in {self.data_dir}/dataset_info.json; "
                            f"available: {sorted(splits)}")
        spec = splits[self.split]
        n = len(spec.get("shardLengths", []))
        template = spec.get("filepathTemplate")
        if template and n:
            fmt = info.get("fileFormat", "tfrecord")
            paths = [self.data_dir / template.replace("{DATASET}", self.name)
                     .replace("{SPLIT}", self.split).replace("{FILEFORMAT}", fmt)
                     .replace("{SHARD_X_OF_Y}", f"{i:05d}-of-{n:05d}") for i in range(n)]
        else:  # older TFDS releases (e.g. fractal20220817_data 0.1.0) name shards implicitly
            paths = sorted(self.data_dir.glob(f"{self.name}-{self.split}.tfrecord-*"))
        missing = [p for p in paths if not p.is_file()]
        if not paths or missing:
            raise DataError(f"TFRecord shards of split {self.split!r} missing in {self.data_dir}: "
                            f"{[p.name for p in missing] or 'none found'}")
        return paths

    def episodes(self) -> Iterator[tuple[np.ndarray, np.ndarray, str | None, dict]]:
        """Yield (frames (T,H,W,3) uint8, actions (T,A) float32, language, meta) per episode."""
        if self.workers > 1:
            yield from self._parallel_episodes()
            return
        count = 0
        for shard in self.shards:
            for k, record in enumerate(read_tfrecord(shard, self.verify_crc)):
                if self.max_episodes is not None and count >= self.max_episodes:
                    return
                count += 1
                yield convert_record(record, f"{shard} record {k}", self.spec,
                                     {"shard": shard.name, "record": k})

    def _tasks(self) -> Iterator[tuple]:
        count = 0
        for shard in self.shards:
            for k, (offset, length) in enumerate(index_tfrecord(shard)):
                if self.max_episodes is not None and count >= self.max_episodes:
                    return
                count += 1
                yield shard, k, offset, length, self.verify_crc, self.spec

    def _parallel_episodes(self) -> Iterator[tuple]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        tasks = self._tasks()
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            window = deque(pool.submit(_convert_at, t) for _, t in zip(range(2 * self.workers),
                                                                      tasks))
            while window:
                episode = window.popleft().result()  # in order; a worker's DataError re-raised
                for t in tasks:  # keep 2 * workers episodes in flight
                    window.append(pool.submit(_convert_at, t))
                    break
                yield episode
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def write(self, root: str | Path) -> Path:
        from tqdm import tqdm

        with EpisodeWriter(root, source=f"oxe_rlds:{self.name}/{self.split}",
                           overwrite=self.overwrite) as w:
            for frames, actions, language, meta in tqdm(self.episodes(), desc=f"{self.name} {self.split}",
                                                        unit="ep", total=self.max_episodes):
                w.add(frames, actions, language=language, meta=meta)
        return Path(root)


    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", required=True, help="RLDS version folder (dataset_info.json inside)")
        p.add_argument("--split", default="train")
        p.add_argument("--preset", choices=sorted(PRESETS), default="rt1",
                       help="camera/action/language keys of a known dataset (default rt1: 13-d action)")
        p.add_argument("--camera", default=None, help="image feature key (overrides the preset)")
        p.add_argument("--action-fields", nargs="+", default=None,
                       help="feature keys concatenated into the action (overrides the preset)")
        p.add_argument("--language-field", default=None, help="text feature key, '' for none")
        p.add_argument("--max-episodes", type=int, default=None)
        p.add_argument("--no-verify-crc", action="store_true", help="skip data CRCs (faster)")
        p.add_argument("--workers", type=int, default=1,
                       help="processes reading/decoding records (same dataset for any number)")
        p.add_argument("--image-reduce", type=int, default=1, choices=REDUCE_FACTORS,
                       help="decode frames at 1/r of the size (JPEG DCT scaling)")

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "OXERLDSSource":
        camera, fields, language = PRESETS[a.preset]
        language = language if a.language_field is None else (a.language_field or None)
        return cls(a.data_dir, a.split, a.camera or camera, a.action_fields or fields, language,
                   a.max_episodes, not a.no_verify_crc, a.overwrite, a.workers, a.image_reduce)

if __name__ == "__main__":
    from wm.data.sources import cli_main
    cli_main(OXERLDSSource)
