"""Helper script (not a test module) for tests/test_eval_sharding.py: ``Trainer.validate`` under
Lightning DDP on ``--devices`` CPU processes (gloo), the toy text DataModule as configured
(``use_distributed_sampler=false``, as conf/trainer/default.yaml); each rank writes the records
it scored, one validation step per line, to ``<--out>.rank<r>`` (JSON lines)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wm.data.text import TextStateDataModule  # noqa: E402


class Recorder(L.LightningModule):
    def __init__(self, out: str):
        super().__init__()
        self.out, self.w = out, torch.nn.Parameter(torch.zeros(()))

    def validation_step(self, batch, batch_idx):
        with open(f"{self.out}.rank{self.global_rank}", "a") as fh:
            fh.write(json.dumps([[p, t] for p, t in zip(batch["prompt"], batch["target"])]) + "\n")
        self.log("val/rows", float(len(batch["prompt"])), sync_dist=True)   # a collective


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    dm = TextStateDataModule("toy", batch_size=4, toy_train=16, toy_val=13, seed=0)
    trainer = L.Trainer(accelerator="cpu", devices=args.devices, strategy="ddp", logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=False)
    trainer.validate(Recorder(args.out), datamodule=dm)
    if trainer.global_rank == 0:
        dm.setup()
        Path(f"{args.out}.all").write_text(json.dumps([[i["prompt"], i["target"]]
                                                       for i in dm.val_items]))


if __name__ == "__main__":
    main()
