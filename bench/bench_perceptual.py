"""The perceptual reward's cost in GRPO: ST-LPIPS scored on G samples per prompt (issue #27).

    python bench/bench_perceptual.py                      # PushT 64x64, AlexNet and VGG
    python bench/bench_perceptual.py --nets alex --group 16 --prompts 8 --no-write

GRPO scores G sampled next frames against one true frame per prompt. Three ways, side by side
in one run, one torch thread, on the same frames:

- ``pairs fp32``: the former path, ``perceptual(pred, target repeated G times)``: the true
  frame's features are computed G times;
- ``reuse fp32``: ``wm.rewards.frame_metrics.lpips`` (what rewards and evaluation call): each
  distinct true frame's features once, compared with its G samples (exact);
- ``reuse bf16``: the same with ``Perceptual(dtype="bf16")``: backbone in bfloat16 and
  channels_last (scaling, unit normalisation and heads in float32).

Frames: PushT episodes rendered by the project's simulator source (``PushTSimSource``); a
prompt's truth is frame t+1, its G "samples" the frames t-1 .. t+3 around it with small pixel
noise (errors of the size a world model makes: motion off by a step, blur-like noise). The bf16
columns report how far its distances and rewards (-(mae + stlpips)) are from fp32's, and how
often two samples of one group swap order (what the group advantage sees). Writes
docs/benchmarks.md, section "perceptual".
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import machine, markdown_table, write_section  # noqa: E402


def pusht_groups(prompts: int, group: int, size: int, seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """-> pred (prompts*group, 3, H, W), target (prompts*group, 3, H, W) with each target
    repeated ``group`` times (as ``VideoTask.decode`` repeats it), frames in [0, 1]."""
    from wm.data.sources.pusht_sim import PushTSimSource

    src = PushTSimSource(num_episodes=prompts, episode_length=24, image_size=size, seed=seed)
    env = src.make_env()
    gen = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    try:
        for i in range(prompts):
            frames, _, _ = src.episode(env, i)
            clip = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255  # (T, 3, H, W)
            t = int(torch.randint(2, len(clip) - 4, (), generator=gen))
            for g in range(group):
                shift = g % 5 - 1                                           # t-1 .. t+3
                noise = 0.02 * (g / group) * torch.randn(clip[0].shape, generator=gen)
                preds.append((clip[t + shift] + noise).clamp(0, 1))
                targets.append(clip[t + 1])
    finally:
        env.close()
    return torch.stack(preds), torch.stack(targets)


def timed(fns: dict, repeats: int) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Best of ``repeats`` wall times (s) of each ``fns[name]()`` after one warm-up call, the
    paths interleaved (one call of each per round, so load from elsewhere hits all of them
    alike), and each one's output."""
    out = {name: fn() for name, fn in fns.items()}
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            out[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best, out


def swapped_pairs(a: torch.Tensor, b: torch.Tensor, group: int) -> float:
    """Share of same-group sample pairs ordered differently by rewards ``a`` and ``b`` (N,)."""
    a, b = a.reshape(-1, group), b.reshape(-1, group)
    da = (a[:, :, None] - a[:, None, :]).sign()
    db = (b[:, :, None] - b[:, None, :]).sign()
    off = ~torch.eye(group, dtype=torch.bool)
    return float((da != db)[:, off].float().mean())


@torch.no_grad()
def measure(net: str, prompts: int, group: int, size: int, repeats: int, chunk: int) -> dict:
    from wm.rewards.frame_metrics import lpips, mae
    from wm.vision.perceptual import Perceptual

    pred, target = pusht_groups(prompts, group, size)
    fp32 = Perceptual(backend="stlpips", net=net)
    bf16 = Perceptual(backend="stlpips", net=net, dtype="bf16")

    def pairs():
        return torch.cat([fp32(x, y) for x, y in zip(pred.split(chunk), target.split(chunk))])

    t, d = timed({"pairs": pairs,
                  "reuse": lambda: lpips(pred, target, fp32, chunk_frames=chunk),
                  "bf16": lambda: lpips(pred, target, bf16, chunk_frames=chunk)}, repeats)
    (t_pairs, d_pairs), (t_reuse, d_reuse), (t_bf16, d_bf16) = \
        ((t[k], d[k]) for k in ("pairs", "reuse", "bf16"))
    err = mae(pred, target)
    r32, r16 = -(err + d_reuse), -(err + d_bf16)
    spread = r32.reshape(-1, group).std(dim=1).mean()
    return {
        "frames": len(pred), "t_pairs": t_pairs, "t_reuse": t_reuse, "t_bf16": t_bf16,
        "reuse_exact": float((d_reuse - d_pairs).abs().max()),
        "dist_mean": float(d_reuse.mean()),
        "bf16_max_abs": float((d_bf16 - d_reuse).abs().max()),
        "bf16_max_rel": float(((d_bf16 - d_reuse).abs() / d_reuse.abs().clamp(min=1e-6)).max()),
        "reward_spread": float(spread),
        "bf16_reward_max_abs": float((r16 - r32).abs().max()),
        "bf16_swapped": swapped_pairs(r32, r16, group),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", nargs="+", default=["alex", "vgg"], choices=("alex", "vgg"))
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group", type=int, default=16, help="G samples per prompt")
    p.add_argument("--size", type=int, default=64, help="frame size (PushT quickstart: 64)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk", type=int, default=256, help="frames per call (VideoReward's)")
    p.add_argument("--no-write", action="store_true", help="print only")
    a = p.parse_args()
    torch.set_num_threads(1)
    rows, notes = [], []
    for net in a.nets:
        m = measure(net, a.prompts, a.group, a.size, a.repeats, a.chunk)
        rows += [
            {"net": net, "path": "pairs fp32 (truth per sample)", "s per batch": m["t_pairs"],
             "speedup": 1.0, "max abs diff": 0.0},
            {"net": net, "path": "reuse fp32 (truth once per prompt)",
             "s per batch": m["t_reuse"], "speedup": m["t_pairs"] / m["t_reuse"],
             "max abs diff": m["reuse_exact"]},
            {"net": net, "path": "reuse + bf16 channels_last", "s per batch": m["t_bf16"],
             "speedup": m["t_pairs"] / m["t_bf16"], "max abs diff": m["bf16_max_abs"]},
        ]
        notes.append(
            f"- {net}: mean distance {m['dist_mean']:.3g}; bf16 moves the reward -(mae + "
            f"stlpips) by at most {m['bf16_reward_max_abs']:.2g} against a within-group reward "
            f"std of {m['reward_spread']:.2g}, and {m['bf16_swapped']:.2%} of same-group "
            "sample pairs swap order.")
    frames = a.prompts * a.group
    body = (
        f"### perceptual (`python bench/bench_perceptual.py`)\n\n"
        f"ST-LPIPS rewards of one GRPO batch: {a.prompts} PushT prompts x G={a.group} samples "
        f"= {frames} frames of {a.size}x{a.size} (the truth repeated G times, as "
        f"`VideoTask.decode` gives it), best of {a.repeats} rounds, the three paths "
        f"interleaved in each round; {machine()}. Speedup: against the pairs path of the same "
        "net and run (on 2 cores shared with other jobs the ratios moved by up to ~30% between "
        "runs). "
        "'max abs diff': largest |distance - pairs fp32's|.\n\n"
        f"{markdown_table(rows)}\n\n" + "\n".join(notes) + "\n\n"
        "Reuse is the default (rewards, validation, eval.py). bf16 is an option, "
        "`+data.task.perceptual.dtype=bf16` (default `fp32`, exact): its tolerance is stated "
        "and tested in docs/metrics.md, \"Perceptual precision\".")
    print(body)
    if not a.no_write:
        write_section("perceptual", body)

if __name__ == "__main__":
    main()
