"""Helper script (not a test module) for tests/test_sampler_collectives.py: text sampling (EOS
stops rows) on 2 CPU processes (gloo), with a plain policy (what DDP rollouts call: the unwrapped
module) and with the same policy under FSDP2 (``fully_shard``: DTensor parameters). Counts the
``torch.distributed.all_reduce`` calls each rank makes while sampling and writes
``{mode: [{"rank", "all_reduce", "steps"}, ...]}`` as JSON to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stage_fixtures import tiny_llama  # noqa: E402
from wm.rollout.plan import ResponsePlan  # noqa: E402
from wm.rollout.sampler import Sampler  # noqa: E402

WORLD, LEN, EOS = 2, 24, 15


def _sample_counting(model, rank: int) -> dict:
    calls = []
    real = dist.all_reduce

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    plan = ResponsePlan(LEN, allowed_lo=12, allowed_hi=16, eos_id=EOS, pad_id=0)
    prompts = torch.randint(16, (2, 4), generator=torch.Generator().manual_seed(rank))
    gen = torch.Generator().manual_seed(100 + rank)          # ranks stop after different steps
    dist.all_reduce = counting
    try:
        out = Sampler().sample(model, prompts, None, plan, group_size=2, generator=gen)
    finally:
        dist.all_reduce = real
    steps = int((out.tokens != 0).sum(1).max())
    return {"rank": rank, "all_reduce": len(calls), "steps": steps}


def _worker(rank: int, port: int, out: str):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    results = {"plain": _sample_counting(tiny_llama(16, seed=0), rank)}
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = tiny_llama(16, seed=0)
    mesh = init_device_mesh("cpu", (WORLD,))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    results["fsdp2"] = _sample_counting(model, rank)
    gathered = [None] * WORLD
    dist.all_gather_object(gathered, results)
    if rank == 0:
        Path(out).write_text(json.dumps({m: [g[m] for g in gathered] for m in results}))
    del model, mesh                   # FSDP2 state and the mesh's groups go before the process group
    dist.barrier()
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--port", type=int, default=29631)
    args = ap.parse_args()
    mp.spawn(_worker, args=(args.port, args.out), nprocs=WORLD, join=True)


if __name__ == "__main__":
    main()
