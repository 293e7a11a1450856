"""FSDP2 sharding of a stage's policy (and frozen reference) over the data-parallel mesh, when a
backward communicates its gradients (once per optimizer step, DDP and FSDP2 alike), and the
cross-rank sums the stages' global normalisers are made of."""
from __future__ import annotations

from contextlib import contextmanager

import torch


def _block_classes(model: torch.nn.Module) -> set[str]:
    """Class names of the repeated blocks (decoder layers) that Hugging Face marks unsplittable."""
    names: set[str] = set()
    for sub in model.modules():
        names.update(getattr(sub, "_no_split_modules", None) or ())
    return names


def shard_policy(module) -> None:
    """FSDP2 for ``trainer=fsdp2_cpu`` / ModelParallelStrategy: ``fully_shard`` every decoder
    layer of ``module.policy`` (and of the frozen ``module.reference``, if any), then the model
    itself, over the mesh's data-parallel dimension. A no-op under any other strategy (no mesh).

    Called from ``configure_model``, i.e. before the optimizer is built, so the optimizer holds
    the sharded (DTensor) parameters.
    """
    mesh = module.device_mesh
    if mesh is None:
        return
    from torch.distributed.fsdp import fully_shard

    dp = mesh["data_parallel"] if mesh.mesh_dim_names and "data_parallel" in mesh.mesh_dim_names \
        else mesh
    for model in (module.policy, getattr(module, "reference", None)):
        if model is None:
            continue
        blocks = _block_classes(model)
        if not blocks:
            raise TypeError(f"shard_policy: {type(model).__name__} names no decoder-layer class "
                            "(`_no_split_modules`); FSDP2 needs to know which blocks to shard")
        for sub in list(model.modules()):
            if type(sub).__name__ in blocks:
                fully_shard(sub, mesh=dp)
        fully_shard(model, mesh=dp)


@contextmanager
def gradient_sync(module, sync: bool):
    """Gradients are communicated in a backward of ``module.policy`` only when ``sync`` (the last
    micro-batch of an optimizer step; the others accumulate locally): DDP's ``no_sync`` through
    the strategy's ``block_backward_sync``, FSDP2's ``set_requires_gradient_sync`` (left on after
    the last micro-batch). A no-op in one process."""
    strategy = module.trainer.strategy
    if hasattr(module.policy, "set_requires_gradient_sync"):          # FSDP2 (fully_shard)
        module.policy.set_requires_gradient_sync(sync)
        yield
    elif sync or not hasattr(strategy, "block_backward_sync"):
        yield
    else:
        with strategy.block_backward_sync():
            yield


def sum_across_ranks(trainer, value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over all ranks (detached, float32; itself in one process): the global
    token / sequence counts the MLE and GRPO losses are normalised by."""
    return trainer.strategy.reduce(value.detach().float().clone(), reduce_op="sum")
