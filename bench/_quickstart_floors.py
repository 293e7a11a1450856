"""What bounds the quickstart's world model (issue #16), measured on a finished run:

- ``token_stability``: the share of tokens that change between two consecutive held-out frames
  although no pixel within ``margin`` pixels of their cell changed. A world model has to predict
  such flips as noise (VQGAN's GroupNorm flips many: its statistics span the whole frame;
  ``vision.tokenizer.norm=channel`` keeps them put). Also the share of tokens that stay the same.
- ``floor_with_tokens_decoding``: ``eval.py ckpt=true_tokens data.task.decoding=tokens``, the
  true next frame's tokens decoded by the tokenizer alone (the paper's decoding), next to the
  run's own ``true tokens`` row (its decoding).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F


def _val_datamodule(cfg):
    """The run's VideoDataModule (from its saved config), set up for the held-out split."""
    from hydra.utils import instantiate

    dm = instantiate(cfg.data.datamodule, _convert_="all")
    dm.prepare_data()
    dm.setup("validate")
    return dm


def token_stability(run_root: Path, margin: int = 12, threshold: float = 0.02) -> dict:
    """{"far_flip": share of tokens farther than ``margin`` px from any pixel that changed by
    more than ``threshold`` which still change, "unchanged": share of tokens that stay the same}
    over the held-out clips' (last context, next) frame pairs; ``run_root`` = runs/<run>."""
    from omegaconf import OmegaConf

    from wm.vision.registry import load_tokenizer

    cfg = OmegaConf.load(run_root / "mle" / "config.yaml")
    dm = _val_datamodule(cfg)
    tok = load_tokenizer(str(run_root / "tokenizer" / "checkpoints" / "last.ckpt")).eval()
    tc = int(cfg.data.context_frames)
    far = [0, 0]
    same = [0, 0]
    for batch in dm.val_dataloader():
        frames = batch["frames"].float()
        a, b = frames[:, tc - 1], frames[:, tc]                         # (B, 3, H, W)
        with torch.no_grad():
            za, zb = tok.encode(a), tok.encode(b)                       # (B, h, w)
        moved = ((a - b).abs().amax(1, keepdim=True) > threshold).float()
        moved = F.max_pool2d(moved, 2 * margin + 1, stride=1, padding=margin)
        near = F.adaptive_max_pool2d(moved, za.shape[-2:])[:, 0] > 0    # (B, h, w)
        flip = za != zb
        far[0] += int(flip[~near].sum())
        far[1] += int((~near).sum())
        same[0] += int((~flip).sum())
        same[1] += flip.numel()
    return {"far_flip": far[0] / max(far[1], 1), "unchanged": same[0] / max(same[1], 1),
            "margin_px": margin}


def floor_with_tokens_decoding(root: Path, workdir: Path, overrides: list[str]) -> dict:
    """Metrics of ``eval.py ckpt=true_tokens data.task.decoding=tokens`` on the run's data."""
    out = workdir / "floor_tokens_decoding"
    env = {**os.environ, "WM_RUNS_DIR": str(workdir / "runs"),
           "WM_DATA_DIR": str(workdir / "data")}
    subprocess.run([sys.executable, "eval.py", "ckpt=true_tokens", *overrides,
                    "data.task.decoding=tokens", f"out_dir={out}"], cwd=root, env=env,
                   check=True, capture_output=True)
    return json.loads((out / "metrics.json").read_text())["metrics"]


def keep_oracle(run_root: Path, seed: int = 0) -> dict:
    """Where the RLVR model's single-step error comes from: its samples (one per held-out
    prompt, temperature 1), and the same samples edited with the truth's help before decoding
    (``data.task.decoding`` of the run): ``unchanged kept`` puts back the previous frame's token
    wherever the true token did not change; ``+ wrong changes kept`` also puts it back wherever
    the model changed a token to a wrong one (only exact changes remain). Returns
    {variant: {"mae", "stlpips"|"lpips"}} plus the token accuracies on unchanged / changed cells."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from wm.rewards.frame_metrics import frame_metrics
    from wm.rollout.sampler import Sampler

    cfg = OmegaConf.load(run_root / "grpo" / "config.yaml")
    dm = _val_datamodule(cfg)
    task = instantiate(cfg.data.task, _convert_="all")
    task.connect(dm)
    policy = task.build_policy(None, init=str(run_root / "grpo" / "checkpoints" / "last.ckpt"))
    policy.eval()
    gen = torch.Generator().manual_seed(seed)
    sums: dict[str, dict[str, list]] = {}
    hits = {"unchanged": [0, 0], "changed": [0, 0]}
    name = getattr(task.perceptual, "metric_name", "lpips")
    for batch in dm.val_dataloader():
        prompts = task.prompts(batch)
        out = Sampler().sample(policy, prompts.ids, prompts.mask, prompts.plan, group_size=1,
                               temperature=1.0, generator=gen)
        preds = task.decode(out.tokens, batch, 1)
        p, t = preds["tokens"][:, 0], preds["true_tokens"][:, 0]              # (B, N)
        c = preds["prev_tokens"]                                             # (B, N)
        for key, cells in (("unchanged", t == c), ("changed", t != c)):
            hits[key][0] += int((p == t)[cells].sum())
            hits[key][1] += int(cells.sum())
        kept = torch.where(t == c, c, p)
        variants = {"model": p, "unchanged kept": kept,
                    "+ wrong changes kept": torch.where(kept == t, kept, c)}
        ctx = task._encode(batch)["ctx_codes"]
        ref = batch["frames"][:, task.Tc - 1].float()
        for label, codes in variants.items():
            frames = task.frames_from_codes(ctx, codes[:, None], ref)
            vals = frame_metrics(frames, preds["target"], perceptual=task.perceptual,
                                 names=("mae", "lpips") if task.perceptual is not None
                                 else ("mae",))
            for k, v in vals.items():
                sums.setdefault(label, {}).setdefault(name if k == "lpips" else k, []).append(v)
    out = {label: {k: float(torch.cat(v).mean()) for k, v in d.items()}
           for label, d in sums.items()}
    out["token_accuracy"] = {k: h[0] / max(h[1], 1) for k, h in hits.items()}
    return out
