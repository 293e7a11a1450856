"""Encode / decode throughput (frames per second) of the visual tokenizers.

Measures ``encode_clip`` and ``decode_clip`` of the per-frame FSQ-VQGAN and the compressive
tokenizer at 64x64 (tiny presets) and 256x320 (the reference sizes of shared/REFERENCE.md,
random weights: speed does not depend on them). Frames/s counts every frame of the clip for
encoding and the future frames for decoding. Writes the table to docs/benchmarks.md, section
"tokenizer".

    python bench/bench_tokenizer.py [--threads 1] [--device cpu] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import machine, markdown_table, write_section  # noqa: E402
from wm.vision.compressive import CompressiveTokenizer  # noqa: E402
from wm.vision.fsq_vqgan import FrameTokenizer  # noqa: E402

# (name, builder, batch size, clip length T, n_context)
CASES = [
    ("frame tiny64_8x8", lambda: FrameTokenizer.preset("tiny64_8x8"), 8, 2, 1),
    ("compressive tiny64", lambda: CompressiveTokenizer.preset("tiny64"), 8, 2, 1),
    ("frame reference 256x320", lambda: FrameTokenizer.preset("reference"), 1, 2, 1),
    ("compressive reference 256x320", lambda: CompressiveTokenizer.preset("reference"), 1, 2, 1),
]


def _time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def run(repeats: int, device: torch.device) -> list[dict]:
    rows = []
    for name, build, B, T, n_ctx in CASES:
        torch.manual_seed(0)
        tok = build().to(device).eval()
        H, W = tok.resolution
        clip = torch.rand(B, T, 3, H, W, device=device)
        with torch.inference_mode():
            ctx, fut = tok.encode_clip(clip, n_ctx)
            t_enc = _time(lambda: tok.encode_clip(clip, n_ctx), repeats, device)
            t_dec = _time(lambda: tok.decode_clip(ctx, fut), repeats, device)
        tokens = f"{tok.tokens_per_context_frame}/{tok.tokens_per_future_frame}"
        row = {"tokenizer": name, "frame": f"{H}x{W}", "tokens ctx/fut": tokens,
               "params (M)": sum(p.numel() for p in tok.parameters()) / 1e6, "batch": f"{B}x{T}",
               "encode frames/s": B * T / t_enc, "decode frames/s": B * fut.shape[1] / t_dec}
        print(row, flush=True)
        rows.append(row)
        del tok
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true",
                    help="print only, do not update docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = run(args.repeats, device)
    table = markdown_table(rows)
    body = (f"## Tokenizer throughput (`python bench/bench_tokenizer.py`)\n\n"
            f"Machine: {machine()}; device {device}; inference mode, random weights, mean of "
            f"{args.repeats} runs after one warm-up. Encode counts every frame of the clip, "
            f"decode the future frames. On shared CPUs the spread between runs reached 1.7x "
            f"(other jobs on the same cores): compare rows of one run only.\n\n{table}\n")
    print(table)
    if not args.no_write:
        write_section("tokenizer", body)


if __name__ == "__main__":
    main()
