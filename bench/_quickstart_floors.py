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


def token_stability(run_root: Path, margin: int = 12, threshold: float = 0.02) -> dict:
    """{"far_flip": share of tokens farther than ``margin`` px from any pixel that changed by
    more than ``threshold`` which still change, "unchanged": share of tokens that stay the same}
    over the held-out clips' (last context, next) frame pairs; ``run_root`` = runs/<run>."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from wm.vision.registry import load_tokenizer

    cfg = OmegaConf.load(run_root / "mle" / "config.yaml")
    dm = instantiate(cfg.data.datamodule, _convert_="all")
    dm.prepare_data()
    dm.setup("validate")
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
