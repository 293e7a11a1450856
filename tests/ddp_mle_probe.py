"""Helper script (not a test module) for tests/test_mle_normalizer_ddp.py: one MLE optimizer step
with plain SGD on a FIXED global batch of 4 targets, split over ``--devices`` CPU processes
(Lightning DDP, gloo) or taken whole by one process; writes the updated policy weights to
``--out``.

Rank 0 gets the two long targets (20 + 19 loss tokens), rank 1 the two short ones (1 + 1): a
per-rank token mean averaged by DDP weighs rank 1's 2 tokens like rank 0's 39; only the global
token count gives the single-process gradient.
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stage_fixtures import TargetTokenTask, tiny_llama_factory  # noqa: E402
from wm.stages.mle import MLEModule  # noqa: E402
from wm.tasks.base import Responses  # noqa: E402

N, P, LEN = 4, 4, 20
LENGTHS = torch.tensor([20, 19, 1, 1])           # loss tokens per target row


def global_batch() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"prompt": torch.randint(16, (N, P), generator=g),
            "target": torch.randint(16, (N, LEN), generator=g), "length": LENGTHS.clone()}


class VariableTargetTask(TargetTokenTask):
    """TargetTokenTask whose teacher-forced targets are the batch's rows, ``length`` tokens each."""

    def __init__(self):
        super().__init__(vocab=16, response_len=LEN)

    def responses(self, batch) -> Responses:
        ids = batch["target"]                                                    # (B, L)
        mask = torch.arange(LEN, device=ids.device)[None, :] < batch["length"][:, None]
        return Responses(ids, mask)


class RankSlices(L.LightningDataModule):
    """One batch per rank: rank r of W gets rows [r*N/W, (r+1)*N/W) of the global batch."""

    def train_dataloader(self):
        world, rank = self.trainer.world_size, self.trainer.global_rank
        rows = slice(rank * N // world, (rank + 1) * N // world)
        part = {k: v[rows] for k, v in global_batch().items()}
        return DataLoader([part], batch_size=None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    L.seed_everything(0)
    module = MLEModule(VariableTargetTask(), tiny_llama_factory(0), partial(torch.optim.SGD, lr=1.0),
                       val_sample=False)
    trainer = L.Trainer(accelerator="cpu", devices=args.devices,
                        strategy="ddp" if args.devices > 1 else "auto", max_steps=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False)
    trainer.fit(module, datamodule=RankSlices())
    if trainer.global_rank == 0:
        torch.save({k: v.detach().cpu() for k, v in module.policy.state_dict().items()}, args.out)


if __name__ == "__main__":
    main()
