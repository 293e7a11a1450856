"""Rollout speed: our sampler vs ``transformers.generate`` at a GRPO group of 16 (CPU, 1 thread).

Rows (generated tokens per second, all rows of the group counted, median of ``--repeats``):
* single-step: ``P`` prompt tokens -> ``N`` sampled tokens, full vocabulary, temperature 1, top-k 100:
  ours (pre-allocated cache, one prefill per prompt) vs ``generate`` with its default dynamic cache,
  with ``cache_implementation="static"``, and with ``use_cache=False``.
* multi-step: 4 frames x 16 tokens with 4 forced action tokens between frames: ours in one loop
  (forced runs fed in one pass) vs the reference's approach, one ``generate`` call per frame
  (each call re-prefills the growing sequence for all 16 rows).

Run: ``python bench/bench_rollout.py`` (about 2-4 minutes); writes section "rollout" of
docs/benchmarks.md. Random weights: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench._report import machine, markdown_table, write_section  # noqa: E402
from wm.rollout import ResponsePlan  # noqa: E402
from wm.rollout.sampler import sample_cached  # noqa: E402
from wm.world.llama import build_llama  # noqa: E402

VOCAB = 4633  # reference single-step vocabulary (VocabLayout with the 4,375-code FSQ tokenizer)


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def generate(model, prompt, new_tokens, group, **kw):
    return model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, temperature=1.0,
                          top_k=100, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                          num_return_sequences=group, pad_token_id=0, eos_token_id=None, **kw)


def bench_preset(name, hidden, layers, heads, inter, prompt_len, new_tokens, group, repeats):
    model = build_llama(VOCAB, hidden, layers, heads, intermediate_size=inter, max_position_embeddings=4096,
                        seed=0).eval()
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 4375, (1, prompt_len), generator=g)
    rows, total = [], group * new_tokens

    # ---- single-step
    plan = ResponsePlan(new_tokens)
    ours = timed(lambda: sample_cached(model, prompt, None, plan, group, top_k=100, generator=g), repeats)
    res = {"ours (prealloc cache)": ours}
    with torch.no_grad():
        res["generate (dynamic cache)"] = timed(lambda: generate(model, prompt, new_tokens, group), repeats)
        res["generate (static cache)"] = timed(
            lambda: generate(model, prompt, new_tokens, group, cache_implementation="static"), repeats)
        res["generate (no cache)"] = timed(
            lambda: generate(model, prompt, new_tokens, group, use_cache=False), max(1, repeats // 2))
    for k, s in res.items():
        rows.append({"preset": name, "scenario": f"single-step P={prompt_len} N={new_tokens}", "method": k,
                     "s/rollout": s, "ms/token": 1e3 * s / new_tokens, "tokens/s": total / s,
                     "ours speed-up": s / ours})

    # ---- multi-step: 4 x (16 frame tokens + 4 forced action tokens)
    frames, per_frame, A = 4, 16, 4
    actions = torch.randint(4375, 4631, (frames, A), generator=g)
    forced = torch.full((frames * (per_frame + A),), -1)
    for i in range(frames):
        forced[i * (per_frame + A) + per_frame:(i + 1) * (per_frame + A)] = actions[i]
    mplan = ResponsePlan(len(forced), forced, 0, 4375)
    ours_m = timed(lambda: sample_cached(model, prompt, None, mplan, group, top_k=100, generator=g), repeats)

    def per_frame_generate():  # the reference: one generate call per frame, actions appended between
        seq = prompt.expand(group, -1)
        for i in range(frames):
            out = model.generate(seq, attention_mask=torch.ones_like(seq), do_sample=True, temperature=1.0,
                                 top_k=100, max_new_tokens=per_frame, min_new_tokens=per_frame,
                                 pad_token_id=0, eos_token_id=None)
            seq = torch.cat([out, actions[i].expand(group, -1)], dim=1)
        return seq

    with torch.no_grad():
        ref_m = timed(per_frame_generate, repeats)
    total_m = group * frames * per_frame
    for k, s in (("ours (one loop, forced actions)", ours_m), ("generate per frame (reference)", ref_m)):
        rows.append({"preset": name, "scenario": f"multi-step {frames}x({per_frame}+{A} forced)", "method": k,
                     "s/rollout": s, "ms/token": 1e3 * s / (frames * per_frame), "tokens/s": total_m / s,
                     "ours speed-up": s / ours_m})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--group", type=int, default=16)
    ap.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    ap.add_argument("--small", action="store_true", help="also run hidden 256 / 4 layers (ENVIRONMENT.md's model)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = bench_preset("tiny (h128 L4)", 128, 4, 4, 384, 128, 64, args.group, args.repeats)
    if args.small:
        rows += bench_preset("small (h256 L4)", 256, 4, 4, 768, 128, 64, args.group, args.repeats)
    cols = ["preset", "scenario", "method", "s/rollout", "ms/token", "tokens/s", "ours speed-up"]
    table = markdown_table(rows, cols)
    print(table)
    body = (f"`python bench/bench_rollout.py{' --small' if args.small else ''}` — group {args.group}, "
            f"vocabulary {VOCAB}, temperature 1, top-k 100, median of {args.repeats} runs; tokens/s counts "
            f"every row of the group; 'ours speed-up' = that row's time / ours (same scenario).\n"
            f"Machine: {machine()}\n\n{table}\n")
    if not args.no_write:
        write_section("rollout", body)


if __name__ == "__main__":
    main()
