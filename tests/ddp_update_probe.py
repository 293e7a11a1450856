"""Helper script (not a test module) for tests/test_grpo_normalizer_ddp.py and
tests/test_grpo_scale.py: one GRPO optimizer step with plain SGD on a FIXED global batch, split
over ``--devices`` CPU processes (Lightning DDP, gloo) or run whole in one process; writes the
updated policy weights to ``--out``, and with 2 processes the gradient communications each rank
ran to ``--out``.syncs<rank>: DDP all-reduces (a counting comm hook: one per backward that
syncs) or, with ``--strategy fsdp2`` (ModelParallelStrategy + ``fully_shard``), FSDP2
reduce-scatters (``foreach_reduce`` calls: one per sharded module per syncing backward).

The rollout is fixed (no sampling), so 1-process and 2-process runs see the same global batch;
rank 0 gets the long responses and rank 1 the short ones (uneven token counts per rank): only a
cross-rank token normalizer gives the single-process update.
"""
from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stage_fixtures import TargetTokenTask, tiny_llama_factory  # noqa: E402
from wm.rl.loss import GRPOLossConfig  # noqa: E402
from wm.rollout.plan import ResponsePlan  # noqa: E402
from wm.tasks.base import Prompts  # noqa: E402
from wm.stages.grpo import GRPOModule  # noqa: E402
from wm.utils.seeding import seeded_generator  # noqa: E402

N, P, LEN, G = 8, 4, 6, 4
SYNCS: list[int] = []


def counting_allreduce(state, bucket):
    """DDP comm hook: the default all-reduce, counted once per synchronized backward."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    if bucket.index() == 0:
        SYNCS.append(1)
    return allreduce_hook(state, bucket)


def global_batch():
    g = torch.Generator().manual_seed(0)
    p_ids = torch.randint(16, (N // G, P), generator=g)                     # one prompt per group
    tokens = torch.randint(16, (N, LEN), generator=g)
    lengths = torch.tensor([6, 6, 5, 6, 2, 1, 2, 2])          # rank 0 long, rank 1 short
    mask = torch.arange(LEN)[None, :] < lengths[:, None]
    adv = torch.randn(N, generator=g)
    return p_ids, tokens, mask, adv


class FixedBatchGRPO(GRPOModule):
    def on_train_start(self):
        # Lightning registers DDP comm hooks on CUDA only: register the counter directly
        ddp = self.trainer.strategy.model
        if isinstance(ddp, torch.nn.parallel.DistributedDataParallel):
            ddp.register_comm_hook(None, counting_allreduce)

    def training_step(self, batch, batch_idx):
        p_ids, tokens, mask, adv = (t.to(self.device) for t in global_batch())
        world, rank = self.trainer.world_size, self.global_rank
        rows = slice(rank * N // world, (rank + 1) * N // world)
        groups = slice(rank * N // G // world, (rank + 1) * N // G // world)
        ranges = torch.tensor([[0, 16]] * LEN)
        plan = ResponsePlan(LEN, allowed_lo=0, allowed_hi=16)
        everything = Prompts(p_ids, torch.ones_like(p_ids, dtype=torch.bool), plan)
        old = self._logprobs(self.policy, everything, tokens, mask, ranges)
        mine = Prompts(p_ids[groups], torch.ones_like(p_ids[groups], dtype=torch.bool), plan)
        gen = seeded_generator(0, 0, rank, self.device)
        self._update(mine, tokens[rows], mask[rows], old[rows], None, adv[rows], gen, ranges, LEN)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--micro", type=int, default=2, help="micro_batch_size (rows)")
    ap.add_argument("--group", type=int, default=G, help="group_size (divides 8)")
    ap.add_argument("--steps", type=int, default=1, help="optimizer steps (same batch)")
    ap.add_argument("--strategy", choices=("ddp", "fsdp2"), default="ddp")
    args = ap.parse_args()
    globals()["G"] = args.group
    torch.set_num_threads(1)
    L.seed_everything(0)
    module = FixedBatchGRPO(TargetTokenTask(), tiny_llama_factory(0),
                            partial(torch.optim.SGD, lr=1.0),
                            GRPOLossConfig(kl_coef=0.0, dual_clip=None),
                            init_policy=None, group_size=G, micro_batch_size=args.micro,
                            grad_clip=0.0)
    data = torch.utils.data.DataLoader([0] * 4, batch_size=1)
    strategy = "ddp" if args.devices > 1 else "auto"
    if args.devices > 1 and args.strategy == "fsdp2":
        import torch.distributed.fsdp._fully_shard._fsdp_param_group as param_group
        from lightning.pytorch.strategies import ModelParallelStrategy

        real = param_group.foreach_reduce

        def counting_reduce(*a, **k):
            SYNCS.append(1)
            return real(*a, **k)

        param_group.foreach_reduce = counting_reduce
        strategy = ModelParallelStrategy(data_parallel_size=args.devices, tensor_parallel_size=1,
                                         process_group_backend="gloo",
                                         save_distributed_checkpoint=False)
    trainer = L.Trainer(accelerator="cpu", devices=args.devices,
                        strategy=strategy, max_steps=args.steps,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False)
    trainer.fit(module, train_dataloaders=data)
    if args.devices > 1:
        Path(f"{args.out}.syncs{trainer.global_rank}").write_text(json.dumps(len(SYNCS)))
    state = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().cpu()
             for k, v in module.policy.state_dict().items()}     # FSDP2: gathered on all ranks
    if trainer.global_rank == 0:
        torch.save(state, args.out)


if __name__ == "__main__":
    main()
