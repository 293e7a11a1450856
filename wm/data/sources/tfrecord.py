"""TFRecord files and ``tf.train.Example`` records, read without TensorFlow.

Implemented from the published formats:

* TFRecord: ``uint64 length (LE) | uint32 masked crc32c(length) | data |
  uint32 masked crc32c(data)``, ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8``;
  CRC-32C (Castagnoli) is computed in pure Python (slicing-by-8); data CRCs can be skipped for
  speed with ``verify_crc=False`` (length CRCs are always checked);
* a minimal protobuf wire-format decoder for ``tf.train.Example``: Example{features=1} ->
  Features{map<string, Feature> feature=1} -> Feature{bytes_list=1 | float_list=2 |
  int64_list=3}, each a ``repeated value=1``, packed or not.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterator

import numpy as np

from wm.data.episodes import DataError


# ----------------------------------------------------------------------------------- CRC-32C


def _crc_tables() -> list[list[int]]:
    poly = 0x82F63B78  # Castagnoli, reflected
    t0 = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        t0.append(c)
    tables = [t0]
    for _ in range(7):  # slicing-by-8: table k advances a byte through k more zero bytes
        prev = tables[-1]
        tables.append([(prev[i] >> 8) ^ t0[prev[i] & 0xFF] for i in range(256)])
    return tables


_T = _crc_tables()


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C of ``data`` (pure Python, ~8 bytes per loop iteration)."""
    t0, t1, t2, t3, t4, t5, t6, t7 = _T
    crc = 0xFFFFFFFF
    mv = memoryview(data).cast("B")
    n8 = len(mv) // 8 * 8
    for lo, hi in struct.iter_unpack("<II", mv[:n8]):
        x = crc ^ lo
        crc = (t7[x & 0xFF] ^ t6[(x >> 8) & 0xFF] ^ t5[(x >> 16) & 0xFF] ^ t4[x >> 24]
               ^ t3[hi & 0xFF] ^ t2[(hi >> 8) & 0xFF] ^ t1[(hi >> 16) & 0xFF] ^ t0[hi >> 24])
    for b in mv[n8:]:
        crc = (crc >> 8) ^ t0[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | memoryview) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ----------------------------------------------------------------------------------- TFRecord


def read_tfrecord(path: str | Path, verify_crc: bool = True) -> Iterator[bytes]:
    """Yield the records of one TFRecord file; corruption raises DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"TFRecord shard {path} not found; check data_dir and split")
    with open(path, "rb") as f:
        k = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise DataError(f"{path}: truncated record header at record {k}; the file is corrupt")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise DataError(f"{path}: length CRC mismatch at record {k}; the file is corrupt "
                                "(re-download the shard)")
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise DataError(f"{path}: truncated record {k}; the file is corrupt")
            if verify_crc and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise DataError(f"{path}: data CRC mismatch at record {k}; the file is corrupt "
                                "(re-download the shard)")
            yield data
            k += 1


# ----------------------------------------------------------------------------------- protobuf


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, object]]:
    """Yield (field number, wire type, value): int for varint/fixed, memoryview for bytes."""
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            size, pos = _varint(buf, pos)
            if pos + size > n:
                raise ValueError("truncated length-delimited field")
            val, pos = buf[pos:pos + size], pos + size
        elif wt == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        yield num, wt, val


def _to_int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _decode_feature(buf: memoryview) -> list[bytes] | np.ndarray:
    """Feature -> list of bytes (bytes_list), float32 array (float_list) or int64 array."""
    for kind, wt, lst in _fields(buf):
        if wt != 2:
            raise ValueError("Feature field is not a message")
        if kind == 1:  # BytesList
            return [bytes(v) for _, _, v in _fields(lst)]
        if kind == 2:  # FloatList: packed (wt 2) or one fixed32 per value (wt 5)
            parts = [np.frombuffer(v, "<f4") for _, _, v in _fields(lst)]
            return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        if kind == 3:  # Int64List: packed varints or one varint per value
            out: list[int] = []
            for _, w, v in _fields(lst):
                if w == 0:
                    out.append(_to_int64(v))
                else:
                    p = 0
                    while p < len(v):
                        x, p = _varint(v, p)
                        out.append(_to_int64(x))
            return np.array(out, dtype=np.int64)
    return []  # an empty Feature (no kind set)


def parse_example(record: bytes) -> dict[str, list[bytes] | np.ndarray]:
    """Decode a serialized ``tf.train.Example`` into {key: values}. Raises ValueError if malformed."""
    out: dict[str, list[bytes] | np.ndarray] = {}
    for num, wt, features in _fields(memoryview(record)):
        if num != 1 or wt != 2:
            continue
        for fnum, fwt, entry in _fields(features):
            if fnum != 1 or fwt != 2:
                continue
            key, value = None, memoryview(b"")
            for enum, _, v in _fields(entry):
                if enum == 1:
                    key = bytes(v).decode("utf-8")
                elif enum == 2:
                    value = v
            if key is not None:
                out[key] = _decode_feature(value)
    return out
