"""Whether decoding ranks must step together: under FSDP/FSDP2 every forward is a collective, so a
text rollout that stops at EOS on one rank keeps stepping until every rank's rows have stopped
(one all-reduce per decode step); one process or DDP (rollouts call the unwrapped policy) stop
on their own with no collective (issue #27: the per-token all-reduce under DDP was wasted)."""
from __future__ import annotations

import torch


def is_sharded(model: torch.nn.Module) -> bool:
    """True when ``model``'s forward is a collective: FSDP2 (``fully_shard``: DTensor
    parameters) or FSDP1 (a ``FullyShardedDataParallel`` submodule)."""
    import torch.distributed as dist

    if not dist.is_available():
        return False
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters()) or \
        any(isinstance(m, FullyShardedDataParallel) for m in model.modules())


def all_ranks_finished(done: bool, device, lockstep: bool) -> bool:
    """True when this rank may stop decoding: ``done`` (its rows have all finished), and under
    ``lockstep`` also every other rank's.

    Text rollouts stop at EOS after a different number of steps on each rank; under sharded
    training (FSDP, ``lockstep``) every forward pass is collective, so a rank must keep stepping
    until all ranks are done (one all-reduce per step). Without sharding (one process, DDP) each
    rank stops on its own and nothing is communicated.
    """
    import torch.distributed as dist

    if not lockstep or not (dist.is_available() and dist.is_initialized()) \
            or dist.get_world_size() == 1:
        return done
    pending = torch.tensor([0 if done else 1], device=device)
    dist.all_reduce(pending)              # number of ranks still decoding
    return int(pending.item()) == 0
