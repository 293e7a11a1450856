"""Throughput of the RLDS -> wm-episodes converter (``wm.data.sources.oxe_rlds``; the
reference's is thuml/RLVR-World ``vid_wm/oxe_data_converter.py``, on TensorFlow) by phase, before
and after the numpy CRC-32C and the worker processes, and the full RT-1 estimate.

Inputs: (1) the real BridgeData RLDS shard of ``../shared/data/oxe_bridge_debug`` (25 episodes,
64x64 JPEGs) and (2) an RT-1-shaped shard written here from the real RT-1 frames of
``../shared/data/rt1/fractal_sample.npz`` (256x320, JPEG quality 95, the RT-1 feature keys and
sizes: the 13-d action fields, a 512-d language embedding, 48 observation floats, the
instruction), episodes of 43 steps (fractal20220817_data: 87,212 episodes, ~3.79 M steps,
~111 GB, i.e. ~43 steps and ~29 KB per step). Phases, one process, every record: read (file ->
bytes), CRC-32C of the data, protobuf parse, image decode, write (``EpisodeWriter``: np.save of
the frames), each the fastest of ``--repeats`` runs. "before" is the previous code path
(pure-Python slicing-by-8 CRC, decode through ``convert("RGB")``), "after" the current one. Then
whole conversions (``OXERLDSSource.write``) with 1 and N worker processes.

Full RT-1 estimate: the RT-1-shaped shard's costs scaled to 111 GB (read, CRC) and 3.79 M frames
(parse, decode, write); with W workers the read/CRC/parse/decode/pickle work is split W ways
while this process receives the episodes (pipe copy, unpickling) and writes them:
``T(W) = max(work / W, receive + write)``. The output is raw uint8 frames (256*320*3 B a frame,
~931 GB for RT-1), so the write rate of the disk bounds it: the page-cache rate measured here is
an upper bound. Writes the table to docs/benchmarks.md, section "rlds".

    python bench/bench_rlds.py [--episodes 24] [--workers 2] [--repeats 3] [--no-write]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wm.data.episodes import EpisodeWriter  # noqa: E402
from wm.data.sources import oxe_rlds, tfrecord  # noqa: E402
from wm.data.sources.oxe_rlds import RT1_ACTION_FIELDS, OXERLDSSource  # noqa: E402

SHARED = Path(os.environ.get("WM_SHARED_DATA", ROOT.parent / "shared" / "data"))
BRIDGE = SHARED / "oxe_bridge_debug/bridge_dataset/1.0.0"
RT1_GB, RT1_EPISODES, RT1_STEPS = 111.0, 87_212, 3_786_400
STEPS = 43
RT1_SIZES = dict(zip(RT1_ACTION_FIELDS, (2, 1, 1, 3, 3, 3)))


# ------------------------------------------------------------------------- the RT-1 shard

def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _example(features: dict) -> bytes:
    """tf.train.Example wire format: bytes lists, packed floats, packed int64s."""
    entries = b""
    for key, values in features.items():
        if isinstance(values, list):
            feature = _field(1, b"".join(_field(1, v) for v in values))
        elif values.dtype.kind == "f":
            feature = _field(2, _field(1, values.astype("<f4").tobytes()))
        else:
            feature = _field(3, _field(1, b"".join(_varint(int(v)) for v in values)))
        entries += _field(1, _field(1, key.encode()) + _field(2, feature))
    return _field(1, entries)


def _spec(shape: list[int], image: bool = False) -> dict:
    kind = "image" if image else "tensor"
    return {kind: {"shape": {"dimensions": [str(d) for d in shape]}}}


def write_rt1_shard(folder: Path, episodes: int) -> Path:
    """An RLDS version folder with one RT-1-shaped shard (see the module docstring)."""
    from PIL import Image

    frames = np.load(SHARED / "rt1/fractal_sample.npz")["image"]  # (22, 256, 320, 3)
    jpegs = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, "JPEG", quality=95)
        jpegs.append(buf.getvalue())
    order = list(range(len(jpegs))) + list(range(len(jpegs) - 1, -1, -1))  # back and forth
    rng = np.random.default_rng(0)
    records = []
    for e in range(episodes):
        steps = [order[(e + t) % len(order)] for t in range(STEPS)]
        feats = {"steps/observation/image": [jpegs[i] for i in steps],
                 "steps/observation/natural_language_instruction": [b"pick rxbar"] * STEPS,
                 "steps/observation/natural_language_embedding": rng.standard_normal(512 * STEPS),
                 "steps/observation/other": rng.standard_normal(48 * STEPS)}
        for key, dim in RT1_SIZES.items():
            feats[key] = (np.eye(3, dtype=np.int64)[rng.integers(0, 3, STEPS)].ravel()
                          if key.endswith("terminate_episode") else rng.uniform(-1, 1, STEPS * dim))
        records.append(_example(feats))
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "fractal20220817_data-train.tfrecord-00000-of-00001", "wb") as f:
        for r in records:
            n = struct.pack("<Q", len(r))
            f.write(n + struct.pack("<I", tfrecord.masked_crc32c(n)) + r
                    + struct.pack("<I", tfrecord.masked_crc32c(r)))
    steps = {"observation": {"featuresDict": {"features": {
        "image": _spec([256, 320, 3], image=True), "natural_language_instruction": {"text": {}},
        "natural_language_embedding": _spec([512]), "other": _spec([48])}}},
        "action": {"featuresDict": {"features": {k.split("/")[-1]: _spec([d])
                                                 for k, d in RT1_SIZES.items()}}}}
    features = {"featuresDict": {"features": {"steps": {"sequence": {"feature": {
        "featuresDict": {"features": steps}}}}}}}
    (folder / "features.json").write_text(json.dumps(features))
    (folder / "dataset_info.json").write_text(json.dumps({
        "name": "fractal20220817_data", "fileFormat": "tfrecord", "splits": [{
            "name": "train", "shardLengths": [str(episodes)],
            "filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"}]}))
    return folder


# ----------------------------------------------------------------------------------- phases

def _old_crc(data) -> int:
    return tfrecord._crc32c_loop(data) ^ 0xFFFFFFFF


def _old_decode(data: bytes, reduce: int = 1) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


REPEATS = 3


def _timed(fn) -> tuple[float, object]:
    """(fastest of REPEATS runs in seconds, the output): other jobs on shared CPUs only add."""
    best, out = float("inf"), None
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def phases(source: OXERLDSSource, tmp: Path) -> dict:
    """Seconds per phase over every record of the source (before and after), one process."""
    shard = source.shards[0]
    t_read, records = _timed(lambda: list(tfrecord.read_tfrecord(shard, verify_crc=False)))
    mb = sum(len(r) for r in records) / 1e6
    t_crc_old, _ = _timed(lambda: [_old_crc(r) for r in records])
    t_crc_new, _ = _timed(lambda: [tfrecord.crc32c(r) for r in records])
    t_parse, examples = _timed(lambda: [tfrecord.parse_example(r) for r in records])
    images = [b for ex in examples for b in ex[source.camera]]
    t_dec_old, _ = _timed(lambda: [np.stack([_old_decode(b) for b in ex[source.camera]])
                                   for ex in examples])
    decode = oxe_rlds.decode_image
    t_dec_new, frames = _timed(lambda: [np.stack([decode(b) for b in ex[source.camera]])
                                        for ex in examples])
    t_dec_r2, _ = _timed(lambda: [oxe_rlds.decode_image(b, 2) for b in images])
    out = tmp / "phase_write"

    def write():
        with EpisodeWriter(out, source="bench", overwrite=True) as w:
            for f in frames:
                w.add(f, np.zeros((len(f), 1), np.float32))
    t_write, _ = _timed(write)
    shutil.rmtree(out, ignore_errors=True)
    from multiprocessing.reduction import ForkingPickler  # what the worker pool sends with
    t_send, sent = _timed(lambda: [ForkingPickler.dumps(f) for f in frames])  # in the workers
    t_receive, _ = _timed(lambda: [pickle.loads(bytearray(b)) for b in sent])  # pipe copy + load
    return {"MB": mb, "episodes": len(records), "frames": len(images),
            "raw MB": sum(f.nbytes for f in frames) / 1e6, "read": t_read,
            "crc before": t_crc_old, "crc after": t_crc_new, "parse": t_parse,
            "decode before": t_dec_old, "decode after": t_dec_new, "decode 1/2": t_dec_r2,
            "write": t_write, "send": t_send, "receive": t_receive}


def whole(source_kw: dict, tmp: Path, workers: int, before: bool = False) -> tuple[float, float]:
    """The fastest of REPEATS ``_whole`` runs."""
    return min(_whole(source_kw, tmp, workers, before) for _ in range(REPEATS))


def _whole(source_kw: dict, tmp: Path, workers: int, before: bool) -> tuple[float, float]:
    """(seconds of one OXERLDSSource.write, seconds before its first episode: the worker
    processes' start-up); ``before``: the previous CRC and decode."""
    saved = tfrecord.crc32c, oxe_rlds.decode_image
    if before:
        tfrecord.crc32c, oxe_rlds.decode_image = _old_crc, _old_decode
    src = OXERLDSSource(**source_kw, workers=workers, overwrite=True)
    episodes, stamps = src.episodes, []

    def stamped():
        for episode in episodes():
            stamps.append(time.perf_counter())
            yield episode
    src.episodes = stamped
    try:
        t0 = time.perf_counter()
        src.write(tmp / "whole")
        total = time.perf_counter() - t0
    finally:
        tfrecord.crc32c, oxe_rlds.decode_image = saved
    shutil.rmtree(tmp / "whole", ignore_errors=True)
    return total, stamps[0] - t0


def estimate(p: dict, workers: int) -> dict:
    """Hours for full RT-1 with ``workers`` processes (model above): before, after, and the
    after's parts (work of all processes together, this process's receive + write)."""
    per_mb = lambda key: p[key] / p["MB"] * RT1_GB * 1e3  # noqa: E731
    per_frame = lambda key: p[key] / p["frames"] * RT1_STEPS  # noqa: E731
    before = per_mb("read") + per_mb("crc before") + per_frame("parse") \
        + per_frame("decode before") + per_frame("write")  # the previous code: one process
    work = per_mb("read") + per_mb("crc after") + per_frame("parse") + per_frame("decode after")
    if workers > 1:
        work += per_frame("send")
    main = per_frame("write") + (per_frame("receive") if workers > 1 else 0.0)
    after = max(work / workers, main) if workers > 1 else work + main
    return {"workers": workers, "hours before (1 process)": before / 3600,
            "hours after": after / 3600, "ratio": before / after,
            "work h (all workers)": work / 3600, "receive + write h": main / 3600}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=24, help="episodes of the RT-1-shaped shard")
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 4))
    ap.add_argument("--repeats", type=int, default=REPEATS, help="runs per measurement (fastest)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    globals()["REPEATS"] = args.repeats
    from bench._report import machine, markdown_table, write_section  # not in worker processes

    rows, est_rows = [], []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        bridge = dict(data_dir=str(BRIDGE), camera="steps/observation/image_0",
                      action_fields=["steps/action"], language_field="steps/language_instruction")
        cases = [("bridge (real, 64x64)", bridge)]
        rt1 = write_rt1_shard(tmp / "rt1", args.episodes)
        cases.append(("RT-1-shaped (256x320)", dict(data_dir=str(rt1), split="train")))
        for name, kw in cases:
            p = phases(OXERLDSSource(**kw), tmp)
            t_old, _ = whole(kw, tmp, 1, before=True)
            t_one, _ = whole(kw, tmp, 1)
            t_par, t_start = whole(kw, tmp, args.workers)
            mbs = lambda t: p["MB"] / t  # noqa: E731
            steady = (t_par - t_start) * p["episodes"] / max(p["episodes"] - 1, 1)
            row = {"input": name, "MB": p["MB"], "episodes": p["episodes"], "frames": p["frames"],
                   "read MB/s": mbs(p["read"]), "CRC MB/s before": mbs(p["crc before"]),
                   "CRC MB/s after": mbs(p["crc after"]),
                   "CRC x": p["crc before"] / p["crc after"], "parse MB/s": mbs(p["parse"]),
                   "decode ms/frame before": 1e3 * p["decode before"] / p["frames"],
                   "decode ms/frame after": 1e3 * p["decode after"] / p["frames"],
                   "decode 1/2 ms/frame": 1e3 * p["decode 1/2"] / p["frames"],
                   "write MB/s (raw)": p["raw MB"] / p["write"],
                   "whole MB/s before": mbs(t_old), "whole MB/s after": mbs(t_one),
                   f"whole MB/s {args.workers} workers (after start-up)": mbs(steady),
                   "worker start-up s": t_start, "whole x (1 worker)": t_old / t_one,
                   f"whole x ({args.workers} workers, after start-up)": t_old / steady}
            print(json.dumps(row), flush=True)
            rows.append(row)
            if name.startswith("RT-1"):
                est_rows += [estimate(p, w) for w in sorted({1, args.workers, 16, 32})]
    cols = list(rows[0])
    phase_table = markdown_table([{k: r[k] for k in cols[:14]} for r in rows])
    whole_table = markdown_table([{k: r[k] for k in ["input"] + cols[14:]} for r in rows])
    est_table = markdown_table(est_rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    body = (f"## RLDS converter (`python bench/bench_rlds.py`)\n\n"
            f"Machine: {machine()}, {os.cpu_count()} CPU(s), load average {load:.1f} while it "
            f"ran (other jobs share the CPUs: compare rows of one run; with fewer free cores "
            f"than workers + 1 the worker runs measure contention, not scaling). Phases in one "
            f"process over every record; 'before' is the previous code path (pure-Python "
            f"CRC-32C, decode through convert('RGB')).\n\n"
            f"{phase_table}\n\n{whole_table}\n\n"
            f"Full RT-1 ({RT1_GB:g} GB, {RT1_EPISODES:,} episodes, {RT1_STEPS:,} frames), "
            f"modelled from the RT-1-shaped row: T(W) = max(work / W, receive + write); the "
            f"output is ~{RT1_STEPS * 256 * 320 * 3 / 1e9:.0f} GB of raw frames, so below "
            f"an hour also needs a disk that writes >= "
            f"{RT1_STEPS * 256 * 320 * 3 / 3600 / 1e6:.0f} MB/s sustained (the write rate "
            f"above is to the page cache, an upper bound).\n\n{est_table}\n")
    print(phase_table, whole_table, est_table, sep="\n\n")
    if not args.no_write:
        write_section("rlds", body)


if __name__ == "__main__":
    main()
