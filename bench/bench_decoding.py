"""How predicted codes become frames (``data.task.decoding``), measured on a finished run's
tokenizer with the true next-frame codes (the floor of every world model on that tokenizer).

    python bench/bench_decoding.py --run runs/pusht            # the quickstart's run folder
    python bench/bench_decoding.py --run /tmp/qs/runs/pusht --train-batches 40
    python bench/bench_decoding.py --run /tmp/gan/runs/pusht --label "GAN from step 500"

For every decoding (``tokens``, ``patch``, ``delta`` over a grid of thresholds and dilations)
it decodes the true next frame's codes with the task's own ``frames_from_codes`` and scores
them against the true frame, on training clips (where the threshold is chosen: the best
reward, the quantity GRPO optimises) and on the held-out clips (reported, never used to
choose), next to copying the last frame. Writes docs/benchmarks.md, section "decoding".
Issue #16.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import machine, markdown_table, write_section  # noqa: E402

THRESHOLDS = (0.1, 0.2, 0.3, 0.4)
DILATIONS = (0, 1, 2)
METRICS = ("mae", "psnr", "ssim", "lpips")


def _variants() -> list[tuple[str, str, float, int]]:
    """(label, decoding, threshold, dilation) of every decoding compared."""
    out = [("copy last frame", "copy", 0.0, 0), ("tokens", "tokens", 0.0, 0),
           ("patch", "patch", 0.0, 0)]
    out += [(f"delta {t:g} / {d} px", "delta", t, d) for t in THRESHOLDS for d in DILATIONS]
    return out


@torch.no_grad()
def floors(task, loader, max_batches: int | None) -> dict[str, dict[str, float]]:
    """{label: {metric: mean over clips}} of the true next-frame codes under every decoding."""
    from wm.rewards.frame_metrics import frame_metrics

    sums: dict[str, dict[str, list]] = {}
    saved = task.decoding, task.delta_threshold, task.delta_dilate
    names = METRICS if task.perceptual is not None else METRICS[:-1]
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            built = task._encode(batch)
            frames = batch["frames"].float()
            ref, target = frames[:, task.Tc - 1], frames[:, task.Tc: task.Tc + 1]
            for label, decoding, thr, dil in _variants():
                if decoding == "copy":
                    pred = ref[:, None]
                else:
                    task.decoding, task.delta_threshold, task.delta_dilate = decoding, thr, dil
                    pred = task.frames_from_codes(built["ctx_codes"], built["fut_codes"][:, :1],
                                                  ref)
                vals = frame_metrics(pred, target, perceptual=task.perceptual, names=names)
                for k, v in vals.items():
                    sums.setdefault(label, {}).setdefault(k, []).append(v)
    finally:
        task.decoding, task.delta_threshold, task.delta_dilate = saved
    return {label: {k: float(torch.cat(v).mean()) for k, v in d.items()}
            for label, d in sums.items()}


def reward(row: dict[str, float]) -> float:
    """-(MAE + perceptual) when a perceptual network is set, else -MAE (the quickstart's)."""
    return -(row["mae"] + row.get("lpips", 0.0))


def _reward_of(rows: dict, label: str) -> str:
    return f"{reward(rows[label]):.5f}" if label in rows else "not in the grid"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="runs/<run> with a trained tokenizer/")
    ap.add_argument("--train-batches", type=int, default=40,
                    help="training batches to score (the threshold is chosen on these)")
    ap.add_argument("--label", default="",
                    help="names the run (e.g. 'GAN from step 500'); a labelled run gets its own "
                         "section, decoding-<label>")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    # any stage's saved config holds the data and task (the tokenizer's is there first)
    cfg = OmegaConf.load(args.run / "tokenizer" / "config.yaml")
    cfg.data.task.tokenizer_ckpt = str(args.run / "tokenizer" / "checkpoints" / "last.ckpt")
    dm = instantiate(cfg.data.datamodule, _convert_="all")
    dm.prepare_data()
    dm.setup("fit")
    task = instantiate(cfg.data.task, _convert_="all")
    task.connect(dm)
    train = floors(task, dm.train_dataloader(), args.train_batches)
    held = floors(task, dm.val_dataloader(), None)
    ours = f"delta {task.delta_threshold:g} / {task.delta_dilate} px"
    best = max((k for k in train if k.startswith("delta")), key=lambda k: reward(train[k]))
    name = getattr(task.perceptual, "metric_name", "lpips")
    rows = [{"decoding": k, **{f"train {name if m == 'lpips' else m}": v for m, v in train[k].items()},
             "train reward": reward(train[k]),
             **{f"held-out {name if m == 'lpips' else m}": v for m, v in held[k].items()},
             "held-out reward": reward(held[k])} for k in train]
    body = "\n\n".join([
        "## How predicted codes become frames (`python bench/bench_decoding.py`)"
        + (f": {args.label}" if args.label else ""),
        f"Machine: {machine()}. Run: `{args.run}` (its tokenizer; the true next frame's codes "
        f"of {args.train_batches} training batches and of every held-out clip, decoded by "
        "`VideoTask.frames_from_codes`). `delta t / d px` redraws a changed cell's pixels "
        "only where the new code's decoding differs from the previous code's by more than t, "
        "grown by d pixels (wm/tasks/video_decoding.py). The reward is the quickstart's, "
        "-(MAE + perceptual).",
        markdown_table(rows),
        f"Best on the training clips (by reward): **{best}** ({reward(train[best]):.5f}). "
        f"This run's setting: `{ours}` ({_reward_of(train, ours)}; the PushT default, "
        "`conf/data/pusht.yaml`, is 0.3 / 2 px)."])
    print(body)
    if not args.no_write:
        slug = "".join(c if c.isalnum() else "-" for c in args.label.lower()).strip("-")
        write_section(f"decoding-{slug}" if slug else "decoding", body)
    return {"train": train, "held_out": held, "best": best}


if __name__ == "__main__":
    main()
