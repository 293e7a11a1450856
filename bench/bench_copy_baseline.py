"""The copy-the-last-frame baseline on the held-out clips that eval.py scores.

A world model that outputs its last context frame for every future frame needs no training; when
it scores a lower MAE than a trained model, an MAE reward pays a policy for copying (RLVR-World
reports the opposite trend, repetition 48.6 % -> 9.9 %, at RT-1 scale). This bench scores that
baseline in pixel space, with the metric functions eval.py uses, on the validation clips of a VideoDataModule (the same episodes, clip
starts and resolution as the evaluation of ``data=pusht``) for each dataset folder and clip shape
given, so it can be set beside the MLE/RLVR tables of the "quickstart" and "multistep" sections.

    python bench/bench_copy_baseline.py --root data_cache/pusht_sim_64px_120x60_fs5_seed0 \
        --root data_cache/pusht_sim_64px_120x60_fs1_seed0

Writes the "copy_baseline" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import machine, markdown_table, write_section  # noqa: E402
from wm.data.video import VideoDataModule  # noqa: E402
from wm.rewards.frame_metrics import frame_metrics  # noqa: E402

#: (name, context frames, future frames): the quickstart's single-step clips and the multi-step
#: experiment's clips (conf/data/pusht.yaml, conf/experiment/pusht_multistep.yaml)
SETTINGS = [("single-step (2 context, 1 future)", 2, 1), ("multi-step (1 context, 4 future)", 1, 4)]


def copy_scores(root: str, context: int, future: int, resolution: int, val_every: int,
                clips_per_episode: int) -> dict:
    """The eval metrics of repeating the last context frame, and how often the truth holds still."""
    dm = VideoDataModule(root, context, future, resolution=(resolution, resolution), batch_size=64,
                         val_every=val_every, val_clips_per_episode=clips_per_episode, seed=0)
    dm.setup("fit")
    sums: dict[str, float] = {}
    frames = 0
    for batch in dm.val_dataloader():
        clip = batch["frames"]                                      # (B, Tc + Tf, 3, H, W) in [0, 1]
        fut = clip[:, context:]                                     # (B, Tf, 3, H, W)
        copy = clip[:, context - 1 : context].expand_as(fut)        # the last context frame, Tf times
        scores = frame_metrics(copy, fut)                           # {name: (B, Tf)}
        # each true future frame against its predecessor: the data's own stillness
        scores["still"] = frame_metrics(clip[:, context - 1 : -1], fut, names=("mae",))["mae"] < 1e-3
        for name, v in scores.items():
            sums[name] = sums.get(name, 0.0) + v.float().sum().item()
        frames += fut.shape[0] * fut.shape[1]
    row = {f"copy {n.upper()}": sums[n] / frames for n in ("mae", "mse", "psnr", "ssim")}
    return {**row, "true frames nearly still (MAE to previous < 0.001)": sums["still"] / frames,
            "predicted frames": frames}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", action="append", required=True, help="episode folder (repeatable)")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--val-every", type=int, default=10, help="as data=pusht (every 10th episode)")
    ap.add_argument("--val-clips-per-episode", type=int, default=8)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    rows = []
    for root in args.root:
        for name, context, future in SETTINGS:
            scores = copy_scores(root, context, future, args.resolution, args.val_every,
                                 args.val_clips_per_episode)
            rows.append({"data": Path(root).name, "clips": name, **scores})
    body = ("## Copy-the-last-frame baseline (`python bench/bench_copy_baseline.py`)\n\n"
            f"Machine: {machine()}. Held-out clips of `VideoDataModule` (every {args.val_every}th "
            f"episode, {args.val_clips_per_episode} clips each, {args.resolution}x{args.resolution}); "
            "the prediction is the last context frame repeated, scored in pixels against the "
            "true future frames.\n\n" + markdown_table(rows))
    write_section("copy_baseline", body)
    print(body)


if __name__ == "__main__":
    main()
